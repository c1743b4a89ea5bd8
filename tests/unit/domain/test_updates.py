"""Typed partial updates: only what is set is written, None clears, and no-ops can be dropped."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest

from domain.payments import PaymentStatus, PaymentUpdate
from domain.updates import KEEP
from domain.withdrawals import WithdrawalUpdate


def test_only_the_fields_set_are_changes_and_none_is_a_value() -> None:
    update = PaymentUpdate(status=PaymentStatus.COMPLETED, hold_reason=None)
    assert update.changes() == {"status": PaymentStatus.COMPLETED, "hold_reason": None}
    assert update.credit_usd is KEEP
    assert PaymentUpdate().is_empty and not update.is_empty
    with pytest.raises(FrozenInstanceError):
        update.status = PaymentStatus.FAILED  # type: ignore[misc]


def test_merged_applies_the_later_update_over_the_earlier() -> None:
    first = WithdrawalUpdate(payout_status="WAITING", review_reason="look")
    merged = first.merged(WithdrawalUpdate(review_reason=None, transaction_hash="0x1"))
    assert merged.changes() == {"payout_status": "WAITING", "review_reason": None, "transaction_hash": "0x1"}


def test_against_drops_what_the_record_already_holds() -> None:
    class Record:
        credit_usd = Decimal("5.00")
        hold_reason = None
        poll_attempts = 2

    update = PaymentUpdate(credit_usd=Decimal("5.0"), hold_reason=None, poll_attempts=3)
    assert update.against(Record()).changes() == {"poll_attempts": 3}


def test_an_unknown_column_cannot_be_named() -> None:
    with pytest.raises(TypeError):
        PaymentUpdate(balance=Decimal("1"))  # type: ignore[call-arg]
