"""Event types, bodies and the retry schedule (pure)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.notification_retries import gives_up, retry_delay
from domain.notifications import (
    EVENT_MEANINGS,
    EventType,
    build_event,
    deposit_status_event,
    new_event_id,
    subject_of,
)
from domain.payments import PaymentStatus

NOW = datetime(2025, 1, 14, 12, 34, 56, 789000, tzinfo=UTC)


def test_every_type_is_documented_and_every_payment_status_announced() -> None:
    assert set(EVENT_MEANINGS) == set(EventType)
    assert all(re.fullmatch(r"[a-z_]+\.[a-z_]+", kind.value) for kind in EventType)
    assert {deposit_status_event(status).value for status in PaymentStatus} >= {"deposit.expired", "deposit.failed"}


def test_event_ids_carry_no_full_stop() -> None:
    ids = {new_event_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"evt_[a-z0-9]{24}", event_id) for event_id in ids)


def test_the_body_is_the_documented_envelope_around_the_view() -> None:
    view = {"internal_payment_id": "PAY_1", "credit_usd": Decimal("25.50"), "settled_at": NOW, "tags": ("a",)}
    event = build_event("deposit.credited", view, now=NOW, event_id="evt_x")
    assert event.subject_id == "PAY_1" and event.type is EventType.DEPOSIT_CREDITED
    assert json.loads(event.payload) == {
        "type": "deposit.credited",
        "id": "evt_x",
        "created_at": "2025-01-14T12:34:56.789000Z",
        "data": {
            "internal_payment_id": "PAY_1",
            "credit_usd": "25.50",
            "settled_at": "2025-01-14T12:34:56.789000+00:00",
            "tags": ["a"],
        },
    }


def test_subjects_by_type() -> None:
    assert subject_of(EventType.WITHDRAWAL_APPROVED, {"internal_withdrawal_id": "WD_1"}) == "WD_1"
    assert subject_of(EventType.DEPOSIT_REJECTED, {"request_id": "req-1"}) == "req-1"
    assert subject_of(EventType.WITHDRAWAL_REQUEST_REJECTED, {"request_id": "req-2"}) == "req-2"
    with pytest.raises(ValueError, match="internal_payment_id"):
        subject_of(EventType.DEPOSIT_PENDING, {"request_id": "req-1"})


def test_floats_unknown_types_and_naive_times_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        build_event("deposit.pending", {"internal_payment_id": "PAY_1", "amount": 1.5}, now=NOW)
    with pytest.raises(ValueError):
        build_event("deposit.paid", {"internal_payment_id": "PAY_1"}, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        build_event("deposit.pending", {"internal_payment_id": "PAY_1"}, now=NOW.replace(tzinfo=None))


def test_retry_delays_follow_the_schedule_then_repeat_the_cap() -> None:
    schedule = [5.0, 30.0, 3600.0]
    assert [retry_delay(n, schedule, rand=0.5) for n in (1, 2, 3, 4, 50)] == [5.0, 30.0, 3600.0, 3600.0, 3600.0]
    assert retry_delay(1, schedule, rand=0.0) == pytest.approx(4.5)  # jitter: up to 10 % either way
    assert retry_delay(2, schedule, rand=0.999999) == pytest.approx(33.0, abs=1e-3)
    assert retry_delay(3, schedule, rand=0.999999) == 3600.0  # never above the cap
    assert retry_delay(1, schedule, rand=0.5, retry_after=120) == 120.0  # the receiver's Retry-After
    assert retry_delay(1, schedule, rand=0.5, retry_after=86400) == 3600.0  # ... up to the cap
    with pytest.raises(ValueError):
        retry_delay(0, schedule, rand=0.5)


def test_giving_up_counts_from_the_first_attempt() -> None:
    day = 86400.0
    assert not gives_up(NOW, NOW + timedelta(hours=23, minutes=59), day)
    assert gives_up(NOW, NOW + timedelta(hours=24), day)
