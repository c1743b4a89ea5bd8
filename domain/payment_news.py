"""What the gateway's news about a deposit changes: one pure decision, shared by polls and IPNs.

Forward only: a stale, repeated or unknown status never moves a payment backwards. A snapshot older
than the one we hold (by the gateway's ``updated_at``) changes nothing at all: the gateway's
actually_paid only grows, so its amounts are older too and never a top-up. News of an earlier stage
that is not older (IPNs are retried, duplicated and reordered; some carry no time) is stale only as to
its status: more funds in it are news, recorded on an open payment, and on a closed one held for an
operator, as payout news of an earlier stage is read in `domain.payout_news` (amounts still count).
Funds reported on a closed payment, and news that changes the worth of a settled one, are held for an operator.
`plan_payment_news` returns the update and the events to write, and whether settlement is due;
the caller locks the payment, writes the plan and enqueues settlement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from domain.money import ZERO, same_crypto_amount
from domain.payments import (
    CreditDecision,
    Payment,
    PaymentStatus,
    PaymentUpdate,
    VariancePolicy,
    decide_credit,
    is_forward,
    map_gateway_status,
    next_poll_delay,
    received_value_usd,
)
from domain.updates import KEEP, Keep

T = TypeVar("T")

# How soon the scheduler looks again at a payment that is waiting for its settlement.
SETTLE_SWEEP_SECONDS = 30.0
# Statuses that, arriving after a credit, mean the money may not be ours after all.
UNDONE = frozenset({PaymentStatus.REFUNDED, PaymentStatus.FAILED, PaymentStatus.EXPIRED, PaymentStatus.CANCELLED})
UNDONE_PREFIX = "gateway reports "
# Used when the gateway gave no expiration estimate.
DEFAULT_LIFETIME = timedelta(hours=24)
# Statuses after which no poll can change anything we would act on.
_NOTHING_MORE_TO_ASK = frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.REFUNDED})


@dataclass(frozen=True)
class PaymentNews:
    """What the gateway says about one payment (a poll answer or an IPN); ``status`` is its raw word."""

    status: str
    updated_at: datetime | None = None
    pay_amount: Decimal | None = None
    actually_paid: Decimal | None = None
    pay_address: str | None = None
    payin_extra_id: str | None = None
    payin_hash: str | None = None
    network: str | None = None


@dataclass(frozen=True)
class PollBackoff:
    """Seconds before the first poll, then doubling from ``minimum`` up to ``maximum``."""

    first: float
    minimum: float
    maximum: float

    def next_at(self, attempts: int, now: datetime) -> datetime:
        """When to poll again after ``attempts`` polls."""
        delay = next_poll_delay(attempts, first=self.first, minimum=self.minimum, maximum=self.maximum)
        return now + timedelta(seconds=delay)


@dataclass(frozen=True)
class PaymentPolicy:
    """The settings a decision about a payment depends on."""

    expiry_grace: timedelta
    underpaid: VariancePolicy
    overpaid: VariancePolicy
    backoff: PollBackoff


class Reading(StrEnum):
    """How the news was read, before any consequence (the caller logs it)."""

    UNKNOWN_STATUS = "unknown_status"  # a status we do not know: ignored
    STALE_SNAPSHOT = "stale_snapshot"  # older than what we already hold: moves nothing, not even forward
    APPLIES = "applies"  # progress, or fresh details of the status we are in
    LATE_FUNDS = "late_funds"  # more funds on a closed payment: recorded for an operator, status kept
    MORE_FUNDS = "more_funds"  # a status behind ours on an open payment, with more funds: amounts apply, status kept
    OUTDATED_STATUS = "outdated_status"  # a status behind ours
    REPEATED = "repeated"  # nothing new


class EventKind(StrEnum):
    STATUS_CHANGED = "status_changed"
    HELD_FOR_REVIEW = "held_for_review"


@dataclass(frozen=True)
class PaymentEvent:
    """A row for ``payment_events`` (the caller adds where the news came from)."""

    kind: EventKind
    from_status: PaymentStatus
    to_status: PaymentStatus
    gateway_status: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class PaymentPlan:
    reading: Reading
    reported: PaymentStatus | None  # our status for the gateway's word; None when unknown
    update: PaymentUpdate  # only what differs from the payment as it stands
    events: tuple[PaymentEvent, ...]
    settle_due: bool  # creditable and not settled yet: enqueue settle-deposit after commit


def plan_payment_news(
    payment: Payment,
    news: PaymentNews,
    *,
    now: datetime,
    policy: PaymentPolicy,
    polled: bool,
    precision: int | None = None,
) -> PaymentPlan:
    """What ``news`` changes about ``payment`` (as stored, locked by the caller) at ``now``.

    ``polled`` says the news is a fresh answer to our own poll (only then may expiry act);
    ``precision`` is the coin's number of decimal places, at which amounts are compared.
    """
    reported = map_gateway_status(news.status)
    stale = (
        news.updated_at is not None
        and payment.gateway_updated_at is not None
        and news.updated_at < payment.gateway_updated_at
    )
    reading = _read(payment, news, reported, stale=stale, precision=precision)
    update = PaymentUpdate()
    if reading in (Reading.APPLIES, Reading.LATE_FUNDS, Reading.MORE_FUNDS):
        update = _news_fields(payment, news, precision)
        if reading is Reading.APPLIES and reported is not payment.status:
            update = replace(update, status=reported)
        elif reported is not None and is_forward(reported, payment.status):
            # An earlier stage than ours: stale as to its status (the word we hold stays); its amounts are news.
            update = replace(update, gateway_status=KEEP)
    fresh = None if stale else reported
    update = update.merged(_expiry(payment, update, fresh, now=now, policy=policy, polled=polled))
    decision = _credit_decision(payment, update, policy)
    settle_due = decision.creditable and payment.settled_at is None
    update = update.merged(_credit_fields(payment, update, news, fresh, decision))
    update = update.merged(_poll_fields(payment, update, decision, now=now, policy=policy, polled=polled))
    update = update.against(payment)
    return PaymentPlan(reading, reported, update, _events(payment, update, news), settle_due)


def _read(
    payment: Payment, news: PaymentNews, reported: PaymentStatus | None, *, stale: bool, precision: int | None
) -> Reading:
    if reported is None:
        return Reading.UNKNOWN_STATUS
    if stale:
        return Reading.STALE_SNAPSHOT
    if is_forward(payment.status, reported) or (reported is payment.status and not payment.is_terminal):
        return Reading.APPLIES
    if payment.is_terminal and _reports_more_funds(payment, news, precision):
        # Funds after we gave up (e.g. paid after expiry) or after we credited: recorded so the payment is
        # held for an operator; the status stays as it is and nothing is credited automatically.
        return Reading.LATE_FUNDS
    if reported is not payment.status:
        if not payment.is_terminal and _reports_more_funds(payment, news, precision):
            # actually_paid only grows: more funds are news even when the status word is behind ours.
            return Reading.MORE_FUNDS
        return Reading.OUTDATED_STATUS
    return Reading.REPEATED


def _reports_more_funds(payment: Payment, news: PaymentNews, precision: int | None) -> bool:
    if news.actually_paid is None:
        return False
    held = payment.actually_paid or ZERO
    return news.actually_paid > held and not same_crypto_amount(held, news.actually_paid, precision=precision)


def _news_fields(payment: Payment, news: PaymentNews, precision: int | None) -> PaymentUpdate:
    """The details the news carries (a detail it leaves out stays as we hold it). An amount that is the
    one we hold, repeated through a JavaScript double or equal at the coin's precision, keeps our exact value."""
    return PaymentUpdate(
        gateway_status=news.status,
        actually_paid=_amount(payment.actually_paid, news.actually_paid, precision),
        pay_amount=_amount(payment.pay_amount, news.pay_amount, precision),
        payin_hash=KEEP if news.payin_hash is None else news.payin_hash,
        pay_address=KEEP if news.pay_address is None else news.pay_address,
        payin_extra_id=KEEP if news.payin_extra_id is None else news.payin_extra_id,
        network=KEEP if news.network is None else news.network,
        gateway_updated_at=KEEP if news.updated_at is None else news.updated_at,
    )


