"""Property tests (hypothesis) of the payment and withdrawal state machines.

For any sequence of gateway news (polls and IPNs, any status, stale or fresh, any amount), time passing
and settlements, a payment never moves backwards, a terminal status never changes, credit happens only
through completed or final partially-paid, at most once, and never for more than arrived. For any
sequence of operator actions and payout news, a withdrawal moves only along allowed transitions, never
leaves a terminal status, and its hold is posted or released at most once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.payment_news import plan_payment_news
from domain.payments import TERMINAL, PaymentStatus, map_gateway_status
from domain.payout_news import PayoutReading, plan_payout_news
from domain.withdrawals import TERMINAL as WITHDRAWAL_TERMINAL
from domain.withdrawals import WithdrawalStatus, can_transition, hold_outcome, map_payout_status, transition
from tests.unit.domain.test_payment_news import CREATED, POLICY, a_payment, news
from tests.unit.domain.test_payout_news import NOW as WD_NOW
from tests.unit.domain.test_payout_news import a_withdrawal
from tests.unit.domain.test_payout_news import news as payout_news

GATEWAY_STATUSES = ("waiting", "confirming", "confirmed", "sending", "partially_paid", "finished", "failed",
                    "refunded", "expired", "bogus")  # fmt: skip
PAYOUT_STATUSES = ("CREATING", "WAITING", "PROCESSING", "SENDING", "FINISHED", "FAILED", "REJECTED", "WHATEVER")
FRACTIONS = (Decimal(0), Decimal("0.5"), Decimal(1), Decimal("1.5"), Decimal("0.999"), None)
_RANK = {PaymentStatus.PENDING: 0, PaymentStatus.CONFIRMING: 1, PaymentStatus.CONFIRMED: 2,
         PaymentStatus.PARTIALLY_PAID: 3}  # fmt: skip
PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

gateway_news = st.tuples(
    st.sampled_from(GATEWAY_STATUSES),
    st.sampled_from(FRACTIONS),
    st.integers(min_value=-30, max_value=300),  # minutes after creation the snapshot claims (stale ones too)
    st.booleans(),  # a poll answer (True) or an IPN
    st.integers(min_value=0, max_value=120),  # minutes that pass before it is read
    st.booleans(),  # whether a settle-deposit runs afterwards
)


def _rank(status: PaymentStatus) -> int:
    return 10 if status in TERMINAL else _RANK[status]


@PROPERTY_SETTINGS
@given(steps=st.lists(gateway_news, min_size=1, max_size=12), amount_cents=st.integers(100, 10_000_000))
def test_a_payment_never_moves_back_credits_once_and_never_more_than_arrived(steps, amount_cents):
    payment = a_payment(amount_usd=Decimal(amount_cents) / 100)
    now = CREATED
    credits = 0
    for status, fraction, minutes, polled, later, settle in steps:
        now += timedelta(minutes=later)
        paid = None if fraction is None else (payment.pay_amount * fraction).quantize(Decimal("1e-18"))
        plan = plan_payment_news(payment, news(status, minutes=minutes, actually_paid=paid), now=now,
                                 policy=POLICY, polled=polled)  # fmt: skip
        before = payment
        payment = replace(payment, **plan.update.changes())
        assert _rank(payment.status) >= _rank(before.status), (before.status, payment.status)
        if before.status in TERMINAL:
            assert payment.status is before.status
        if payment.status is not before.status:
            # a status is reached only because the gateway said it, or because a poll found it expired
            assert payment.status in (map_gateway_status(status), PaymentStatus.EXPIRED)
        if before.settled_at is not None:
            assert payment.credit_usd == before.credit_usd and payment.settled_at == before.settled_at
        if plan.settle_due:
            assert payment.status in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_PAID)
            assert payment.settled_at is None and payment.hold_reason is None and payment.credit_usd > 0
            _assert_at_most_what_arrived(payment)
            if settle:
                credits += 1
                payment = replace(payment, settled_at=now, ledger_transaction_id=credits, next_poll_at=None)
    assert credits <= 1


def _assert_at_most_what_arrived(payment) -> None:  # type: ignore[no-untyped-def]
    if payment.actually_paid is None:
        assert payment.status is PaymentStatus.COMPLETED and payment.credit_usd == payment.amount_usd
        return
    arrived = payment.actually_paid / payment.pay_amount * payment.amount_usd
    assert payment.credit_usd <= arrived * (1 + Decimal("1e-12")), (payment.credit_usd, arrived)


OPERATOR_ACTIONS = ("approve", "reject", "cancel", "complete")
withdrawal_steps = st.lists(
    st.one_of(
        st.tuples(st.just("operator"), st.sampled_from(OPERATOR_ACTIONS)),
        st.tuples(st.sampled_from(("ipn", "poll", "lookup", "create")), st.sampled_from(PAYOUT_STATUSES)),
    ),
    min_size=1,
    max_size=12,
)
_ACTION_TARGET = {"approve": WithdrawalStatus.APPROVED, "reject": WithdrawalStatus.REJECTED,
                  "cancel": WithdrawalStatus.CANCELLED, "complete": WithdrawalStatus.COMPLETED}  # fmt: skip


@PROPERTY_SETTINGS
@given(steps=withdrawal_steps, gateway_mode=st.booleans())
def test_a_withdrawal_moves_only_along_allowed_paths_and_settles_its_hold_once(steps, gateway_mode):
    withdrawal = a_withdrawal(status=WithdrawalStatus.PENDING, payout_mode="gateway" if gateway_mode else "manual",
                              provider_payout_id=None, payout_status=None)  # fmt: skip
    settled = []
    for source, what in steps:
        if source == "operator":
            target = _ACTION_TARGET[what]
            if not can_transition(withdrawal.status, target):
                continue  # refused with a clear error, nothing changes
            moves = [(target, {})]
        else:
            plan = plan_payout_news(withdrawal, payout_news(what), source=source, now=WD_NOW)
            moves = [(move.target, move.update.changes()) for move in plan.moves]
            if not moves:
                withdrawal = replace(withdrawal, **plan.update.changes())
        for target, changes in moves:
            before = withdrawal.status
            assert before not in WITHDRAWAL_TERMINAL
            withdrawal = replace(withdrawal, status=transition(before, target), **changes)
            if hold_outcome(target) is not None:
                settled.append(hold_outcome(target))
    assert len(settled) <= 1
    if settled:
        assert withdrawal.status in WITHDRAWAL_TERMINAL
        assert settled == ["post" if withdrawal.status is WithdrawalStatus.COMPLETED else "release"]


@PROPERTY_SETTINGS
@given(final=st.sampled_from(("FINISHED", "FAILED", "REJECTED")), data=st.data())
def test_a_payouts_own_news_in_any_order_and_repeated_settles_once_and_is_never_a_contradiction(final, data):
    """Issue 9: IPNs duplicated, delayed and reordered. Whatever order the stages of one payout's life
    arrive in, it ends in the final status exactly once and is never held for review."""
    life = ["CREATING", "WAITING", "PROCESSING", "SENDING", final]
    repeats = data.draw(st.lists(st.sampled_from(life), max_size=8))
    deliveries = data.draw(st.permutations(life + repeats))
    withdrawal = a_withdrawal(status=WithdrawalStatus.PROCESSING, payout_status="CREATING", next_check_at=None)
    settled = []
    for status in deliveries:
        hash_ = "0xfeed" if status in ("SENDING", "FINISHED") else None
        plan = plan_payout_news(withdrawal, payout_news(status, hash=hash_), source="ipn", now=WD_NOW)
        assert plan.review_reason is None and plan.reading is not PayoutReading.CONTRADICTS_CLOSED
        for move in plan.moves:
            withdrawal = replace(withdrawal, status=transition(withdrawal.status, move.target), **move.update.changes())
            settled.append(hold_outcome(move.target))
        withdrawal = replace(withdrawal, **plan.update.changes())
    assert withdrawal.status is map_payout_status(final) and withdrawal.payout_status == final
    assert withdrawal.review_reason is None
    assert settled == ["post" if final == "FINISHED" else "release"]
