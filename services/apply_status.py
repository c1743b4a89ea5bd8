"""Apply a gateway snapshot to a payment: the one path shared by poll-status and the IPN endpoint.

The decision is `domain.payment_news.plan_payment_news`; this use case locks the payment, writes the
plan (update and events) in one transaction of few round trips (lock and read with the coin's precision;
update with its events; each announcement), and enqueues settle-deposit after commit when it is due
(the scheduler re-enqueues it if this process dies first).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
from services.views import payment_view
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


class _PredictionMissed(Exception):
    """The row as written would not be announced as predicted (its transaction is rolled back)."""


async def apply_gateway_status(
    ctx: StageContext, snapshot: GatewayPayment, *, source: str, polled: bool = False
) -> ApplyResult:
    """Move the payment named by ``snapshot`` forward, in one transaction; enqueue settlement if due."""
    try:
        payment, updated, plan = await _apply(ctx, snapshot, source, polled, predict=True)
    except _PredictionMissed:
        log.info("payment_announcement_rebuilt", provider_payment_id=snapshot.payment_id)
        payment, updated, plan = await _apply(ctx, snapshot, source, polled, predict=False)
    if plan.settle_due:
        await ctx.enqueue.settle_deposit(payment.id)
    return ApplyResult(updated, changed=updated is not payment, settle_due=plan.settle_due)


async def _apply(
    ctx: StageContext, snapshot: GatewayPayment, source: str, polled: bool, *, predict: bool
) -> tuple[Payment, Payment, PaymentPlan]:
    """Lock, decide, write: the payment as it was, as it is now, and the plan that moved it."""
    async with transaction(ctx.pool) as conn:
        locked = await payments.lock_by_provider_id(conn, snapshot.payment_id)
        if locked is None or (snapshot.order_id and snapshot.order_id != locked.payment.id):
            raise UnknownPayment(
                f"no payment with provider id {snapshot.payment_id!r} and order id {snapshot.order_id!r}"
            )
        news = news_from(snapshot)
        plan = plan_payment_news(
            locked.payment,
            news,
            now=datetime.now(UTC),
            policy=payment_policy(ctx.settings),
            polled=polled,
            precision=locked.precision,
        )
        _log_reading(locked.payment, news, plan, source)
        updated = await _write(conn, locked, plan, source, predict=predict)
    return locked.payment, updated, plan


async def _write(
    conn: asyncpg.Connection, locked: payments.Locked, plan: PaymentPlan, source: str, *, predict: bool
) -> Payment:
    """The update, its events and their announcements in one statement.

    The announcements show the row as written: predicted as the update applied to the locked row with
    ``updated_at`` = the transaction's now(), and checked against what the statement returns. A miss (a
    value the column stores differently) raises `_PredictionMissed`; the retry (``predict=False``) writes
    first and announces from the returned row.
    """
    payment = locked.payment
    if plan.update.is_empty:
        return payment
    rows = [
        payments.NewEvent(
            source, event.from_status.value, event.to_status.value, event.gateway_status, dict(event.detail)
        )
        for event in plan.events
    ]
    if not predict:
        updated = await payments.update_with_events(conn, payment.id, plan.update, rows)
        for event in plan.events:
            announce_fact = announce.payment_status if event.kind is EventKind.STATUS_CHANGED else announce.payment_held
            await announce_fact(conn, updated)
        _log_events(payment, plan, source)
        return updated
    predicted = replace(payment, **plan.update.changes(), updated_at=locked.now)
    facts = [
        announce.status_fact(predicted) if event.kind is EventKind.STATUS_CHANGED else announce.held_fact(predicted)
        for event in plan.events
    ]
    announcements = announce.payment_events(predicted, facts)
    updated = await payments.update_with_events(conn, payment.id, plan.update, rows, announcements)
    if payment_view(updated) != payment_view(predicted):
        raise _PredictionMissed
    _log_events(payment, plan, source)
    return updated


def _log_events(payment: Payment, plan: PaymentPlan, source: str) -> None:
    for event in plan.events:
        if event.kind is EventKind.STATUS_CHANGED:
            log.info(
                "payment_status_changed",
                payment_id=payment.id,
                from_status=event.from_status.value,
                to_status=event.to_status.value,
                source=source,
            )
        else:
            log.warning("payment_held_for_review", payment_id=payment.id, reason=event.detail["hold_reason"])


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
    elif plan.reading is Reading.MORE_FUNDS:
        log.info(
            "gateway_funds_with_earlier_status",
            payment_id=payment.id,
            current=payment.status.value,
            gateway_status=news.status,
            actually_paid=str(news.actually_paid),
            source=source,
        )
    elif plan.reading is Reading.OUTDATED_STATUS and plan.reported is not None:
        log.info(
            "gateway_status_stale",
            payment_id=payment.id,
            current=payment.status.value,
            reported=plan.reported.value,
            source=source,
        )