def _amount(held: Decimal | None, reported: Decimal | None, precision: int | None) -> Decimal | Keep:
    if reported is None or (held is not None and same_crypto_amount(held, reported, precision=precision)):
        return KEEP
    return reported


def _expiry(
    payment: Payment,
    update: PaymentUpdate,
    fresh: PaymentStatus | None,
    *,
    now: datetime,
    policy: PaymentPolicy,
    polled: bool,
) -> PaymentUpdate:
    """Expiry acts only on what the gateway has just said in this very poll, never on our older view."""
    expires_at = payment.expires_at or (payment.created_at + DEFAULT_LIFETIME)
    if not polled or now < expires_at + policy.expiry_grace or fresh is None:
        return PaymentUpdate()
    status = _value(update.status, payment.status)
    if fresh is PaymentStatus.PENDING and status is PaymentStatus.PENDING:
        return PaymentUpdate(status=PaymentStatus.EXPIRED)
    if fresh is PaymentStatus.PARTIALLY_PAID and status is PaymentStatus.PARTIALLY_PAID and payment.final_at is None:
        return PaymentUpdate(final_at=now)
    return PaymentUpdate()


def _credit_decision(payment: Payment, update: PaymentUpdate, policy: PaymentPolicy) -> CreditDecision:
    return decide_credit(
        status=_value(update.status, payment.status),
        amount_usd=payment.amount_usd,
        pay_amount=_value(update.pay_amount, payment.pay_amount),
        actually_paid=_value(update.actually_paid, payment.actually_paid),
        past_expiry=_value(update.final_at, payment.final_at) is not None,
        underpaid_policy=policy.underpaid,
        overpaid_policy=policy.overpaid,
    )


