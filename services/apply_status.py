"""Apply a gateway snapshot to a payment: the one path shared by poll-status and the IPN endpoint.

The decision is `domain.payment_news.plan_payment_news`; this use case locks the payment, writes the
plan (update and events) in one transaction of few round trips (lock and read with the coin's precision;
update with its events; each announcement), and enqueues settle-deposit after commit when it is due
(the scheduler re-enqueues it if this process dies first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from domain.payment_news import (
    EventKind,
    PaymentNews,
    PaymentPlan,
    PaymentPolicy,
    PollBackoff,
    Reading,
    plan_payment_news,
)
from domain.payments import Payment
from gateway.models import GatewayPayment
from services import announce
from services.context import StageContext
from services.errors import UnknownPayment
from settings import Settings
from storage import payments
from storage.db import transaction

log = structlog.get_logger(__name__)


def poll_backoff(settings: Settings) -> PollBackoff:
    return PollBackoff(
        first=settings.payments_poll_first_delay,
        minimum=settings.payments_poll_min_interval,
        maximum=settings.payments_poll_max_interval,
    )


def payment_policy(settings: Settings) -> PaymentPolicy:
    return PaymentPolicy(
        expiry_grace=timedelta(seconds=settings.payments_expiry_grace),
        underpaid=settings.payments_underpaid_policy,
        overpaid=settings.payments_overpaid_policy,
        backoff=poll_backoff(settings),
    )


def next_poll_at(settings: Settings, attempts: int, *, now: datetime | None = None) -> datetime:
    """When to poll again after ``attempts`` polls, by the settings' backoff."""
    return poll_backoff(settings).next_at(attempts, now or datetime.now(UTC))


def news_from(snapshot: GatewayPayment) -> PaymentNews:
    """The domain's view of what the gateway said."""
    return PaymentNews(
        status=snapshot.status,
        updated_at=snapshot.updated_at,
        pay_amount=snapshot.pay_amount,
        actually_paid=snapshot.actually_paid,
        pay_address=snapshot.pay_address,
        payin_extra_id=snapshot.payin_extra_id,
        payin_hash=snapshot.payin_hash,
        network=snapshot.network,
    )


@dataclass(frozen=True)
class ApplyResult:
    payment: Payment
    changed: bool
    settle_due: bool


async def apply_gateway_status(
    ctx: StageContext, snapshot: GatewayPayment, *, source: str, polled: bool = False
) -> ApplyResult:
    """Move the payment named by ``snapshot`` forward, in one transaction; enqueue settlement if due."""
    async with transaction(ctx.pool) as conn:
        found = await payments.lock_by_provider_id(conn, snapshot.payment_id)
        if found is None or (snapshot.order_id and snapshot.order_id != found[0].id):
            raise UnknownPayment(
                f"no payment with provider id {snapshot.payment_id!r} and order id {snapshot.order_id!r}"
            )
        payment, precision = found
        news = news_from(snapshot)
        plan = plan_payment_news(
            payment,
            news,
            now=datetime.now(UTC),
            policy=payment_policy(ctx.settings),
            polled=polled,
            precision=precision,
        )
        _log_reading(payment, news, plan, source)
        updated = await _write(conn, payment, plan, source)
    if plan.settle_due:
        await ctx.enqueue.settle_deposit(payment.id)
    return ApplyResult(updated, changed=updated is not payment, settle_due=plan.settle_due)


async def _write(conn: asyncpg.Connection, payment: Payment, plan: PaymentPlan, source: str) -> Payment:
    """The update and its events in one statement, then each event's announcement (from the row as written)."""
    if plan.update.is_empty:
        return payment
    rows = [
        payments.NewEvent(
            source=source,
            from_status=event.from_status.value,
            to_status=event.to_status.value,
            gateway_status=event.gateway_status,
            detail=dict(event.detail),
        )
        for event in plan.events
    ]
    updated = await payments.update_with_events(conn, payment.id, plan.update, rows)
    for event in plan.events:
        if event.kind is EventKind.STATUS_CHANGED:
            await announce.payment_status(conn, updated)
            log.info(
                "payment_status_changed",
                payment_id=payment.id,
                from_status=event.from_status.value,
                to_status=event.to_status.value,
                source=source,
            )
        else:
            await announce.payment_held(conn, updated)
            log.warning("payment_held_for_review", payment_id=payment.id, reason=event.detail["hold_reason"])
    return updated


def _log_reading(payment: Payment, news: PaymentNews, plan: PaymentPlan, source: str) -> None:
    if plan.reading is Reading.UNKNOWN_STATUS:
        log.warning("gateway_status_unknown", payment_id=payment.id, gateway_status=news.status, source=source)
    elif plan.reading is Reading.STALE_SNAPSHOT:
        # Older than what we already know: out-of-order delivery.
        log.info("gateway_snapshot_stale", payment_id=payment.id, reported=news.status, source=source)
    elif plan.reading is Reading.LATE_FUNDS:
        log.warning(
            "late_funds_on_closed_payment",
            payment_id=payment.id,
            status=payment.status.value,
            gateway_status=news.status,
            actually_paid=str(news.actually_paid),
        )
    elif plan.reading is Reading.OUTDATED_STATUS and plan.reported is not None:
        log.info(
            "gateway_status_stale",
            payment_id=payment.id,
            current=payment.status.value,
            reported=plan.reported.value,
            source=source,
        )
