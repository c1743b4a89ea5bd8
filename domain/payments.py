"""The deposit payment: its statuses, the gateway mapping, forward-only moves and the crediting rule."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from enum import StrEnum

from domain.money import ZERO, floor_cents
from domain.updates import KEEP, Keep, PartialUpdate


class PaymentStatus(StrEnum):
    PENDING = "pending"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    PARTIALLY_PAID = "partially_paid"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


TERMINAL = frozenset(
    {
        PaymentStatus.COMPLETED,
        PaymentStatus.FAILED,
        PaymentStatus.EXPIRED,
        PaymentStatus.CANCELLED,
        PaymentStatus.REFUNDED,
    }
)

GATEWAY_STATUS_MAP: dict[str, PaymentStatus] = {
    "waiting": PaymentStatus.PENDING,
    "confirming": PaymentStatus.CONFIRMING,
    "confirmed": PaymentStatus.CONFIRMED,
    "sending": PaymentStatus.CONFIRMED,
    "partially_paid": PaymentStatus.PARTIALLY_PAID,
    "finished": PaymentStatus.COMPLETED,
    "failed": PaymentStatus.FAILED,
    "expired": PaymentStatus.EXPIRED,
    "refunded": PaymentStatus.REFUNDED,
}

# Progress rank: a payment only ever moves to a higher rank. Terminal statuses share the top rank,
# so one terminal status never replaces another. NOWPayments reports partially_paid once the
# received funds are confirmed short, so it ranks above confirming and confirmed; a top-up that
# completes the payment still arrives as "finished", which is terminal and wins.
_RANK: dict[PaymentStatus, int] = {
    PaymentStatus.PENDING: 0,
    PaymentStatus.CONFIRMING: 1,
    PaymentStatus.CONFIRMED: 2,
    PaymentStatus.PARTIALLY_PAID: 3,
}
_TERMINAL_RANK = 10


def map_gateway_status(gateway_status: str) -> PaymentStatus | None:
    """Our status for a NOWPayments ``payment_status``; ``None`` for one we do not know (ignore it)."""
    return GATEWAY_STATUS_MAP.get(gateway_status.strip().lower()) if isinstance(gateway_status, str) else None


def _rank(status: PaymentStatus) -> int:
    return _TERMINAL_RANK if status in TERMINAL else _RANK[status]


def is_forward(current: PaymentStatus, target: PaymentStatus) -> bool:
    """True when moving from ``current`` to ``target`` is progress; stale or repeated news is not."""
    if current in TERMINAL:
        return False
    return _rank(target) > _rank(current)


class Variance(StrEnum):
    EXACT = "exact"
    UNDERPAID = "underpaid"
    OVERPAID = "overpaid"


class VariancePolicy(StrEnum):
    """What to do with a deposit whose received value differs from the ordered one."""

    CREDIT_RECEIVED = "credit_received"  # credit exactly what arrived, rounded down to the cent
    HOLD_FOR_REVIEW = "hold_for_review"  # credit nothing until an operator releases it


@dataclass(frozen=True)
class CreditDecision:
    """What a payment in its current state is worth to the user's balance."""

    credit_usd: Decimal  # rounded down to the cent; 0 when nothing is to be credited
    variance: Variance
    final: bool  # no more funds are expected for this payment
    hold_reason: str | None = None  # set when an operator must look before anything is credited

    @property
    def creditable(self) -> bool:
        return self.final and self.hold_reason is None and self.credit_usd > ZERO


# The most a deposit is ever credited automatically, in USD: the 15 integer digits the API accepts for an
# ordered amount (and far below what the NUMERIC(20, 2) ledger and credit_usd columns hold). A received
# value beyond it (actually_paid absurdly larger than pay_amount: a gateway bug or a forged answer) is
# held for an operator and never credited by itself.
MAX_CREDIT_USD = Decimal("999999999999999.99")
BEYOND_CEILING = "received value beyond the ceiling"


def received_value_usd(*, price_amount: Decimal, pay_amount: Decimal, actually_paid: Decimal) -> Decimal:
    """USD value of what arrived: ``actually_paid / pay_amount × price_amount``, floored to the cent."""
    if pay_amount <= ZERO:
        return ZERO
    # Enough digits that the division itself never rounds up to the next cent before we floor.
    with localcontext() as exact:
        exact.prec = 80
        return floor_cents(actually_paid * price_amount / pay_amount)


def decide_credit(
    *,
    status: PaymentStatus,
    amount_usd: Decimal,
    pay_amount: Decimal | None,
    actually_paid: Decimal | None,
    past_expiry: bool,
    underpaid_policy: VariancePolicy = VariancePolicy.CREDIT_RECEIVED,
    overpaid_policy: VariancePolicy = VariancePolicy.CREDIT_RECEIVED,
) -> CreditDecision:
    """How much a payment credits.

    Completed payments credit the USD value that actually arrived (the ordered amount when the
    gateway reports no received amount). Partially paid ones credit what arrived only once final,
    i.e. past their expiry. Failed or expired payments that nevertheless received funds credit
    nothing and are held for an operator. Variance policies may hold under- and over-payments.
    """
    known = pay_amount is not None and actually_paid is not None and pay_amount > ZERO
    if status is PaymentStatus.COMPLETED:
        if not known:
            return CreditDecision(amount_usd, Variance.EXACT, final=True)
        assert pay_amount is not None and actually_paid is not None
        variance = _variance(actually_paid, pay_amount)
        if variance is Variance.EXACT:
            return CreditDecision(amount_usd, variance, final=True)
        value = received_value_usd(price_amount=amount_usd, pay_amount=pay_amount, actually_paid=actually_paid)
        if value > MAX_CREDIT_USD:
            return _beyond_ceiling(value, variance)
        return CreditDecision(
            value, variance, final=True, hold_reason=_policy_hold(variance, underpaid_policy, overpaid_policy)
        )
    if status is PaymentStatus.PARTIALLY_PAID:
        if not past_expiry or not known:
            return CreditDecision(ZERO, Variance.UNDERPAID, final=False)
        assert pay_amount is not None and actually_paid is not None
        value = received_value_usd(price_amount=amount_usd, pay_amount=pay_amount, actually_paid=actually_paid)
        if value > MAX_CREDIT_USD:
            return _beyond_ceiling(value, Variance.UNDERPAID)
        return CreditDecision(
            value,
            Variance.UNDERPAID,
            final=True,
            hold_reason=_policy_hold(Variance.UNDERPAID, underpaid_policy, overpaid_policy),
        )
    final = status in TERMINAL
    if final and actually_paid is not None and actually_paid > ZERO and status is not PaymentStatus.REFUNDED:
        return CreditDecision(
            ZERO, Variance.UNDERPAID, final=True, hold_reason=f"{status.value} payment received {actually_paid}"
        )
    return CreditDecision(ZERO, Variance.EXACT, final=final)


