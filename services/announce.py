"""What the services announce to integrators: one outbox event per fact, in the caller's transaction.

Every payment status change, credit, hold, release and dismissal, every refused request and every
withdrawal transition is written here beside the change itself, so an event exists exactly when its
change committed. Each fact has a dedupe key, so a stage that runs twice announces it once. The
scheduler's sweep (and `deliver_notifications`) sends them; nothing here waits for the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from domain.notifications import EventType, NewEvent, build_event, deposit_status_event
from domain.payments import Payment
from domain.rejections import Rejection
from domain.withdrawals import Withdrawal, WithdrawalStatus
from services.views import payment_view, rejection_view, withdrawal_view
from storage import outbox

_WITHDRAWAL_EVENTS: dict[WithdrawalStatus, EventType] = {
    WithdrawalStatus.PENDING: EventType.WITHDRAWAL_REQUESTED,
    WithdrawalStatus.APPROVED: EventType.WITHDRAWAL_APPROVED,
    WithdrawalStatus.PROCESSING: EventType.WITHDRAWAL_PROCESSING,
    WithdrawalStatus.COMPLETED: EventType.WITHDRAWAL_COMPLETED,
    WithdrawalStatus.REJECTED: EventType.WITHDRAWAL_REJECTED,
    WithdrawalStatus.CANCELLED: EventType.WITHDRAWAL_CANCELLED,
    WithdrawalStatus.FAILED: EventType.WITHDRAWAL_FAILED,
}


def status_fact(payment: Payment) -> tuple[EventType, str]:
    """The event and fact of ``payment`` reaching its status: statuses only move forward, so once each."""
    event = deposit_status_event(payment.status)
    return event, event.value


def held_fact(payment: Payment) -> tuple[EventType, str]:
    """The event and fact of ``payment`` held for an operator: each distinct reason is announced once."""
    return EventType.DEPOSIT_HELD, f"held:{payment.hold_reason}"


def payment_events(payment: Payment, facts: Sequence[tuple[EventType, str]]) -> list[tuple[NewEvent, str]]:
    """The events (and their dedupe keys) announcing ``facts`` of ``payment``, for the caller to write with it."""
    view, now = payment_view(payment), datetime.now(UTC)
    return [(build_event(event, view, now=now), f"{payment.id}:{fact}") for event, fact in facts]


async def payment_status(conn: asyncpg.Connection, payment: Payment) -> None:
    """``payment`` (as just written) reached its status: statuses only move forward, so once each."""
    event, fact = status_fact(payment)
    await _payment(conn, event, payment, fact=fact)


async def payment_held(conn: asyncpg.Connection, payment: Payment) -> None:
    """``payment`` was just held for an operator; each distinct reason is announced once."""
    event, fact = held_fact(payment)
    await _payment(conn, event, payment, fact=fact)


async def payment_credited(conn: asyncpg.Connection, payment: Payment, ledger_transaction_id: int) -> None:
    """``payment`` was credited by ledger transaction ``ledger_transaction_id`` (a release credits anew)."""
    event = EventType.DEPOSIT_CREDITED
    await _payment(conn, event, payment, fact=f"credited:{ledger_transaction_id}")


async def payments_credited(conn: asyncpg.Connection, credited: Sequence[tuple[Payment, int]]) -> None:
    """The group-commit form of `payment_credited`: one statement for the whole group."""
    now = datetime.now(UTC)
    await outbox.add_events(
        conn,
        [
            (EventType.DEPOSIT_CREDITED, payment_view(payment), f"{payment.id}:credited:{tx_id}")
            for payment, tx_id in credited
        ],
        now=now,
    )


async def payment_released(conn: asyncpg.Connection, payment: Payment, ledger_transaction_id: int) -> None:
    await _payment(conn, EventType.DEPOSIT_RELEASED, payment, fact=f"released:{ledger_transaction_id}")


async def payment_dismissed(conn: asyncpg.Connection, payment: Payment, hold_reason: str | None) -> None:
    await _payment(conn, EventType.DEPOSIT_DISMISSED, payment, fact=f"dismissed:{hold_reason}")


async def request_refused(conn: asyncpg.Connection, rejection: Rejection, *, withdrawal: bool) -> None:
    """A request refused for good, announced under the caller's request_id."""
    event = EventType.WITHDRAWAL_REQUEST_REJECTED if withdrawal else EventType.DEPOSIT_REJECTED
    key = f"{event.value}:{rejection.request_id}"
    await outbox.add_event(conn, event, rejection_view(rejection), now=datetime.now(UTC), dedupe_key=key)


async def withdrawal_moved(conn: asyncpg.Connection, withdrawal: Withdrawal) -> None:
    """``withdrawal`` (as just written) reached its status; the state machine allows each status once."""
    event = _WITHDRAWAL_EVENTS[withdrawal.status]
    key = f"{withdrawal.id}:{event.value}"
    await outbox.add_event(conn, event, withdrawal_view(withdrawal), now=datetime.now(UTC), dedupe_key=key)


async def withdrawal_held(conn: asyncpg.Connection, withdrawal: Withdrawal) -> None:
    """``withdrawal`` was just held for an operator's review; each distinct reason is announced once."""
    event = EventType.WITHDRAWAL_HELD
    key = f"{withdrawal.id}:held:{withdrawal.review_reason}"
    await outbox.add_event(conn, event, withdrawal_view(withdrawal), now=datetime.now(UTC), dedupe_key=key)


async def _payment(conn: asyncpg.Connection, event: EventType, payment: Payment, *, fact: str) -> None:
    view = payment_view(payment)
    await outbox.add_event(conn, event, view, now=datetime.now(UTC), dedupe_key=f"{payment.id}:{fact}")
