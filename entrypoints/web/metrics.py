"""`/metrics`: what an operator watches, counted in the database and exposed through prometheus-client.

The counts are read once per scrape (storage/metrics.py) and handed to a collector on a registry of
that scrape's own, so nothing is cached between scrapes and every process answers from the database.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage.metrics import PipelineCounts, pipeline_counts


class PipelineCollector(Collector):
    """Gauges of one snapshot of the pipeline (names are a contract with dashboards: keep them)."""

    def __init__(self, counts: PipelineCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        c = self.counts
        yield _by_status("payments_total", "Deposit payments by status.", c.payments_by_status)
        yield GaugeMetricFamily("payments_due", "Payments whose next poll or settlement is due now.", c.payments_due)
        yield GaugeMetricFamily(
            "payments_held_for_review",
            "Payments an operator must look at before anything is credited.",
            c.payments_held,
        )
        yield GaugeMetricFamily(
            "payments_awaiting_settlement", "Creditable payments not yet credited.", c.payments_awaiting_settlement
        )
        yield CounterMetricFamily("ledger_transactions", "Ledger transactions written.", c.ledger_transactions)
        yield GaugeMetricFamily(
            "payments_creation_stuck",
            "Pending payments with no gateway payment after 5 minutes.",
            c.payments_creation_stuck,
        )
        yield _by_status("withdrawals_total", "Withdrawals by status.", c.withdrawals_by_status)
        yield GaugeMetricFamily(
            "withdrawals_held_for_review",
            "Withdrawals an operator must decide (payout outcome unknown).",
            c.withdrawals_held,
        )
        orphans = GaugeMetricFamily(
            "gateway_orphans",
            "Unresolved gateway payments for our orders under ids we never stored (payments reconcile --gateway).",
            labels=["funds"],
        )
        for funds, n in sorted(c.gateway_orphans.items()):
            orphans.add_metric([funds], n)
        yield orphans


def _by_status(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, n in sorted(counts.items()):
        family.add_metric([status], n)
    return family


async def render_metrics(pool: asyncpg.Pool) -> str:
    """The Prometheus text exposition of the pipeline's current counts."""
    async with pool.acquire() as conn:
        counts = await pipeline_counts(conn)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(counts))
    return generate_latest(registry).decode()
