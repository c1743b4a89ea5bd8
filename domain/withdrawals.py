"""Withdrawal rules: the status machine, what each status does to the hold, fees, destinations.

Funds are held when a request is accepted; completion posts the hold, rejection,
cancellation and failure release it. Nothing here touches storage: callers apply the
outcome inside their own transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Literal

from domain.errors import InvalidRequest, InvalidTransition
from domain.money import CENT, format_usd, round_cents
from domain.updates import KEEP, Keep, PartialUpdate


class WithdrawalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    PROCESSING = "processing"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL: frozenset[WithdrawalStatus] = frozenset(
    {
        WithdrawalStatus.COMPLETED,
        WithdrawalStatus.REJECTED,
        WithdrawalStatus.CANCELLED,
        WithdrawalStatus.FAILED,
    }
)

ALLOWED_TRANSITIONS: dict[WithdrawalStatus, frozenset[WithdrawalStatus]] = {
    WithdrawalStatus.PENDING: frozenset(
        {WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED, WithdrawalStatus.CANCELLED}
    ),
    # Manual mode: an operator pays out off-platform and completes an approved request directly.
    WithdrawalStatus.APPROVED: frozenset(
        {
            WithdrawalStatus.PROCESSING,
            WithdrawalStatus.COMPLETED,
            WithdrawalStatus.FAILED,
            WithdrawalStatus.REJECTED,
        }
    ),
    WithdrawalStatus.PROCESSING: frozenset({WithdrawalStatus.COMPLETED, WithdrawalStatus.FAILED}),
    WithdrawalStatus.COMPLETED: frozenset(),
    WithdrawalStatus.REJECTED: frozenset(),
    WithdrawalStatus.CANCELLED: frozenset(),
    WithdrawalStatus.FAILED: frozenset(),
}

_VERBS: dict[WithdrawalStatus, str] = {
    WithdrawalStatus.PENDING: "return to pending",
    WithdrawalStatus.APPROVED: "approve",
    WithdrawalStatus.PROCESSING: "start processing",
    WithdrawalStatus.COMPLETED: "complete",
    WithdrawalStatus.REJECTED: "reject",
    WithdrawalStatus.CANCELLED: "cancel",
    WithdrawalStatus.FAILED: "fail",
}

HoldOutcome = Literal["post", "release"] | None


def _status(value: WithdrawalStatus | str) -> WithdrawalStatus:
    try:
        return WithdrawalStatus(value)
    except ValueError:
        raise InvalidTransition(f"unknown withdrawal status {value!r}") from None


def can_transition(current: WithdrawalStatus | str, target: WithdrawalStatus | str) -> bool:
    """Whether a withdrawal in ``current`` may move to ``target`` (unknown statuses: False)."""
    try:
        return _status(target) in ALLOWED_TRANSITIONS[_status(current)]
    except InvalidTransition:
        return False


def transition(current: WithdrawalStatus | str, target: WithdrawalStatus | str) -> WithdrawalStatus:
    """Return ``target`` if the move is allowed, else raise `InvalidTransition` naming both states.

    Moving to the same status is refused too: callers wanting idempotency compare first.
    """
    now, wanted = _status(current), _status(target)
    if wanted in ALLOWED_TRANSITIONS[now]:
        return wanted
    if now is wanted:
        raise InvalidTransition(f"withdrawal is already {now.value}")
    article = "an" if now.value[0] in "aeiou" else "a"
    raise InvalidTransition(f"cannot {_VERBS[wanted]} {article} {now.value} withdrawal")


def hold_outcome(target: WithdrawalStatus | str) -> HoldOutcome:
    """What entering ``target`` does to the funds held for the withdrawal.

    completed → ``"post"`` (the held amount leaves the balance for good);
    rejected/cancelled/failed → ``"release"`` (back to the available balance);
    anything else → None (the hold stays as it is).
    """
    status = _status(target)
    if status is WithdrawalStatus.COMPLETED:
        return "post"
    if status in TERMINAL:
        return "release"
    return None


def _check_money(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


@dataclass(frozen=True)
class FeeSchedule:
    """Withdrawal fees and limits, in USD. ``service_fee_percent=Decimal("1.5")`` means 1.5 %.

    A schedule that makes no sense (floats, negatives, percent ≥ 100, min > max) is a
    configuration error and fails on construction.
    """

    network_fee_usd: Decimal
    service_fee_fixed_usd: Decimal
    service_fee_percent: Decimal
    min_amount_usd: Decimal = Decimal("10.00")
    max_amount_usd: Decimal = Decimal("50000.00")

    def __post_init__(self) -> None:
        for name in (
            "network_fee_usd",
            "service_fee_fixed_usd",
            "service_fee_percent",
            "min_amount_usd",
            "max_amount_usd",
        ):
            _check_money(name, getattr(self, name))
        if self.service_fee_percent >= 100:
            raise ValueError("service_fee_percent must be below 100")
        if self.min_amount_usd <= 0:
            raise ValueError("min_amount_usd must be greater than zero")
        if self.min_amount_usd > self.max_amount_usd:
            raise ValueError("min_amount_usd must not exceed max_amount_usd")


@dataclass(frozen=True)
class WithdrawalQuote:
    """Every figure to the cent; ``final_amount_usd`` is what is sent to the user (before conversion)."""

    amount_usd: Decimal
    network_fee_usd: Decimal
    service_fee_usd: Decimal
    total_fee_usd: Decimal
    final_amount_usd: Decimal


def quote_withdrawal(amount_usd: Decimal, fees: FeeSchedule) -> WithdrawalQuote:
    """Fees and net amount for withdrawing ``amount_usd`` (already held against the balance).

    service fee = fixed + amount × percent / 100, rounded half-up to the cent;
    network fee rounded half-up to the cent; total = network + service; final = amount − total.
    Raises `InvalidRequest` (field ``amount_usd``) outside [min, max] or when the fees eat it all.
    """
    field = "amount_usd"
    if isinstance(amount_usd, bool) or not isinstance(amount_usd, Decimal):
        raise InvalidRequest(f"must be a Decimal, got {type(amount_usd).__name__}", field=field)
    if not amount_usd.is_finite():
        raise InvalidRequest("must be a finite amount", field=field)
    if amount_usd != amount_usd.quantize(CENT):
        raise InvalidRequest("must not have more than two decimal places", field=field)
    amount = amount_usd.quantize(CENT)
    if amount < fees.min_amount_usd:
        raise InvalidRequest(
            f"{format_usd(amount)} is below the minimum withdrawal of {format_usd(fees.min_amount_usd)}",
            field=field,
        )
    if amount > fees.max_amount_usd:
        raise InvalidRequest(
            f"{format_usd(amount)} is above the maximum withdrawal of {format_usd(fees.max_amount_usd)}",
            field=field,
        )
    network_fee = round_cents(fees.network_fee_usd)
    service_fee = round_cents(fees.service_fee_fixed_usd + amount * fees.service_fee_percent / 100)
    total_fee = network_fee + service_fee
    final_amount = amount - total_fee
    if final_amount <= 0:
        raise InvalidRequest(f"fees of {format_usd(total_fee)} exceed the amount of {format_usd(amount)}", field=field)
    return WithdrawalQuote(
        amount_usd=amount,
        network_fee_usd=network_fee,
        service_fee_usd=service_fee,
        total_fee_usd=total_fee,
        final_amount_usd=final_amount,
    )


MAX_DESTINATION_LENGTH = 128
_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _compile_rule(pattern: str, *, what: str, currency: str | None, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        name = currency or "this currency"
        raise InvalidRequest(
            f"the {what} rules for {name} are broken (invalid pattern from the gateway); "
            "please try again later or contact support",
            field=field,
        ) from exc


def network_fee_in_usd(*, fee_crypto: Decimal, amount_crypto: Decimal, amount_usd: Decimal) -> Decimal:
    """A payout fee quoted in the coin, in USD at the rate of the payout itself, rounded half-up to the cent."""
    if amount_crypto <= 0:
        raise InvalidRequest("the gateway quoted no amount for this withdrawal", field="amount_usd")
    if fee_crypto < 0:
        raise InvalidRequest("the gateway quoted a negative fee", field="amount_usd")
    with localcontext() as exact:
        exact.prec = 80
        return round_cents(fee_crypto * amount_usd / amount_crypto)


def validate_destination(
    address: str,
    extra_id: str | None,
    *,
    wallet_regex: str | None,
    extra_id_required: bool,
    extra_id_regex: str | None,
    currency: str | None = None,
) -> tuple[str, str | None]:
    """Check a withdrawal destination; returns ``(address, extra_id)`` stripped (empty memo → None).

    The gateway's patterns must match the whole value. They are only applied to values of
    at most 128 characters (longer is refused first), which bounds the cost of a pathological
    pattern; a pattern that does not compile is reported as broken currency rules.
    ``currency`` only names the currency in messages.
    """
    name = currency.upper() if currency else None
    if not isinstance(address, str):
        raise InvalidRequest("wallet address is required", field="wallet_address")
    wallet = address.strip()
    if not wallet:
        raise InvalidRequest("wallet address is required", field="wallet_address")
    if len(wallet) > MAX_DESTINATION_LENGTH:
        raise InvalidRequest(
            f"wallet address is longer than {MAX_DESTINATION_LENGTH} characters", field="wallet_address"
        )
    if _CONTROL_OR_SPACE.search(wallet):
        raise InvalidRequest("wallet address must not contain spaces or control characters", field="wallet_address")
    if wallet_regex:
        rule = _compile_rule(wallet_regex, what="address", currency=name, field="wallet_address")
        if rule.fullmatch(wallet) is None:
            label = f"{name} address" if name else "expected address"
            raise InvalidRequest(f"address does not match the {label} format", field="wallet_address")

    memo = extra_id.strip() if isinstance(extra_id, str) else None
    memo = memo or None
    if memo is None:
        if extra_id_required:
            raise InvalidRequest("this currency needs a memo/tag", field="extra_id")
        return wallet, None
    if len(memo) > MAX_DESTINATION_LENGTH:
        raise InvalidRequest(f"memo/tag is longer than {MAX_DESTINATION_LENGTH} characters", field="extra_id")
    if _CONTROL.search(memo):  # spaces are fine: Stellar and TON text memos may hold them
        raise InvalidRequest("memo/tag must not contain control characters", field="extra_id")
    if extra_id_regex:
        rule = _compile_rule(extra_id_regex, what="memo/tag", currency=name, field="extra_id")
        if rule.fullmatch(memo) is None:
            label = f"{name} memo/tag" if name else "expected memo/tag"
            raise InvalidRequest(f"memo/tag does not match the {label} format", field="extra_id")
    return wallet, memo


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal request as stored."""

    id: str
    request_id: str
    request_fingerprint: str
    user_id: str
    amount_usd: Decimal
    currency_code: str
    wallet_address: str
    extra_id: str | None
    network_fee_usd: Decimal
    service_fee_usd: Decimal
    total_fee_usd: Decimal
    final_amount_usd: Decimal
    status: WithdrawalStatus
    payout_mode: str | None
    payout_amount: Decimal | None
    provider_payout_id: str | None
    payout_status: str | None
    transaction_hash: str | None
    error_code: str | None
    error_message: str | None
    payout_claimed_until: datetime | None
    next_check_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    payout_attempted_at: datetime | None
    review_reason: str | None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, kw_only=True)