def _credit_fields(
    payment: Payment,
    update: PaymentUpdate,
    news: PaymentNews,
    fresh: PaymentStatus | None,
    decision: CreditDecision,
) -> PaymentUpdate:
    if payment.settled_at is None:
        if decision.final or decision.hold_reason:
            return PaymentUpdate(
                credit_usd=decision.credit_usd, variance=decision.variance.value, hold_reason=decision.hold_reason
            )
        return PaymentUpdate()
    # What was credited stays as it is; news that changes its worth goes to an operator.
    pay_amount = _value(update.pay_amount, payment.pay_amount)
    actually_paid = _value(update.actually_paid, payment.actually_paid)
    funds_changed = pay_amount != payment.pay_amount or actually_paid != payment.actually_paid
    reason = _news_after_settlement(
        payment, fresh, pay_amount, actually_paid, decision.credit_usd, funds_changed=funds_changed
    )
    if reason and reason.startswith(UNDONE_PREFIX) and not (payment.hold_reason or "").startswith(UNDONE_PREFIX):
        # a refund outranks any other open question about this payment
        return PaymentUpdate(hold_reason=reason, gateway_status=news.status)
    if reason and payment.hold_reason is None:
        return PaymentUpdate(hold_reason=reason)
    return PaymentUpdate()


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


def _poll_fields(
    payment: Payment,
    update: PaymentUpdate,
    decision: CreditDecision,
    *,
    now: datetime,
    policy: PaymentPolicy,
    polled: bool,
) -> PaymentUpdate:
    attempts = PaymentUpdate(poll_attempts=payment.poll_attempts + 1) if polled else PaymentUpdate()
    if decision.creditable and payment.settled_at is None:
        return replace(attempts, next_poll_at=now + timedelta(seconds=SETTLE_SWEEP_SECONDS))
    if decision.final or _value(update.status, payment.status) in _NOTHING_MORE_TO_ASK:
        return replace(attempts, next_poll_at=None)
    if polled:
        return replace(attempts, next_poll_at=policy.backoff.next_at(payment.poll_attempts + 1, now))
    return attempts


def _events(payment: Payment, update: PaymentUpdate, news: PaymentNews) -> tuple[PaymentEvent, ...]:
    """A status change and a new hold reason are each recorded (``update`` holds only real changes)."""
    status = _value(update.status, payment.status)
    events = []
    if update.status is not KEEP:
        detail = {"actually_paid": news.actually_paid, "payin_hash": news.payin_hash}
        events.append(PaymentEvent(EventKind.STATUS_CHANGED, payment.status, status, news.status, detail))
    if update.hold_reason is not KEEP and update.hold_reason:
        detail = {"hold_reason": update.hold_reason}
        events.append(PaymentEvent(EventKind.HELD_FOR_REVIEW, status, status, news.status, detail))
    return tuple(events)


def _value(new: T | Keep, current: T) -> T:
    """The value a field has once the update is written: the new one if set, else the current one."""
    return current if new is KEEP else new
