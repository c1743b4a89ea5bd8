"""The deposit decision without a database: given a payment, the gateway's news and the time, what changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.payment_news import (
    SETTLE_SWEEP_SECONDS,
    UNDONE_PREFIX,
    EventKind,
    PaymentNews,
    PaymentPlan,
    PaymentPolicy,
    PollBackoff,
    Reading,
    plan_payment_news,
)
from domain.payments import Payment, PaymentStatus, PaymentUpdate, Variance, VariancePolicy
from domain.updates import KEEP

S = PaymentStatus
D = Decimal
CREATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = CREATED + timedelta(minutes=10)
POLICY = PaymentPolicy(
    expiry_grace=timedelta(minutes=15),
    underpaid=VariancePolicy.CREDIT_RECEIVED,
    overpaid=VariancePolicy.CREDIT_RECEIVED,
    backoff=PollBackoff(first=20.0, minimum=15.0, maximum=600.0),
)


def a_payment(**fields: object) -> Payment:
    values: dict[str, object] = {
        "id": "PAY_20260101120000_abc12345",
        "request_id": "req-1",
        "request_fingerprint": "f",
        "user_id": "u-1",
        "amount_usd": D("50.00"),
        "currency_code": "eth",
        "description": "",
        "status": S.PENDING,
        "gateway_status": "waiting",
        "provider_payment_id": "5001",
        "pay_address": "0xabc",
        "payin_extra_id": None,
        "pay_amount": D("0.014705882352941176"),
        "actually_paid": None,
        "pay_currency": "eth",
        "network": "eth",
        "payin_hash": None,
        "expires_at": CREATED + timedelta(hours=1),
        "gateway_updated_at": CREATED,
        "error_code": None,
        "error_message": None,
        "create_claimed_until": None,
        "final_at": None,
        "credit_usd": None,
        "variance": None,
        "hold_reason": None,
        "settled_at": None,
        "ledger_transaction_id": None,
        "next_poll_at": CREATED + timedelta(seconds=20),
        "poll_attempts": 0,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    values.update(fields)
    return Payment(**values)  # type: ignore[arg-type]


def news(status: str, *, minutes: int = 5, **fields: object) -> PaymentNews:
    return PaymentNews(status=status, updated_at=CREATED + timedelta(minutes=minutes), **fields)  # type: ignore[arg-type]


def plan(
    payment: Payment, what: PaymentNews, *, now: datetime = NOW, polled: bool = False, **policy: object
) -> PaymentPlan:
    return plan_payment_news(payment, what, now=now, policy=replace(POLICY, **policy), polled=polled)


def written(payment: Payment, result: PaymentPlan) -> Payment:
    """The payment as it stands once the plan's update is written."""
    return replace(payment, **result.update.changes())


def settled(payment: Payment, credit: str) -> Payment:
    return replace(payment, settled_at=NOW, credit_usd=D(credit), ledger_transaction_id=7, next_poll_at=None)


def test_progress_moves_the_status_records_the_details_and_one_event() -> None:
    payment = a_payment()
    result = plan(payment, news("confirming", actually_paid=payment.pay_amount, payin_hash="0xhash"))
    assert result.reading is Reading.APPLIES and not result.settle_due
    assert result.update == PaymentUpdate(
        status=S.CONFIRMING,
        gateway_status="confirming",
        actually_paid=payment.pay_amount,
        payin_hash="0xhash",
        gateway_updated_at=CREATED + timedelta(minutes=5),
    )
    [event] = result.events
    assert (event.kind, event.from_status, event.to_status, event.gateway_status) == (
        EventKind.STATUS_CHANGED,
        S.PENDING,
        S.CONFIRMING,
        "confirming",
    )
    assert event.detail == {"actually_paid": payment.pay_amount, "payin_hash": "0xhash"}


def test_finished_in_full_is_due_for_settlement_and_the_scheduler_sweeps_it_soon() -> None:
    payment = a_payment(status=S.CONFIRMED, actually_paid=D("0.014705882352941176"))
    result = plan(payment, news("finished", actually_paid=payment.pay_amount))
    assert result.settle_due
    assert (result.update.status, result.update.credit_usd, result.update.variance) == (
        S.COMPLETED,
        D("50.00"),
        Variance.EXACT.value,
    )
    assert result.update.hold_reason is KEEP  # already None: not written again
    assert result.update.next_poll_at == NOW + timedelta(seconds=SETTLE_SWEEP_SECONDS)


