"""Apply a gateway snapshot to a payment: the one path shared by poll-status and the IPN endpoint.

Forward only: a stale, repeated or unknown status never moves a payment backwards. Every status
change is recorded as an event. When the payment becomes creditable, settle-deposit is enqueued
(after commit; the scheduler re-enqueues it if this process dies first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from domain.errors import InvalidRequest
from domain.money import ZERO
from domain.payments import (
    Payment,
    PaymentStatus,
    decide_credit,
    is_forward,
    map_gateway_status,
    next_poll_delay,
    received_value_usd,
)
from gateway.models import GatewayPayment
from services.context import StageContext
from settings import Settings
from storage import payments
from storage.db import transaction

log = structlog.get_logger(__name__)

# How soon the scheduler looks again at a payment that is waiting for its settlement.
SETTLE_SWEEP_SECONDS = 30.0
# Statuses that, arriving after a credit, mean the money may not be ours after all.
UNDONE = frozenset({PaymentStatus.REFUNDED, PaymentStatus.FAILED, PaymentStatus.EXPIRED, PaymentStatus.CANCELLED})
UNDONE_PREFIX = "gateway reports "
# Used when the gateway gave no expiration estimate.
DEFAULT_LIFETIME = timedelta(hours=24)


class UnknownPayment(InvalidRequest):
    """The gateway told us about a payment we do not have."""


def next_poll_at(settings: Settings, attempts: int, *, now: datetime | None = None) -> datetime:
    """When to poll again after ``attempts`` polls, by the settings' backoff."""
    delay = next_poll_delay(
        attempts,
        first=settings.payments_poll_first_delay,
        minimum=settings.payments_poll_min_interval,
        maximum=settings.payments_poll_max_interval,
    )
    return (now or datetime.now(UTC)) + timedelta(seconds=delay)


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
        payment = await payments.get_by_provider_id(conn, snapshot.payment_id, for_update=True)
        if payment is None or (snapshot.order_id and snapshot.order_id != payment.id):
            raise UnknownPayment(
                f"no payment with provider id {snapshot.payment_id!r} and order id {snapshot.order_id!r}"
            )
        result = await _apply_locked(conn, ctx, payment, snapshot, source=source, polled=polled)
    if result.settle_due:
        await ctx.enqueue.settle_deposit(result.payment.id)
    return result