def _beyond_ceiling(value: Decimal, variance: Variance) -> CreditDecision:
    """Nothing credited (0 is what is stored), held with the value that arrived in the reason."""
    reason = f"{BEYOND_CEILING} of {MAX_CREDIT_USD} USD: worth {value} USD by the gateway's amounts; not credited"
    return CreditDecision(ZERO, variance, final=True, hold_reason=reason)


def _policy_hold(variance: Variance, underpaid: VariancePolicy, overpaid: VariancePolicy) -> str | None:
    if variance is Variance.UNDERPAID and underpaid is VariancePolicy.HOLD_FOR_REVIEW:
        return "underpaid: held for review by policy"
    if variance is Variance.OVERPAID and overpaid is VariancePolicy.HOLD_FOR_REVIEW:
        return "overpaid: held for review by policy"
    return None


# IPN bodies carry amounts as JavaScript doubles (about 16 significant digits), so an 18-decimal
# amount may come back a few units off in its last places. A relative difference this small is
# noise, not an under- or over-payment; it is also far below a cent on any real deposit.
EXACT_TOLERANCE = Decimal("1e-12")


def _variance(actually_paid: Decimal, pay_amount: Decimal) -> Variance:
    if abs(actually_paid - pay_amount) <= pay_amount * EXACT_TOLERANCE:
        return Variance.EXACT
    if actually_paid < pay_amount:
        return Variance.UNDERPAID
    return Variance.OVERPAID


def next_poll_delay(attempts: int, *, first: float, minimum: float, maximum: float) -> float:
    """Seconds until the next status poll: ``first`` after creation, then doubling from ``minimum``."""
    if attempts <= 0:
        return first
    return min(maximum, minimum * (2 ** min(attempts - 1, 30)))


@dataclass(frozen=True)
class Payment:
    """A deposit payment as stored."""

    id: str
    request_id: str
    request_fingerprint: str
    user_id: str
    amount_usd: Decimal
    currency_code: str
    description: str
    status: PaymentStatus
    gateway_status: str | None
    provider_payment_id: str | None
    pay_address: str | None
    payin_extra_id: str | None
    pay_amount: Decimal | None
    actually_paid: Decimal | None
    pay_currency: str | None
    network: str | None
    payin_hash: str | None
    expires_at: datetime | None
    gateway_updated_at: datetime | None
    error_code: str | None
    error_message: str | None
    create_claimed_until: datetime | None
    final_at: datetime | None
    credit_usd: Decimal | None
    variance: str | None
    hold_reason: str | None
    settled_at: datetime | None
    ledger_transaction_id: int | None
    next_poll_at: datetime | None
    poll_attempts: int
    created_at: datetime
    updated_at: datetime
    # When create-payment last sent POST /v1/payment without storing an answer (migration 0010).
    gateway_attempted_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def created_at_gateway(self) -> bool:
        return self.provider_payment_id is not None


@dataclass(frozen=True, kw_only=True)
class PaymentUpdate(PartialUpdate):
    """The columns of a stored payment that change; every other one is left as it is."""

    status: PaymentStatus | Keep = KEEP
    gateway_status: str | Keep | None = KEEP
    provider_payment_id: str | Keep | None = KEEP
    pay_address: str | Keep | None = KEEP
    payin_extra_id: str | Keep | None = KEEP
    pay_amount: Decimal | Keep | None = KEEP
    actually_paid: Decimal | Keep | None = KEEP
    pay_currency: str | Keep | None = KEEP
    network: str | Keep | None = KEEP
    payin_hash: str | Keep | None = KEEP
    expires_at: datetime | Keep | None = KEEP
    gateway_updated_at: datetime | Keep | None = KEEP
    error_code: str | Keep | None = KEEP
    error_message: str | Keep | None = KEEP
    create_claimed_until: datetime | Keep | None = KEEP
    final_at: datetime | Keep | None = KEEP
    credit_usd: Decimal | Keep | None = KEEP
    variance: str | Keep | None = KEEP
    hold_reason: str | Keep | None = KEEP
    settled_at: datetime | Keep | None = KEEP
    ledger_transaction_id: int | Keep | None = KEEP
    next_poll_at: datetime | Keep | None = KEEP
    poll_attempts: int | Keep = KEEP


def request_fingerprint(*, user_id: str, amount_usd: Decimal, currency_code: str, description: str) -> str:
    """What a replay of the same ``request_id`` must match: the request's own arguments."""
    canonical = "\x1f".join((user_id, str(amount_usd.quantize(Decimal("0.01"))), currency_code, description))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