class WithdrawalUpdate(PartialUpdate):
    """The columns of a stored withdrawal that change; every other one is left as it is."""

    status: WithdrawalStatus | Keep = KEEP
    payout_mode: str | Keep | None = KEEP
    payout_amount: Decimal | Keep | None = KEEP
    provider_payout_id: str | Keep | None = KEEP
    payout_status: str | Keep | None = KEEP
    transaction_hash: str | Keep | None = KEEP
    error_code: str | Keep | None = KEEP
    error_message: str | Keep | None = KEEP
    payout_claimed_until: datetime | Keep | None = KEEP
    next_check_at: datetime | Keep | None = KEEP
    completed_at: datetime | Keep | None = KEEP
    payout_attempted_at: datetime | Keep | None = KEEP
    review_reason: str | Keep | None = KEEP


def withdrawal_fingerprint(
    *, user_id: str, amount_usd: Decimal, currency_code: str, wallet_address: str, extra_id: str | None
) -> str:
    """What a replay of the same ``request_id`` must match."""
    canonical = "\x1f".join((user_id, str(amount_usd.quantize(CENT)), currency_code, wallet_address, extra_id or ""))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Gateway payout statuses → ours. CREATING/WAITING/PROCESSING/SENDING all mean "on its way".
PAYOUT_STATUS_MAP: dict[str, WithdrawalStatus] = {
    "CREATING": WithdrawalStatus.PROCESSING,
    "WAITING": WithdrawalStatus.PROCESSING,
    "PROCESSING": WithdrawalStatus.PROCESSING,
    "SENDING": WithdrawalStatus.PROCESSING,
    "FINISHED": WithdrawalStatus.COMPLETED,
    "FAILED": WithdrawalStatus.FAILED,
    "REJECTED": WithdrawalStatus.FAILED,
}


def map_payout_status(gateway_status: str) -> WithdrawalStatus | None:
    """Our status for a NOWPayments payout status; ``None`` for one we do not know (ignore it)."""
    return PAYOUT_STATUS_MAP.get(gateway_status.strip().upper()) if isinstance(gateway_status, str) else None