async def _apply_locked(
    conn: asyncpg.Connection,
    ctx: StageContext,
    payment: Payment,
    snapshot: GatewayPayment,
    *,
    source: str,
    polled: bool,
) -> ApplyResult:
    settings = ctx.settings
    now = datetime.now(UTC)
    changes: dict[str, Any] = {}
    target = map_gateway_status(snapshot.status)
    stale = (
        snapshot.updated_at is not None
        and payment.gateway_updated_at is not None
        and snapshot.updated_at < payment.gateway_updated_at
    )

    if target is None:
        log.warning("gateway_status_unknown", payment_id=payment.id, gateway_status=snapshot.status, source=source)
    elif stale:
        # Older than what we already know: out-of-order delivery. It may not move anything, not even forward.
        log.info("gateway_snapshot_stale", payment_id=payment.id, reported=snapshot.status, source=source)
    elif is_forward(payment.status, target) or (target is payment.status and not payment.is_terminal):
        changes.update(_snapshot_fields(payment, snapshot))
        if target is not payment.status:
            changes["status"] = target
    elif payment.is_terminal and _reports_more_funds(payment, snapshot):
        # Funds after we gave up (e.g. paid after expiry) or after we credited: record them so the payment
        # is held for an operator; the status stays as it is and nothing is credited automatically.
        changes.update(_snapshot_fields(payment, snapshot))
        log.warning(
            "late_funds_on_closed_payment",
            payment_id=payment.id,
            status=payment.status.value,
            gateway_status=snapshot.status,
            actually_paid=str(snapshot.actually_paid),
        )
    elif target is not payment.status:
        log.info(
            "gateway_status_stale",
            payment_id=payment.id,
            current=payment.status.value,
            reported=target.value,
            source=source,
        )

    status = changes.get("status", payment.status)
    expires_at = payment.expires_at or (payment.created_at + DEFAULT_LIFETIME)
    past_expiry = now >= expires_at + timedelta(seconds=settings.payments_expiry_grace)
    # Expiry acts only on what the gateway has just said in this very poll, never on our older view.
    if polled and past_expiry and not stale and target is PaymentStatus.PENDING and status is PaymentStatus.PENDING:
        changes["status"] = status = PaymentStatus.EXPIRED
    if (
        polled
        and past_expiry
        and not stale
        and target is PaymentStatus.PARTIALLY_PAID
        and status is PaymentStatus.PARTIALLY_PAID
        and payment.final_at is None
    ):
        changes["final_at"] = now

    final_at = changes.get("final_at", payment.final_at)
    pay_amount = changes.get("pay_amount", payment.pay_amount)
    actually_paid = changes.get("actually_paid", payment.actually_paid)
    decision = decide_credit(
        status=status,
        amount_usd=payment.amount_usd,
        pay_amount=pay_amount,
        actually_paid=actually_paid,
        past_expiry=final_at is not None,
        underpaid_policy=settings.payments_underpaid_policy,
        overpaid_policy=settings.payments_overpaid_policy,
    )
    settle_due = decision.creditable and payment.settled_at is None
    if payment.settled_at is not None:
        # What was credited stays as it is; news that changes its worth goes to an operator.
        reported = None if stale or target is None else target
        funds_changed = pay_amount != payment.pay_amount or actually_paid != payment.actually_paid
        reason = _news_after_settlement(
            payment, reported, pay_amount, actually_paid, decision.credit_usd, funds_changed=funds_changed
        )
        if reason and reason.startswith(UNDONE_PREFIX) and not (payment.hold_reason or "").startswith(UNDONE_PREFIX):
            changes["hold_reason"] = reason  # a refund outranks any other open question about this payment
            changes["gateway_status"] = snapshot.status
        elif reason and payment.hold_reason is None:
            changes["hold_reason"] = reason
    elif decision.final or decision.hold_reason:
        changes["credit_usd"] = decision.credit_usd
        changes["variance"] = decision.variance.value
        changes["hold_reason"] = decision.hold_reason

    if polled:
        changes["poll_attempts"] = payment.poll_attempts + 1
    if settle_due:
        changes["next_poll_at"] = now + timedelta(seconds=SETTLE_SWEEP_SECONDS)
    elif decision.final or status in (PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.REFUNDED):
        changes["next_poll_at"] = None
    elif polled:
        changes["next_poll_at"] = next_poll_at(settings, payment.poll_attempts + 1, now=now)

    changes = {key: value for key, value in changes.items() if getattr(payment, key) != value}
    if not changes:
        return ApplyResult(payment, changed=False, settle_due=settle_due)
    updated = await payments.update_payment(conn, payment.id, changes)
    if updated.status is not payment.status:
        await payments.add_event(
            conn,
            payment.id,
            source=source,
            from_status=payment.status.value,
            to_status=updated.status.value,
            gateway_status=snapshot.status,
            detail={"actually_paid": snapshot.actually_paid, "payin_hash": snapshot.payin_hash},
        )
        log.info(
            "payment_status_changed",
            payment_id=payment.id,
            from_status=payment.status.value,
            to_status=updated.status.value,
            source=source,
        )
    if updated.hold_reason and updated.hold_reason != payment.hold_reason:
        await payments.add_event(
            conn,
            payment.id,
            source=source,
            from_status=updated.status.value,
            to_status=updated.status.value,
            gateway_status=snapshot.status,
            detail={"hold_reason": updated.hold_reason},
        )
        log.warning("payment_held_for_review", payment_id=payment.id, reason=updated.hold_reason)
    return ApplyResult(updated, changed=True, settle_due=settle_due)


def _news_after_settlement(
    payment: Payment,
    reported: PaymentStatus | None,
    pay_amount: Decimal | None,
    actually_paid: Decimal | None,
    decided: Decimal,
    *,
    funds_changed: bool,
) -> str | None:
    """Why a settled payment needs an operator now, or None: the gateway (freshly) reports it refunded
    or failed after we credited it, or this news raised its worth above what we credited (a top-up).

    Worth is compared only when this news changed the amounts, so an operator's deliberate decision to
    credit less is not reopened by every repeated callback.
    """
    credited = payment.credit_usd or ZERO
    already_known = payment.gateway_status is not None and map_gateway_status(payment.gateway_status) is reported
    if (
        reported is not None
        and reported in UNDONE
        and reported is not payment.status
        and not already_known  # a redelivered refund must not reopen a question an operator has closed
        and credited > ZERO
    ):
        return f"{UNDONE_PREFIX}{reported.value} after {credited} USD was credited: reverse it if that is right"
    if not funds_changed:
        return None
    worth = decided
    if pay_amount is not None and actually_paid is not None and pay_amount > ZERO:
        worth = max(
            worth,
            received_value_usd(price_amount=payment.amount_usd, pay_amount=pay_amount, actually_paid=actually_paid),
        )
    if worth > credited:
        return f"funds after settlement: now worth {worth} USD, credited {credited} USD"
    return None


def _reports_more_funds(payment: Payment, snapshot: GatewayPayment) -> bool:
    if snapshot.actually_paid is None:
        return False
    return snapshot.actually_paid > (payment.actually_paid or 0)


def _snapshot_fields(payment: Payment, snapshot: GatewayPayment) -> dict[str, Any]:
    fields: dict[str, Any] = {"gateway_status": snapshot.status}
    for name in ("actually_paid", "payin_hash", "pay_address", "payin_extra_id", "pay_amount", "network"):
        value = getattr(snapshot, name)
        if value is not None:
            fields[name] = value
    if snapshot.updated_at is not None:
        fields["gateway_updated_at"] = snapshot.updated_at
    return fields
