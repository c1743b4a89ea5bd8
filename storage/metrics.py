"""The read queries behind `/metrics`: what an operator watches, counted in the database."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class PipelineCounts:
    payments_by_status: dict[str, int]
    payments_due: int
    payments_held: int
    payments_awaiting_settlement: int
    ledger_transactions: int
    payments_creation_stuck: int
    withdrawals_by_status: dict[str, int]
    withdrawals_held: int
    gateway_orphans: dict[str, int]  # unresolved, by "received" / "none" (funds)


_PAYMENTS_BY_STATUS = "SELECT status, count(*) AS n FROM payments GROUP BY status"
_DUE = "SELECT count(*) FROM payments WHERE next_poll_at IS NOT NULL AND next_poll_at <= now()"
_HELD = "SELECT count(*) FROM payments WHERE hold_reason IS NOT NULL"
_UNSETTLED = "SELECT count(*) FROM payments WHERE credit_usd > 0 AND settled_at IS NULL AND hold_reason IS NULL"
_LEDGER_TRANSACTIONS = "SELECT count(*) FROM ledger_transactions"
_STUCK_CREATION = (
    "SELECT count(*) FROM payments WHERE provider_payment_id IS NULL AND status = 'pending'"
    " AND created_at < now() - interval '5 minutes'"
)
_WITHDRAWALS_BY_STATUS = "SELECT status, count(*) AS n FROM withdrawals GROUP BY status"
_WITHDRAWALS_HELD = "SELECT count(*) FROM withdrawals WHERE review_reason IS NOT NULL"
_ORPHANS = (
    "SELECT CASE WHEN funds_received THEN 'received' ELSE 'none' END AS funds, count(*) AS n"
    " FROM gateway_orphans WHERE resolved_at IS NULL GROUP BY funds_received"
)


async def pipeline_counts(conn: asyncpg.Connection) -> PipelineCounts:
    """All counts from one snapshot, so the gauges of one scrape agree with each other."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return PipelineCounts(
            payments_by_status={row["status"]: row["n"] for row in await conn.fetch(_PAYMENTS_BY_STATUS)},
            payments_due=await conn.fetchval(_DUE),
            payments_held=await conn.fetchval(_HELD),
            payments_awaiting_settlement=await conn.fetchval(_UNSETTLED),
            ledger_transactions=await conn.fetchval(_LEDGER_TRANSACTIONS),
            payments_creation_stuck=await conn.fetchval(_STUCK_CREATION),
            withdrawals_by_status={row["status"]: row["n"] for row in await conn.fetch(_WITHDRAWALS_BY_STATUS)},
            withdrawals_held=await conn.fetchval(_WITHDRAWALS_HELD),
            gateway_orphans={"received": 0, "none": 0} | {r["funds"]: r["n"] for r in await conn.fetch(_ORPHANS)},
        )
