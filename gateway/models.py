"""What the gateway tells us, as frozen dataclasses with exact `Decimal` amounts.

`from_wire` constructors accept the type drift NOWPayments is known for (DESIGN.md §6):
ids as strings or numbers, amounts as numbers or strings, `updated_at` as an ISO string
or epoch milliseconds. Anything we cannot make sense of raises `GatewayProtocolError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.money import decimal_from_wire, holdable_crypto_amount
from gateway.errors import GatewayProtocolError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")


def _decimal(body: Mapping[str, Any], key: str) -> Decimal | None:
    """An amount: refused (without echoing it) unless it is a number our NUMERIC columns can hold."""
    try:
        value = decimal_from_wire(body.get(key))
    except (TypeError, ValueError) as exc:
        raise GatewayProtocolError(f"field {key!r} is not a number") from exc
    if value is not None and not holdable_crypto_amount(value):
        raise GatewayProtocolError(f"field {key!r} is not an amount we can hold (negative, or 10^20 or more)")
    return value


def _required_decimal(body: Mapping[str, Any], key: str) -> Decimal:
    value = _decimal(body, key)
    if value is None:
        raise GatewayProtocolError(f"field {key!r} is missing")
    return value


def _identifier(body: Mapping[str, Any], key: str) -> str | None:
    """An id that may arrive as a string or a JSON number; returned as text."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise GatewayProtocolError(f"field {key!r} has an unexpected type")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        raise GatewayProtocolError(f"field {key!r} is not an identifier")
    if isinstance(value, str):
        return value.strip() or None
    raise GatewayProtocolError(f"field {key!r} has an unexpected type")