def test_the_same_news_twice_changes_nothing_the_second_time() -> None:
    payment = a_payment()
    for status in ("confirming", "finished"):
        what = news(status, actually_paid=payment.pay_amount)
        first = plan(payment, what, polled=False)
        payment = written(payment, first)
        again = plan(payment, what, polled=False)
        assert again.update.is_empty and again.events == ()
    assert payment.status is S.COMPLETED


def test_an_unknown_status_is_ignored() -> None:
    result = plan(a_payment(), news("mystery", actually_paid=D("1")))
    assert result.reading is Reading.UNKNOWN_STATUS and result.reported is None
    assert result.update.is_empty and result.events == ()


def test_a_stale_snapshot_moves_nothing_not_even_forward_but_a_poll_still_counts() -> None:
    payment = a_payment(status=S.CONFIRMING, gateway_updated_at=CREATED + timedelta(minutes=5))
    result = plan(payment, news("finished", minutes=4, actually_paid=payment.pay_amount), polled=True)
    assert result.reading is Reading.STALE_SNAPSHOT and not result.settle_due
    assert result.update == PaymentUpdate(poll_attempts=1, next_poll_at=NOW + timedelta(seconds=15))
    assert result.events == ()


def test_a_status_behind_ours_is_outdated_and_moves_nothing() -> None:
    result = plan(a_payment(status=S.CONFIRMED), news("waiting"))
    assert result.reading is Reading.OUTDATED_STATUS and result.reported is S.PENDING
    assert result.update.is_empty


def test_expiry_acts_only_on_a_fresh_poll_past_the_grace() -> None:
    payment = a_payment()
    late = CREATED + timedelta(hours=1, minutes=16)
    assert plan(payment, news("waiting"), now=late, polled=False).update.status is KEEP  # an IPN: no
    within_grace = CREATED + timedelta(hours=1, minutes=14)
    assert plan(payment, news("waiting"), now=within_grace, polled=True).update.status is KEEP
    expired = plan(payment, news("waiting"), now=late, polled=True)
    assert expired.update.status is S.EXPIRED and expired.update.next_poll_at is None
    assert [e.to_status for e in expired.events] == [S.EXPIRED]


def test_partially_paid_becomes_final_past_expiry_and_credits_what_arrived_rounded_down() -> None:
    payment = a_payment(status=S.PARTIALLY_PAID, actually_paid=D("0.007352941176470587"))
    what = news("partially_paid", actually_paid=payment.actually_paid)
    assert not plan(payment, what, polled=True).settle_due  # before expiry nothing is final
    late = CREATED + timedelta(hours=2)
    result = plan(payment, what, now=late, polled=True)
    assert result.settle_due and result.update.final_at == late
    assert result.update.credit_usd == D("24.99") and result.update.variance == Variance.UNDERPAID.value


def test_funds_on_an_expired_payment_are_recorded_and_held_with_the_status_kept() -> None:
    payment = a_payment(status=S.EXPIRED, next_poll_at=None)
    result = plan(payment, news("finished", actually_paid=D("0.01")))
    assert result.reading is Reading.LATE_FUNDS and not result.settle_due
    assert result.update.status is KEEP and result.update.actually_paid == D("0.01")
    assert result.update.hold_reason == "expired payment received 0.01"
    [event] = result.events
    assert event.kind is EventKind.HELD_FOR_REVIEW and event.from_status is event.to_status is S.EXPIRED


def test_a_refund_after_crediting_is_held_once_and_outranks_another_question() -> None:
    payment = settled(a_payment(status=S.COMPLETED, gateway_status="finished"), "50.00")
    payment = replace(payment, actually_paid=payment.pay_amount, hold_reason="funds after settlement: ...")
    result = plan(payment, news("refunded"))
    assert result.update.hold_reason.startswith(UNDONE_PREFIX)  # type: ignore[union-attr]
    assert result.update.gateway_status == "refunded"
    refunded = written(payment, result)
    assert plan(refunded, news("refunded", minutes=6)).update.is_empty  # redelivered: not reopened


def test_a_top_up_after_settlement_is_held_for_an_operator() -> None:
    payment = settled(a_payment(status=S.COMPLETED, actually_paid=D("0.014705882352941176")), "50.00")
    result = plan(payment, news("finished", actually_paid=D("0.02")))
    assert result.reading is Reading.LATE_FUNDS
    assert result.update.hold_reason == "funds after settlement: now worth 68.00 USD, credited 50.00 USD"
    assert result.update.credit_usd is KEEP and not result.settle_due


def test_a_hold_by_policy_is_not_due_for_settlement() -> None:
    payment = a_payment(status=S.CONFIRMED)
    result = plan(payment, news("finished", actually_paid=D("0.02")), overpaid=VariancePolicy.HOLD_FOR_REVIEW)
    assert not result.settle_due
    assert result.update.hold_reason == "overpaid: held for review by policy"
    assert result.update.credit_usd == D("68.00") and result.update.next_poll_at is None


