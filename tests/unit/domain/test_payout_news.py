"""The payout decision without a database: given a withdrawal and the gateway's news, which moves and writes follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.payout_news import PAYOUT_CHECK_SECONDS, PayoutNews, PayoutReading, plan_payout_news
from domain.updates import KEEP
from domain.withdrawals import Withdrawal, WithdrawalStatus, WithdrawalUpdate

S = WithdrawalStatus
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHECK_AGAIN = NOW + timedelta(seconds=PAYOUT_CHECK_SECONDS)


def a_withdrawal(**fields: object) -> Withdrawal:
    values: dict[str, object] = {
        "id": "WD_20260101120000_abc12345",
        "request_id": "req-1",
        "request_fingerprint": "f",
        "user_id": "u-1",
        "amount_usd": Decimal("20.00"),
        "currency_code": "ltc",
        "wallet_address": "ltc1qexample",
        "extra_id": None,
        "network_fee_usd": Decimal("1.00"),
        "service_fee_usd": Decimal("0.50"),
        "total_fee_usd": Decimal("1.50"),
        "final_amount_usd": Decimal("18.50"),
        "status": S.PROCESSING,
        "payout_mode": "gateway",
        "payout_amount": Decimal("0.17619047"),
        "provider_payout_id": "7001",
        "payout_status": "WAITING",
        "transaction_hash": None,
        "error_code": None,
        "error_message": None,
        "payout_claimed_until": None,
        "next_check_at": NOW,
        "created_at": NOW,
        "updated_at": NOW,
        "completed_at": None,
        "payout_attempted_at": NOW,
        "review_reason": None,
    }
    values.update(fields)
    return Withdrawal(**values)  # type: ignore[arg-type]


def news(status: str, **fields: object) -> PayoutNews:
    return PayoutNews(payout_id="7001", status=status, **fields)  # type: ignore[arg-type]


def test_an_unknown_payout_status_is_ignored() -> None:
    result = plan_payout_news(a_withdrawal(), news("PAUSED"), source="ipn", now=NOW)
    assert result.reading is PayoutReading.UNKNOWN_STATUS and result.moves == () and result.update.is_empty


def test_a_payout_on_its_way_records_a_new_gateway_status_and_checks_again() -> None:
    result = plan_payout_news(a_withdrawal(), news("SENDING", hash="0xfeed"), source="poll", now=NOW)
    assert result.moves == ()
    assert result.update == WithdrawalUpdate(
        payout_status="SENDING", transaction_hash="0xfeed", next_check_at=CHECK_AGAIN
    )
    same = plan_payout_news(a_withdrawal(), news("WAITING"), source="poll", now=NOW)
    assert same.reading is PayoutReading.APPLIES and same.update.is_empty


def test_finished_completes_once_with_the_hash_and_who_said_so() -> None:
    result = plan_payout_news(a_withdrawal(), news("FINISHED", hash="0xfeed"), source="ipn", now=NOW)
    [move] = result.moves
    assert (move.target, move.note) == (S.COMPLETED, "payout finished (ipn)")
    assert move.update == WithdrawalUpdate(payout_status="FINISHED", transaction_hash="0xfeed")
    assert move.detail == {"payout_id": "7001", "hash": "0xfeed", "error": None}
    assert result.update.is_empty


def test_failed_or_rejected_fails_it_with_the_gateway_reason_bounded() -> None:
    result = plan_payout_news(a_withdrawal(), news("REJECTED", error="x" * 900), source="poll", now=NOW)
    [move] = result.moves
    assert move.target is S.FAILED and move.update.error_code == "PAYOUT_REJECTED"
    assert move.update.error_message == "x" * 500 and move.update.transaction_hash is KEEP
    silent = plan_payout_news(a_withdrawal(), news("FAILED", error=""), source="poll", now=NOW)
    assert silent.moves[0].update.error_message is None


def test_a_payout_sent_but_not_yet_recorded_is_recorded_first_then_settled() -> None:
    unsent = a_withdrawal(status=S.APPROVED, provider_payout_id=None, payout_status=None, review_reason="lost?")
    result = plan_payout_news(
        unsent, news("FINISHED", amount=Decimal("0.17619047"), currency="ltc"), source="lookup", now=NOW
    )
    record, complete = result.moves
    assert (record.target, record.note) == (S.PROCESSING, "payout found (lookup)")
    assert record.update == WithdrawalUpdate(
        provider_payout_id="7001",
        payout_status="FINISHED",
        payout_claimed_until=None,
        review_reason=None,
        next_check_at=CHECK_AGAIN,
    )
    assert record.detail == {"payout_id": "7001", "amount": Decimal("0.17619047"), "currency": "ltc"}
    assert complete.target is S.COMPLETED
    waiting = plan_payout_news(unsent, news("WAITING"), source="create", now=NOW)
    assert [m.note for m in waiting.moves] == ["payout created"] and waiting.update.is_empty


def test_a_withdrawal_never_handed_to_the_gateway_takes_nothing_from_a_payout() -> None:
    manual = a_withdrawal(status=S.APPROVED, provider_payout_id=None, payout_mode=None)
    result = plan_payout_news(manual, news("FINISHED"), source="ipn", now=NOW)
    assert result.reading is PayoutReading.NOT_IN_GATEWAY and result.moves == () and result.update.is_empty


def test_news_contradicting_a_closed_withdrawal_is_held_for_review_once() -> None:
    rejected = a_withdrawal(status=S.REJECTED, next_check_at=None)
    result = plan_payout_news(rejected, news("FINISHED"), source="ipn", now=NOW)
    assert result.reading is PayoutReading.CONTRADICTS_CLOSED and result.moves == ()
    reason = "the hold was released (rejected) but the gateway reports the payout as completed"
    assert result.review_reason == reason and result.update == WithdrawalUpdate(review_reason=reason)
    again = plan_payout_news(
        a_withdrawal(status=S.REJECTED, review_reason=reason), news("FINISHED"), source="ipn", now=NOW
    )
    assert again.reading is PayoutReading.CLOSED and again.update.is_empty
    completed = a_withdrawal(status=S.COMPLETED)
    failed = plan_payout_news(completed, news("FAILED"), source="poll", now=NOW)
    assert failed.review_reason == "completed here, but the gateway reports the payout as failed"
    agreeing = plan_payout_news(completed, news("FINISHED"), source="poll", now=NOW)
    assert agreeing.reading is PayoutReading.CLOSED and agreeing.update.is_empty


# -- stale news: an earlier stage of the payout than the one we recorded (issue 9) ----------------------------------


@pytest.mark.parametrize(
    ("closed", "recorded", "late"),
    [
        (S.FAILED, "FAILED", "PROCESSING"),
        (S.FAILED, "FAILED", "WAITING"),
        (S.FAILED, "REJECTED", "CREATING"),
        (S.COMPLETED, "FINISHED", "SENDING"),
        (S.COMPLETED, "FINISHED", "PROCESSING"),
    ],
)
def test_an_earlier_stage_delivered_after_the_final_one_is_stale_not_a_contradiction(closed, recorded, late) -> None:
    withdrawal = a_withdrawal(status=closed, payout_status=recorded, next_check_at=None, transaction_hash="0xfeed")
    result = plan_payout_news(withdrawal, news(late, amount=Decimal("0.17619047")), source="ipn", now=NOW)
    assert result.reading is PayoutReading.STALE
    assert result.moves == () and result.update.is_empty and result.review_reason is None


def test_an_earlier_stage_on_a_payout_in_flight_does_not_move_its_gateway_status_back() -> None:
    sending = a_withdrawal(payout_status="SENDING", transaction_hash="0xfeed")
    result = plan_payout_news(sending, news("PROCESSING"), source="ipn", now=NOW)
    assert result.reading is PayoutReading.STALE and result.moves == () and result.update.is_empty
    # the stage we hold, or a later one, still applies
    assert plan_payout_news(sending, news("SENDING"), source="ipn", now=NOW).reading is PayoutReading.APPLIES
    [move] = plan_payout_news(sending, news("FINISHED", hash="0xfeed"), source="ipn", now=NOW).moves
    assert move.target is S.COMPLETED


def test_a_final_status_other_than_the_one_we_closed_on_is_still_held_for_review() -> None:
    failed = a_withdrawal(status=S.FAILED, payout_status="FAILED", next_check_at=None)
    result = plan_payout_news(failed, news("FINISHED", hash="0xfeed"), source="ipn", now=NOW)
    assert result.reading is PayoutReading.CONTRADICTS_CLOSED
    assert result.review_reason == "the hold was released (failed) but the gateway reports the payout as completed"
    completed = a_withdrawal(status=S.COMPLETED, payout_status="FINISHED", next_check_at=None)
    undone = plan_payout_news(completed, news("REJECTED"), source="poll", now=NOW)
    assert undone.review_reason == "completed here, but the gateway reports the payout as failed"
    # released before any payout was recorded: any news of a payout at all contradicts it
    released = a_withdrawal(status=S.FAILED, provider_payout_id=None, payout_status=None, next_check_at=None)
    alive = plan_payout_news(released, news("WAITING"), source="lookup", now=NOW)
    assert alive.reading is PayoutReading.CONTRADICTS_CLOSED


def test_another_amount_or_hash_on_a_closed_withdrawal_is_held_for_review_even_as_an_earlier_stage() -> None:
    completed = a_withdrawal(status=S.COMPLETED, payout_status="FINISHED", transaction_hash="0xFEED")
    other_hash = plan_payout_news(completed, news("FINISHED", hash="0xbeef"), source="poll", now=NOW)
    assert other_hash.reading is PayoutReading.CONTRADICTS_CLOSED
    assert other_hash.review_reason == "recorded with transaction hash 0xFEED but the gateway reports hash 0xbeef"
    other_amount = plan_payout_news(completed, news("SENDING", amount=Decimal("0.2")), source="ipn", now=NOW)
    assert other_amount.reading is PayoutReading.CONTRADICTS_CLOSED
    assert other_amount.review_reason == "0.17619047 ltc was sent but the gateway reports the payout as 0.2"
    # the same hash in another case, and the same amount as a JavaScript double repeats it, agree
    same = plan_payout_news(
        completed, news("FINISHED", hash="0xfeed", amount=Decimal("0.17619047000000001")), source="ipn", now=NOW
    )
    assert same.reading is PayoutReading.CLOSED and same.update.is_empty
