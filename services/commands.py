"""The message contract: decoding and validating what other systems enqueue.

Every actor takes its arguments by name (positional also works, in the documented order).
Anything malformed raises `InvalidRequest`, which the actors never retry: the message goes
to the dead-letter queue with the reason logged, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from domain.errors import InvalidRequest
from domain.money import parse_usd

MAX_REF_LENGTH = 128
MAX_DESCRIPTION_LENGTH = 500


def bind_arguments(
    names: Sequence[str], required: int, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Map a message's ``args``/``kwargs`` onto parameter ``names`` (the first ``required`` are mandatory)."""
    if len(args) > len(names):
        raise InvalidRequest(f"expected at most {len(names)} arguments, got {len(args)}")
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise InvalidRequest(f"unexpected argument {key!r}")
        if key in bound:
            raise InvalidRequest(f"argument {key!r} given twice")
        bound[key] = value
    missing = [name for name in names[:required] if name not in bound]
    if missing:
        raise InvalidRequest(f"missing required argument(s): {', '.join(missing)}")
    return bound


def reference(value: Any, *, field: str) -> str:
    """An opaque id from the caller (request id, user id): non-empty text, printable, bounded."""
    if not isinstance(value, str):
        raise InvalidRequest(f"must be a string, got {type(value).__name__}", field=field)
    text = value.strip()
    if not text:
        raise InvalidRequest("must not be empty", field=field)
    if len(text) > MAX_REF_LENGTH:
        raise InvalidRequest(f"must be at most {MAX_REF_LENGTH} characters", field=field)
    if not text.isprintable():
        raise InvalidRequest("must not contain control characters", field=field)
    return text


def currency_code(value: Any, *, field: str = "currency_code") -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"must be a string, got {type(value).__name__}", field=field)
    code = value.strip().lower()
    if not (2 <= len(code) <= 20 and code.isascii() and code.isalnum()):
        raise InvalidRequest(f"{value!r} is not a currency code", field=field)
    return code


def description(value: Any, *, field: str = "description") -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"must be a string, got {type(value).__name__}", field=field)
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequest(f"must be at most {MAX_DESCRIPTION_LENGTH} characters", field=field)
    return value


@dataclass(frozen=True)
class CreatePaymentRequest:
    request_id: str
    user_id: str
    amount_usd: Decimal
    currency_code: str
    description: str = ""

    @classmethod
    def from_message(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> CreatePaymentRequest:
        names = ("request_id", "user_id", "amount_usd", "currency_code", "description")
        bound = bind_arguments(names, 4, args, kwargs)
        return cls(
            request_id=reference(bound["request_id"], field="request_id"),
            user_id=reference(bound["user_id"], field="user_id"),
            amount_usd=parse_usd(bound["amount_usd"], field="amount_usd"),
            currency_code=currency_code(bound["currency_code"]),
            description=description(bound.get("description")),
        )


def payment_id_message(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The single ``payment_id`` argument of poll_status and settle_deposit."""
    bound = bind_arguments(("payment_id",), 1, args, kwargs)
    return reference(bound["payment_id"], field="payment_id")


@dataclass(frozen=True)
class WithdrawalRequest:
    request_id: str
    user_id: str
    amount_usd: Decimal
    currency_code: str
    wallet_address: str
    extra_id: str | None = None

    @classmethod
    def from_message(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> WithdrawalRequest:
        names = ("request_id", "user_id", "amount_usd", "currency_code", "wallet_address", "extra_id")
        bound = bind_arguments(names, 5, args, kwargs)
        address = bound["wallet_address"]
        if not isinstance(address, str):
            raise InvalidRequest(f"must be a string, got {type(address).__name__}", field="wallet_address")
        extra_id = bound.get("extra_id")
        if extra_id is not None and not isinstance(extra_id, str):
            raise InvalidRequest(f"must be a string or null, got {type(extra_id).__name__}", field="extra_id")
        return cls(
            request_id=reference(bound["request_id"], field="request_id"),
            user_id=reference(bound["user_id"], field="user_id"),
            amount_usd=parse_usd(bound["amount_usd"], field="amount_usd"),
            currency_code=currency_code(bound["currency_code"]),
            wallet_address=address,
            extra_id=extra_id,
        )


def withdrawal_id_message(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The single ``withdrawal_id`` argument of process_withdrawal."""
    bound = bind_arguments(("withdrawal_id",), 1, args, kwargs)
    return reference(bound["withdrawal_id"], field="withdrawal_id")