def test_amounts_repeated_through_a_double_keep_our_exact_values_and_are_not_late_funds() -> None:
    exact = D("0.008823529411764705")
    through_a_double = D("0.008823529411764706")
    payment = settled(a_payment(status=S.COMPLETED, pay_amount=exact, actually_paid=exact), "30.00")
    repeated = plan_payment_news(
        payment,
        news("finished", actually_paid=through_a_double, pay_amount=through_a_double),
        now=NOW,
        policy=POLICY,
        polled=False,
        precision=18,
    )
    assert repeated.reading is Reading.REPEATED and repeated.update.is_empty
    confirming = a_payment(status=S.CONFIRMING, pay_amount=exact, actually_paid=exact)
    forward = plan_payment_news(
        confirming, news("finished", actually_paid=through_a_double), now=NOW, policy=POLICY, polled=False, precision=18
    )
    assert forward.update.status is S.COMPLETED and forward.update.actually_paid is KEEP
    more = plan_payment_news(
        payment, news("finished", actually_paid=D("0.0089")), now=NOW, policy=POLICY, polled=False, precision=18
    )
    assert more.reading is Reading.LATE_FUNDS and more.update.actually_paid == D("0.0089")


# Reordered news of an over-paid deposit (issue 9): $50 ordered, 1.5 × pay_amount arrives.
OVER = D("0.022058823529411764")  # 1.5 × 0.014705882352941176, rounded down at 18 places


def test_reordered_confirmed_after_finished_is_a_stale_snapshot_and_holds_nothing() -> None:
    payment = a_payment(status=S.CONFIRMING, actually_paid=OVER, gateway_updated_at=CREATED + timedelta(minutes=1))
    finished = plan(payment, news("finished", minutes=4, actually_paid=OVER))
    assert finished.settle_due and finished.update.credit_usd == D("75.00")
    credited = settled(written(payment, finished), "75.00")
    late = plan(credited, news("confirmed", minutes=2, actually_paid=OVER))  # held back, delivered last
    assert late.reading is Reading.STALE_SNAPSHOT
    assert late.update.is_empty and late.events == ()


def test_an_older_snapshot_reporting_more_funds_is_not_a_top_up() -> None:
    credited = settled(
        a_payment(
            status=S.COMPLETED,
            actually_paid=D("0.014705882352941176"),
            gateway_updated_at=CREATED + timedelta(minutes=4),
        ),
        "50.00",
    )
    result = plan(credited, news("confirmed", minutes=2, actually_paid=OVER))
    assert result.reading is Reading.STALE_SNAPSHOT and result.update.is_empty


def test_an_earlier_stage_not_older_with_more_funds_after_a_credit_is_held_and_the_status_word_stays() -> None:
    credited = settled(
        a_payment(status=S.COMPLETED, gateway_status="finished", actually_paid=D("0.014705882352941176"),
                  gateway_updated_at=CREATED + timedelta(minutes=4)),
        "50.00",
    )  # fmt: skip
    result = plan(credited, news("confirmed", minutes=6, actually_paid=OVER))
    assert result.reading is Reading.LATE_FUNDS
    assert result.update.hold_reason == "funds after settlement: now worth 75.00 USD, credited 50.00 USD"
    assert result.update.actually_paid == OVER and result.update.gateway_status is KEEP
    assert result.update.status is KEEP and not result.settle_due


def test_an_earlier_stage_without_a_time_with_more_funds_updates_an_open_payment_and_keeps_its_status() -> None:
    payment = a_payment(status=S.PARTIALLY_PAID, gateway_status="partially_paid", actually_paid=D("0.007"))
    topped_up = PaymentNews(status="confirming", updated_at=None, actually_paid=D("0.014705882352941176"))
    result = plan(payment, topped_up)
    assert result.reading is Reading.MORE_FUNDS
    assert result.update == PaymentUpdate(actually_paid=D("0.014705882352941176"))
    final = plan(
        written(payment, result), news("partially_paid", minutes=6), now=CREATED + timedelta(hours=2), polled=True
    )
    assert final.settle_due and final.update.credit_usd == D("50.00")  # what arrived, not the older 0.007


def test_an_earlier_stage_with_the_same_funds_is_outdated_and_moves_nothing() -> None:
    payment = a_payment(status=S.CONFIRMED, gateway_status="confirmed", actually_paid=OVER)
    result = plan(payment, PaymentNews(status="confirming", updated_at=None, actually_paid=OVER))
    assert result.reading is Reading.OUTDATED_STATUS and result.update.is_empty
