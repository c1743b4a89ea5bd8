"""Notification events: what we announce to integrators, and the body each announcement carries.

Bodies follow the Standard Webhooks payload shape: ``{"type", "id", "created_at", "data"}``, where
``data`` is the same view of the payment or withdrawal the HTTP API returns. Money in views is decimal
text; a float never enters a body (it could not be sent back exactly as it was written).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.payments import PaymentStatus

EVENT_ID_PREFIX = "evt_"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID_RANDOM_LENGTH = 24


class EventType(StrEnum):
    DEPOSIT_PENDING = "deposit.pending"
    DEPOSIT_CONFIRMING = "deposit.confirming"
    DEPOSIT_CONFIRMED = "deposit.confirmed"
    DEPOSIT_PARTIALLY_PAID = "deposit.partially_paid"
    DEPOSIT_COMPLETED = "deposit.completed"
    DEPOSIT_CREDITED = "deposit.credited"
    DEPOSIT_HELD = "deposit.held"
    DEPOSIT_RELEASED = "deposit.released"
    DEPOSIT_DISMISSED = "deposit.dismissed"
    DEPOSIT_EXPIRED = "deposit.expired"
    DEPOSIT_FAILED = "deposit.failed"
    DEPOSIT_CANCELLED = "deposit.cancelled"
    DEPOSIT_REFUNDED = "deposit.refunded"
    DEPOSIT_REJECTED = "deposit.rejected"
    WITHDRAWAL_REQUESTED = "withdrawal.requested"
    WITHDRAWAL_APPROVED = "withdrawal.approved"
    WITHDRAWAL_REJECTED = "withdrawal.rejected"
    WITHDRAWAL_CANCELLED = "withdrawal.cancelled"
    WITHDRAWAL_PROCESSING = "withdrawal.processing"
    WITHDRAWAL_COMPLETED = "withdrawal.completed"
    WITHDRAWAL_FAILED = "withdrawal.failed"
    WITHDRAWAL_HELD = "withdrawal.held"
    WITHDRAWAL_REQUEST_REJECTED = "withdrawal.request_rejected"


# One line each; the README's integrator guide lists the same table.
EVENT_MEANINGS: dict[EventType, str] = {
    EventType.DEPOSIT_PENDING: "the deposit address is ready; waiting for the user's funds",
    EventType.DEPOSIT_CONFIRMING: "funds seen on chain, waiting for confirmations",
    EventType.DEPOSIT_CONFIRMED: "funds confirmed on chain; the gateway is finishing the payment",
    EventType.DEPOSIT_PARTIALLY_PAID: "less than the ordered amount arrived (credited once final, or held)",
    EventType.DEPOSIT_COMPLETED: "the gateway reports the payment finished; crediting follows",
    EventType.DEPOSIT_CREDITED: "the user's balance was credited (data.credit_usd); final",
    EventType.DEPOSIT_HELD: "held for an operator before any credit (data.hold_reason says why)",
    EventType.DEPOSIT_RELEASED: "an operator released a held deposit and it was credited (data.credit_usd)",
    EventType.DEPOSIT_DISMISSED: "an operator closed a held deposit without crediting it",
    EventType.DEPOSIT_EXPIRED: "no (or not enough) funds arrived before the address expired; nothing credited",
    EventType.DEPOSIT_FAILED: "the gateway reports the payment failed; nothing credited",
    EventType.DEPOSIT_CANCELLED: "the payment was cancelled; nothing credited",
    EventType.DEPOSIT_REFUNDED: "the gateway refunded the payment to the payer",
    EventType.DEPOSIT_REJECTED: "the deposit request was refused before a payment existed (subject: request_id)",
    EventType.WITHDRAWAL_REQUESTED: "accepted; the amount is held from the user's available balance",
    EventType.WITHDRAWAL_APPROVED: "an operator approved it; the payout follows",
    EventType.WITHDRAWAL_REJECTED: "an operator rejected it; the hold was released",
    EventType.WITHDRAWAL_CANCELLED: "cancelled while pending; the hold was released",
    EventType.WITHDRAWAL_PROCESSING: "handed to the payout (gateway or operator)",
    EventType.WITHDRAWAL_COMPLETED: "paid out (data.transaction_hash); the hold was posted; final",
    EventType.WITHDRAWAL_FAILED: "the payout failed; the hold was released; final",
    EventType.WITHDRAWAL_HELD: "held for an operator's review (data.review_reason says why)",
    EventType.WITHDRAWAL_REQUEST_REJECTED: "the request was refused before anything was held (subject: request_id)",
}

_DEPOSIT_STATUS_EVENTS: dict[PaymentStatus, EventType] = {
    PaymentStatus.PENDING: EventType.DEPOSIT_PENDING,
    PaymentStatus.CONFIRMING: EventType.DEPOSIT_CONFIRMING,
    PaymentStatus.CONFIRMED: EventType.DEPOSIT_CONFIRMED,
    PaymentStatus.PARTIALLY_PAID: EventType.DEPOSIT_PARTIALLY_PAID,
    PaymentStatus.COMPLETED: EventType.DEPOSIT_COMPLETED,
    PaymentStatus.FAILED: EventType.DEPOSIT_FAILED,
    PaymentStatus.EXPIRED: EventType.DEPOSIT_EXPIRED,
    PaymentStatus.CANCELLED: EventType.DEPOSIT_CANCELLED,
    PaymentStatus.REFUNDED: EventType.DEPOSIT_REFUNDED,
}

# Requests refused before a payment or withdrawal existed are announced under the caller's request_id.
_SUBJECT_KEYS: dict[EventType, str] = {
    EventType.DEPOSIT_REJECTED: "request_id",
    EventType.WITHDRAWAL_REQUEST_REJECTED: "request_id",
}


def deposit_status_event(status: PaymentStatus) -> EventType:
    """The event announcing that a deposit reached ``status``."""
    return _DEPOSIT_STATUS_EVENTS[status]


@dataclass(frozen=True)
class NewEvent:
    id: str
    type: EventType
    subject_id: str
    created_at: datetime
    payload: str  # the exact JSON body every delivery and reader gets


def new_event_id() -> str:
    """``evt_`` and 24 random lowercase letters and digits (no full stop: it is signed as ``{id}.{ts}.{body}``)."""
    return EVENT_ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_RANDOM_LENGTH))


def subject_of(event_type: EventType, view: dict[str, Any]) -> str:
    """The payment, withdrawal or request the event is about: delivery keeps each subject's events in order."""
    if event_type in _SUBJECT_KEYS:
        key = _SUBJECT_KEYS[event_type]
    elif event_type.value.startswith("deposit."):
        key = "internal_payment_id"
    else:
        key = "internal_withdrawal_id"
    subject = view.get(key)
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"a {event_type.value} event needs {key} in its view")
    return subject


def _json_safe(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Decimal):
        return format(value, "f")  # as text, like every amount the API returns
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    raise TypeError(f"cannot put {type(value).__name__} in an event body")


def event_body(event_type: EventType, event_id: str, created_at: datetime, view: dict[str, Any]) -> dict[str, Any]:
    """The body integrators receive: the type, our id, when it happened, and the subject's view."""
    return {
        "type": event_type.value,
        "id": event_id,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": _json_safe(view),
    }


def encode_body(body: dict[str, Any]) -> str:
    """Compact JSON, non-ASCII kept as is (it is sent as UTF-8)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def build_event(
    event_type: EventType | str, view: dict[str, Any], *, now: datetime, event_id: str | None = None
) -> NewEvent:
    """A new event about the subject ``view`` describes, with its body fixed once and for all."""
    kind = EventType(event_type)
    if now.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    ident = event_id or new_event_id()
    payload = encode_body(event_body(kind, ident, now, view))
    return NewEvent(id=ident, type=kind, subject_id=subject_of(kind, view), created_at=now, payload=payload)
