"""Property tests (hypothesis) of the money arithmetic: crediting and fees exact to the cent for any
amounts and coin precisions, and every posting the domain builds balancing to zero."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidRequest
from domain.ledger import (
    deposit_posting,
    withdrawal_complete_posting,
    withdrawal_hold_posting,
    withdrawal_release_posting,
)
from domain.money import CENT, ZERO
from domain.payments import BEYOND_CEILING, MAX_CREDIT_USD, PaymentStatus, decide_credit, received_value_usd
from domain.withdrawals import FeeSchedule, quote_withdrawal

MONEY_SETTINGS = settings(max_examples=150, deadline=None)
usd = st.integers(min_value=1, max_value=10_000_000_000).map(lambda cents: Decimal(cents) / 100)  # 0.01 .. 100M


@st.composite
def crypto_amounts(draw):  # type: ignore[no-untyped-def]
    """(pay_amount, actually_paid) at one coin precision from 0 to 18 places."""
    places = draw(st.integers(min_value=0, max_value=18))
    step = Decimal(1).scaleb(-places)
    pay = draw(st.integers(min_value=1, max_value=10**20)) * step
    paid = draw(st.integers(min_value=0, max_value=3 * 10**20)) * step
    return pay, paid


def _arrived(price: Decimal, pay: Decimal, paid: Decimal) -> Decimal:
    with localcontext() as exact:
        exact.prec = 120
        return paid * price / pay


@MONEY_SETTINGS
@given(price=usd, amounts=crypto_amounts())
def test_credit_is_what_arrived_rounded_down_to_the_cent(price, amounts):
    """Over the whole range (a value of up to 10^49 USD): the floor to the cent, exact, whatever its size."""
    pay, paid = amounts
    credit = received_value_usd(price_amount=price, pay_amount=pay, actually_paid=paid)
    arrived = _arrived(price, pay, paid)
    assert credit.as_tuple().exponent == -2  # exactly two places, checked without a 28-digit quantize
    assert credit <= arrived < credit + CENT


@MONEY_SETTINGS
@given(
    price=usd, amounts=crypto_amounts(), status=st.sampled_from([PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_PAID])
)
def test_a_value_beyond_the_ceiling_is_never_credited_and_is_held(price, amounts, status):
    """Any decision credits at most MAX_CREDIT_USD; beyond it, nothing, held with a reason."""
    pay, paid = amounts
    decision = decide_credit(status=status, amount_usd=price, pay_amount=pay, actually_paid=paid, past_expiry=True)
    assert ZERO <= decision.credit_usd <= MAX_CREDIT_USD
    if paid != pay and _arrived(price, pay, paid) >= MAX_CREDIT_USD + CENT:
        assert decision.credit_usd == ZERO and not decision.creditable
        assert decision.hold_reason is not None and decision.hold_reason.startswith(BEYOND_CEILING)


def test_the_value_found_by_hypothesis_is_held_not_credited():
    """price 100000000, pay_amount 1, actually_paid 10^18: worth 10^26 USD, which no credit_usd column holds."""
    decision = decide_credit(status=PaymentStatus.COMPLETED, amount_usd=Decimal(100000000), pay_amount=Decimal(1),
                             actually_paid=Decimal(10**18), past_expiry=False)  # fmt: skip
    assert (decision.credit_usd, decision.creditable) == (ZERO, False)
    assert decision.hold_reason is not None and "100000000000000000000000000.00 USD" in decision.hold_reason


@MONEY_SETTINGS
@given(price=usd, amounts=crypto_amounts())
def test_a_completed_payment_credits_the_order_when_exact_and_never_more_than_arrived(price, amounts):
    pay, paid = amounts
    decision = decide_credit(status=PaymentStatus.COMPLETED, amount_usd=price, pay_amount=pay, actually_paid=paid,
                             past_expiry=False)  # fmt: skip
    if paid == pay:
        assert decision.credit_usd == price
    else:
        with localcontext() as exact:
            exact.prec = 120
            assert decision.credit_usd <= paid * price / pay * (1 + Decimal("1e-12"))
    assert decision.credit_usd == decision.credit_usd.quantize(CENT)


fee_schedules = st.builds(
    FeeSchedule,
    network_fee_usd=st.integers(0, 10_000).map(lambda c: Decimal(c) / 100),
    service_fee_fixed_usd=st.integers(0, 10_000).map(lambda c: Decimal(c) / 100),
    service_fee_percent=st.integers(0, 9_999).map(lambda bp: Decimal(bp) / 100),  # 0 .. 99.99 %
    min_amount_usd=st.just(Decimal("0.01")),
    max_amount_usd=st.just(Decimal("100000000.00")),
)


@MONEY_SETTINGS
@given(amount=usd, fees=fee_schedules)
def test_fees_are_exact_to_the_cent_and_the_final_amount_plus_fees_is_the_amount(amount, fees):
    try:
        quote = quote_withdrawal(amount, fees)
    except InvalidRequest as exc:  # only refused when the fees eat it all
        assert "exceed" in str(exc)
        service = (fees.service_fee_fixed_usd + amount * fees.service_fee_percent / 100).quantize(CENT, ROUND_HALF_UP)
        assert fees.network_fee_usd + service >= amount
        return
    expected_service = (fees.service_fee_fixed_usd + amount * fees.service_fee_percent / 100).quantize(
        CENT, ROUND_HALF_UP
    )
    assert quote.service_fee_usd == expected_service
    assert quote.network_fee_usd == fees.network_fee_usd
    assert quote.total_fee_usd == quote.network_fee_usd + quote.service_fee_usd
    assert quote.final_amount_usd + quote.total_fee_usd == amount
    assert quote.final_amount_usd > 0
    for figure in (quote.service_fee_usd, quote.total_fee_usd, quote.final_amount_usd):
        assert figure == figure.quantize(CENT)

    hold = withdrawal_hold_posting(withdrawal_id="WD_1", user_id="u", amount_usd=amount)
    release = withdrawal_release_posting(withdrawal_id="WD_1", user_id="u", amount_usd=amount, why="rejected")
    complete = withdrawal_complete_posting(withdrawal_id="WD_1", user_id="u", amount_usd=amount,
                                           final_amount_usd=quote.final_amount_usd,
                                           total_fee_usd=quote.total_fee_usd)  # fmt: skip
    for posting in (hold, release, complete):
        assert sum(entry.amount for entry in posting.entries) == 0
    assert release.idempotency_key == complete.idempotency_key  # one settlement of a hold, never two


@MONEY_SETTINGS
@given(price=usd, amounts=crypto_amounts())
def test_a_deposit_posting_balances_for_whatever_is_credited(price, amounts):
    pay, paid = amounts
    credit = received_value_usd(price_amount=price, pay_amount=pay, actually_paid=paid)
    if credit <= 0:
        return
    posting = deposit_posting(payment_id="PAY_1", user_id="u", amount_usd=credit, description="d")
    assert sum(entry.amount for entry in posting.entries) == 0
    assert [e.amount for e in posting.entries if e.amount > 0] == [credit]