def _text(body: Mapping[str, Any], key: str) -> str | None:
    """Free text; numbers are accepted too (a destination tag may come as a number)."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise GatewayProtocolError(f"field {key!r} has an unexpected type")
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        return str(value)
    raise GatewayProtocolError(f"field {key!r} has an unexpected type")


def _code(body: Mapping[str, Any], key: str) -> str | None:
    """A currency code or ticker, normalised to lowercase (the gateway mixes cases)."""
    value = _text(body, key)
    return value.strip().lower() if value is not None else None


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise GatewayProtocolError(f"field {key!r} is not a boolean")


def _integer(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise GatewayProtocolError(f"field {key!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise GatewayProtocolError(f"field {key!r} is not an integer")


def parse_timestamp(value: object, *, field_name: str = "timestamp") -> datetime | None:
    """An ISO-8601 string or epoch milliseconds (number or numeric text) → aware UTC datetime.

    A naive ISO string is taken as UTC (the gateway writes UTC). ``None``/``""`` → ``None``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise GatewayProtocolError(f"field {field_name!r} is not a timestamp")
    millis: Decimal | None = None
    if isinstance(value, int | Decimal):
        millis = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if _NUMERIC_TEXT.fullmatch(text):
            millis = Decimal(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError as exc:
                raise GatewayProtocolError(f"field {field_name!r} is not a timestamp") from exc
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    else:
        raise GatewayProtocolError(f"field {field_name!r} is not a timestamp")
    if not millis.is_finite() or millis < 0:
        raise GatewayProtocolError(f"field {field_name!r} is not a timestamp")
    try:
        return _EPOCH + timedelta(microseconds=int(millis * 1000))
    except OverflowError as exc:
        raise GatewayProtocolError(f"field {field_name!r} is out of range") from exc


def _require_mapping(body: object, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise GatewayProtocolError(f"{what} is not a JSON object")
    return body


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """A payment as NOWPayments reports it. `status` is the raw gateway status ("waiting"...)."""

    payment_id: str
    status: str
    pay_address: str | None = None
    payin_extra_id: str | None = None
    price_amount: Decimal | None = None
    price_currency: str | None = None
    pay_amount: Decimal | None = None
    actually_paid: Decimal | None = None
    pay_currency: str | None = None
    order_id: str | None = None
    outcome_amount: Decimal | None = None
    outcome_currency: str | None = None
    payin_hash: str | None = None
    payout_hash: str | None = None
    network: str | None = None
    expiration_estimate_date: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    purchase_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> GatewayPayment:
        body = _require_mapping(body, "payment")
        payment_id = _identifier(body, "payment_id")
        if payment_id is None:
            raise GatewayProtocolError("payment has no payment_id")
        status = body.get("payment_status")
        if not isinstance(status, str) or not status.strip():
            raise GatewayProtocolError("payment has no payment_status")
        return cls(
            payment_id=payment_id,
            status=status.strip(),
            pay_address=_text(body, "pay_address"),
            payin_extra_id=_text(body, "payin_extra_id"),
            price_amount=_decimal(body, "price_amount"),
            price_currency=_code(body, "price_currency"),
            pay_amount=_decimal(body, "pay_amount"),
            actually_paid=_decimal(body, "actually_paid"),
            pay_currency=_code(body, "pay_currency"),
            order_id=_text(body, "order_id"),
            outcome_amount=_decimal(body, "outcome_amount"),
            outcome_currency=_code(body, "outcome_currency"),
            payin_hash=_text(body, "payin_hash"),
            payout_hash=_text(body, "payout_hash"),
            network=_code(body, "network"),
            expiration_estimate_date=parse_timestamp(
                body.get("expiration_estimate_date"), field_name="expiration_estimate_date"
            ),
            created_at=parse_timestamp(body.get("created_at"), field_name="created_at"),
            updated_at=parse_timestamp(body.get("updated_at"), field_name="updated_at"),
            purchase_id=_identifier(body, "purchase_id"),
            raw=dict(body),
        )


@dataclass(frozen=True, slots=True)
class GatewayPaymentPage:
    """One page of the payment list (GET /payment/): its payments and where it stands."""

    payments: tuple[GatewayPayment, ...]
    limit: int
    page: int
    pages_count: int
    total: int

    @classmethod
    def from_wire(cls, body: object) -> GatewayPaymentPage:
        body = _require_mapping(body, "payment list")
        data = body.get("data")
        if not isinstance(data, list):
            raise GatewayProtocolError("payment list has no data list")
        counts = {key: _integer(body, key) for key in ("limit", "page", "pagesCount", "total")}
        missing = [key for key, value in counts.items() if value is None]
        if missing:
            raise GatewayProtocolError(f"payment list has no {', '.join(missing)}")
        return cls(
            payments=tuple(GatewayPayment.from_wire(_require_mapping(item, "payment list entry")) for item in data),
            limit=counts["limit"] or 0,
            page=counts["page"] or 0,
            pages_count=counts["pagesCount"] or 0,
            total=counts["total"] or 0,
        )


@dataclass(frozen=True, slots=True)
class GatewayCurrency:
    """One entry of GET /full-currencies. `code` is lowercase; `enabled` is the wire's `enable`."""

    code: str
    name: str
    network: str | None
    ticker: str | None
    precision: int | None
    wallet_regex: str | None
    extra_id_exists: bool
    extra_id_regex: str | None
    enabled: bool

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> GatewayCurrency:
        body = _require_mapping(body, "currency")
        code = _code(body, "code")
        if not code:
            raise GatewayProtocolError("currency has no code")
        return cls(
            code=code,
            name=_text(body, "name") or code.upper(),
            network=_code(body, "network"),
            ticker=_code(body, "ticker"),
            precision=_integer(body, "precision"),
            wallet_regex=_text(body, "wallet_regex"),
            extra_id_exists=_flag(body, "extra_id_exists", False),
            extra_id_regex=_text(body, "extra_id_regex"),
            # The gateway is the authority on availability and refuses disabled coins itself;
            # an entry without the flag is treated as listed-and-usable.
            enabled=_flag(body, "enable", True),
        )


@dataclass(frozen=True, slots=True)
class MinAmount:
    """GET /min-amount: the smallest payment in `currency_from`, and its fiat value if asked."""

    currency_from: str
    currency_to: str
    min_amount: Decimal
    fiat_equivalent: Decimal | None

    @classmethod
    def from_wire(cls, body: Mapping[str, Any], *, default_currency_from: str = "") -> MinAmount:
        body = _require_mapping(body, "min-amount answer")
        currency_from = _code(body, "currency_from") or default_currency_from.lower()
        if not currency_from:
            raise GatewayProtocolError("min-amount answer has no currency_from")
        return cls(
            currency_from=currency_from,
            currency_to=_code(body, "currency_to") or currency_from,
            min_amount=_required_decimal(body, "min_amount"),
            fiat_equivalent=_decimal(body, "fiat_equivalent"),
        )


PAYOUT_STATUSES = ("CREATING", "WAITING", "PROCESSING", "SENDING", "FINISHED", "FAILED", "REJECTED")
"""Withdrawal statuses of the mass payouts API, in the gateway's upper case."""


def _first_present(body: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` present with a value (the gateway mixes snake and camel case)."""
    for key in keys:
        value = body.get(key)
        if value is not None and value != "":
            return value
    return None


@dataclass(frozen=True, slots=True)
class GatewayPayout:
    """One withdrawal of a mass payout. `payout_id` is the withdrawal's id, `batch_id` its batch.

    `status` is the raw gateway status, upper-cased (see `PAYOUT_STATUSES`); `hash` is the
    transaction hash once the gateway has sent it; `error` is the gateway's reason text for a
    FAILED/REJECTED withdrawal.
    """

    payout_id: str
    batch_id: str | None
    status: str
    address: str | None
    currency: str | None
    amount: Decimal
    extra_id: str | None = None
    hash: str | None = None
    error: str | None = None
    unique_external_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any], *, batch_id: str | None = None) -> GatewayPayout:
        """Parse a withdrawal object (from POST/GET /payout or a payout IPN).

        `batch_id` is the enclosing batch's id, used when the withdrawal lacks
        `batch_withdrawal_id`.
        """
        body = _require_mapping(body, "payout")
        payout_id = _identifier(body, "id")
        if payout_id is None:
            raise GatewayProtocolError("payout has no id")
        status = body.get("status")
        if not isinstance(status, str) or not status.strip():
            raise GatewayProtocolError("payout has no status")
        error = body.get("error")
        return cls(
            payout_id=payout_id,
            batch_id=_identifier(body, "batch_withdrawal_id") or _identifier(body, "batchWithdrawalId") or batch_id,
            status=status.strip().upper(),
            address=_text(body, "address"),
            currency=_code(body, "currency"),
            amount=_required_decimal(body, "amount"),
            extra_id=_text(body, "extra_id"),
            hash=_text(body, "hash"),
            # `error` is usually text or null; keep anything else readable rather than fail.
            error=None if error is None or error == "" else (error if isinstance(error, str) else str(error)),
            unique_external_id=_text(body, "unique_external_id"),
            created_at=parse_timestamp(_first_present(body, "created_at", "createdAt"), field_name="created_at"),
            updated_at=parse_timestamp(_first_present(body, "updated_at", "updatedAt"), field_name="updated_at"),
            raw=dict(body),
        )

    @classmethod
    def many_from_wire(cls, body: object, *, batch_id: str | None = None) -> list[GatewayPayout]:
        """Every withdrawal in a payout answer, whatever its container.

        Accepted: a list of withdrawals; a batch ``{"id", "withdrawals": [...]}``; a listing
        ``{"payouts"|"data"|"result": [...]}`` whose entries are withdrawals or batches; a
        single withdrawal object.
        """
        if isinstance(body, list):
            found: list[GatewayPayout] = []
            for item in body:
                found.extend(cls.many_from_wire(_require_mapping(item, "payout entry"), batch_id=batch_id))
            return found
        body = _require_mapping(body, "payout answer")
        withdrawals = body.get("withdrawals")
        if isinstance(withdrawals, list):
            return cls.many_from_wire(withdrawals, batch_id=_identifier(body, "id") or batch_id)
        for key in ("payouts", "data", "result"):
            listed = body.get(key)
            if isinstance(listed, list):
                return cls.many_from_wire(listed, batch_id=batch_id)
        if "id" in body and "status" in body:
            return [cls.from_wire(body, batch_id=batch_id)]
        raise GatewayProtocolError("payout answer has no withdrawals")
