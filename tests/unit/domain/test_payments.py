from decimal import Decimal
from fractions import Fraction
from itertools import pairwise, product

import pytest

from domain.payments import (
    GATEWAY_STATUS_MAP,
    TERMINAL,
    CreditDecision,
    PaymentStatus,
    Variance,
    VariancePolicy,
    decide_credit,
    is_forward,
    map_gateway_status,
    next_poll_delay,
    received_value_usd,
    request_fingerprint,
)

S = PaymentStatus
D = Decimal

# --- gateway status mapping -------------------------------------------------------------------------

EXPECTED_MAP = {
    "waiting": S.PENDING,
    "confirming": S.CONFIRMING,
    "confirmed": S.CONFIRMED,
    "sending": S.CONFIRMED,
    "partially_paid": S.PARTIALLY_PAID,
    "finished": S.COMPLETED,
    "failed": S.FAILED,
    "expired": S.EXPIRED,
    "refunded": S.REFUNDED,
}


@pytest.mark.parametrize(("gateway", "ours"), sorted(EXPECTED_MAP.items()))
def test_map_gateway_status_known(gateway, ours):
    assert map_gateway_status(gateway) is ours


def test_gateway_map_covers_exactly_the_nine_statuses():
    assert GATEWAY_STATUS_MAP == EXPECTED_MAP


@pytest.mark.parametrize(
    ("gateway", "ours"), [("FINISHED", S.COMPLETED), (" Waiting ", S.PENDING), ("Sending\n", S.CONFIRMED)]
)
def test_map_gateway_status_ignores_case_and_surrounding_whitespace(gateway, ours):
    assert map_gateway_status(gateway) is ours


@pytest.mark.parametrize("gateway", ["new_thing", "", " ", "pending", "completed", "partially paid", "finish", None, 3])
def test_map_gateway_status_unknown_is_none_never_pending(gateway):
    assert map_gateway_status(gateway) is None


# --- forward-only moves ------------------------------------------------------------------------------

# NOWPayments reports partially_paid once the received funds are confirmed short ("appears when the funds
# have arrived"), i.e. after confirming/confirmed; a top-up that completes it arrives as terminal "finished".
NON_TERMINAL_ORDER = [S.PENDING, S.CONFIRMING, S.CONFIRMED, S.PARTIALLY_PAID]


def _expected_forward(current, target):
    if current in TERMINAL:
        return False
    if target in TERMINAL:
        return True
    return NON_TERMINAL_ORDER.index(target) > NON_TERMINAL_ORDER.index(current)


@pytest.mark.parametrize(("current", "target"), list(product(S, S)))
def test_is_forward_all_pairs(current, target):
    assert is_forward(current, target) is _expected_forward(current, target)


def test_terminal_statuses_never_move():
    assert {s.value for s in TERMINAL} == {"completed", "failed", "expired", "cancelled", "refunded"}
    for current, target in product(TERMINAL, S):
        assert not is_forward(current, target), (current, target)


def test_no_status_moves_to_itself():
    assert not any(is_forward(s, s) for s in S)


def test_no_move_is_reversible():
    for a, b in product(S, S):
        assert not (is_forward(a, b) and is_forward(b, a)), (a, b)


def test_specific_moves():
    assert not is_forward(S.PARTIALLY_PAID, S.CONFIRMING)
    assert not is_forward(S.PARTIALLY_PAID, S.CONFIRMED)
    assert is_forward(S.CONFIRMED, S.PARTIALLY_PAID)
    assert is_forward(S.PARTIALLY_PAID, S.COMPLETED)
    assert is_forward(S.PENDING, S.PARTIALLY_PAID)
    assert is_forward(S.CONFIRMING, S.CONFIRMED)
    assert not is_forward(S.CONFIRMED, S.CONFIRMING)
    assert not is_forward(S.CONFIRMING, S.PENDING)
    assert not is_forward(S.COMPLETED, S.REFUNDED)
    assert not is_forward(S.EXPIRED, S.COMPLETED)


def test_documented_gateway_flow_of_an_underpayment_reaches_partially_paid():
    ours = S.PENDING
    for gateway in ["waiting", "confirming", "confirmed", "partially_paid"]:
        target = map_gateway_status(gateway)
        if is_forward(ours, target):
            ours = target
    assert ours is S.PARTIALLY_PAID


# --- crediting ---------------------------------------------------------------------------------------


def test_completed_exact_credits_the_amount():
    d = decide_credit(
        status=S.COMPLETED, amount_usd=D("100.00"), pay_amount=D("0.0025"), actually_paid=D("0.0025"), past_expiry=False
    )
    assert d == CreditDecision(D("100.00"), Variance.EXACT, final=True, hold_reason=None)
    assert d.creditable


@pytest.mark.parametrize(("pay_amount", "actually_paid"), [(D("0.0025"), None), (None, None), (None, D("1"))])
def test_completed_without_received_amount_credits_the_full_amount(pay_amount, actually_paid):
    d = decide_credit(
        status=S.COMPLETED, amount_usd=D("42.10"), pay_amount=pay_amount, actually_paid=actually_paid, past_expiry=False
    )
    assert d.credit_usd == D("42.10")
    assert d.variance is Variance.EXACT
    assert d.final and d.creditable and d.hold_reason is None


def test_completed_with_zero_pay_amount_credits_the_full_amount():
    d = decide_credit(
        status=S.COMPLETED, amount_usd=D("5.00"), pay_amount=D("0"), actually_paid=D("1"), past_expiry=False
    )
    assert d.credit_usd == D("5.00") and d.creditable


def test_overpaid_credits_received_value_floored():
    # 0.0030 / 0.0025 * 100 = 120.00; 0.00300001 → 120.0004 → floored to 120.00
    d = decide_credit(
        status=S.COMPLETED,
        amount_usd=D("100.00"),
        pay_amount=D("0.00250000"),
        actually_paid=D("0.00300001"),
        past_expiry=False,
    )
    assert d.credit_usd == D("120.00")
    assert d.variance is Variance.OVERPAID
    assert d.final and d.creditable and d.hold_reason is None


def test_overpaid_floor_does_not_round_up():
    # 0.00299999 / 0.0025 * 100 = 119.9996 → 119.99, not 120.00
    d = decide_credit(
        status=S.COMPLETED,
        amount_usd=D("100.00"),
        pay_amount=D("0.0025"),
        actually_paid=D("0.00299999"),
        past_expiry=False,
    )
    assert d.credit_usd == D("119.99")
    assert d.variance is Variance.OVERPAID


def test_underpaid_completed_credits_received_value():
    d = decide_credit(
        status=S.COMPLETED, amount_usd=D("100.00"), pay_amount=D("0.0025"), actually_paid=D("0.002"), past_expiry=False
    )
    assert d.credit_usd == D("80.00")
    assert d.variance is Variance.UNDERPAID
    assert d.creditable


def test_partially_paid_not_final_credits_nothing():
    d = decide_credit(
        status=S.PARTIALLY_PAID,
        amount_usd=D("100.00"),
        pay_amount=D("0.00250000"),
        actually_paid=D("0.00125"),
        past_expiry=False,
    )
    assert d.credit_usd == D("0")
    assert d.final is False
    assert d.variance is Variance.UNDERPAID
    assert not d.creditable


def test_partially_paid_past_expiry_without_amounts_is_not_final():
    d = decide_credit(
        status=S.PARTIALLY_PAID, amount_usd=D("100.00"), pay_amount=None, actually_paid=None, past_expiry=True
    )
    assert d.credit_usd == 0 and not d.final and not d.creditable


def test_partially_paid_final_credits_received_value():
    d = decide_credit(
        status=S.PARTIALLY_PAID,
        amount_usd=D("100.00"),
        pay_amount=D("0.00250000"),
        actually_paid=D("0.00125"),
        past_expiry=True,
    )
    assert d.credit_usd == D("50.00")
    assert d.final is True
    assert d.variance is Variance.UNDERPAID
    assert d.hold_reason is None
    assert d.creditable


def test_partially_paid_final_rounds_down():
    d = decide_credit(
        status=S.PARTIALLY_PAID, amount_usd=D("100.00"), pay_amount=D("3"), actually_paid=D("1"), past_expiry=True
    )
    assert d.credit_usd == D("33.33")
    d = decide_credit(
        status=S.PARTIALLY_PAID, amount_usd=D("100.00"), pay_amount=D("3"), actually_paid=D("2"), past_expiry=True
    )
    assert d.credit_usd == D("66.66")  # 66.666… is not rounded up to 66.67


@pytest.mark.parametrize("status", [S.EXPIRED, S.FAILED, S.CANCELLED])
def test_failed_or_expired_with_funds_is_held_and_credits_nothing(status):
    d = decide_credit(
        status=status, amount_usd=D("100.00"), pay_amount=D("0.0025"), actually_paid=D("0.001"), past_expiry=True
    )
    assert d.credit_usd == 0
    assert d.final is True
    assert d.hold_reason is not None and status.value in d.hold_reason and "0.001" in d.hold_reason
    assert not d.creditable


@pytest.mark.parametrize("status", [S.EXPIRED, S.FAILED, S.CANCELLED, S.REFUNDED])
@pytest.mark.parametrize("actually_paid", [None, D("0")])
def test_terminal_without_funds_is_final_and_not_held(status, actually_paid):
    d = decide_credit(
        status=status, amount_usd=D("10.00"), pay_amount=D("1"), actually_paid=actually_paid, past_expiry=True
    )
    assert d == CreditDecision(D("0"), Variance.EXACT, final=True, hold_reason=None)


def test_refunded_with_funds_is_not_held():
    d = decide_credit(
        status=S.REFUNDED, amount_usd=D("10.00"), pay_amount=D("1"), actually_paid=D("1"), past_expiry=True
    )
    assert d.final and d.hold_reason is None and d.credit_usd == 0


@pytest.mark.parametrize("status", [S.PENDING, S.CONFIRMING, S.CONFIRMED])
def test_in_progress_statuses_credit_nothing_and_are_not_final(status):
    d = decide_credit(status=status, amount_usd=D("10.00"), pay_amount=D("1"), actually_paid=D("1"), past_expiry=True)
    assert d.credit_usd == 0 and not d.final and d.hold_reason is None and not d.creditable


def test_underpaid_policy_hold_for_review():
    kwargs = dict(amount_usd=D("100.00"), pay_amount=D("0.0025"), actually_paid=D("0.002"), past_expiry=True)
    held = decide_credit(status=S.COMPLETED, underpaid_policy=VariancePolicy.HOLD_FOR_REVIEW, **kwargs)
    assert held.hold_reason is not None and "underpaid" in held.hold_reason
    assert held.credit_usd == D("80.00")  # the value is still computed, for the operator to see
    assert not held.creditable
    partial = decide_credit(status=S.PARTIALLY_PAID, underpaid_policy=VariancePolicy.HOLD_FOR_REVIEW, **kwargs)
    assert partial.hold_reason is not None and not partial.creditable
    # the overpaid policy does not hold an underpayment
    free = decide_credit(status=S.COMPLETED, overpaid_policy=VariancePolicy.HOLD_FOR_REVIEW, **kwargs)
    assert free.hold_reason is None and free.creditable


def test_overpaid_policy_hold_for_review():
    kwargs = dict(amount_usd=D("100.00"), pay_amount=D("0.0025"), actually_paid=D("0.003"), past_expiry=False)
    held = decide_credit(status=S.COMPLETED, overpaid_policy=VariancePolicy.HOLD_FOR_REVIEW, **kwargs)
    assert held.hold_reason is not None and "overpaid" in held.hold_reason
    assert held.variance is Variance.OVERPAID and not held.creditable
    free = decide_credit(status=S.COMPLETED, underpaid_policy=VariancePolicy.HOLD_FOR_REVIEW, **kwargs)
    assert free.hold_reason is None and free.creditable and free.credit_usd == D("120.00")


def test_exact_payment_is_never_held_by_policy():
    d = decide_credit(
        status=S.COMPLETED,
        amount_usd=D("100.00"),
        pay_amount=D("0.0025"),
        actually_paid=D("0.0025"),
        past_expiry=False,
        underpaid_policy=VariancePolicy.HOLD_FOR_REVIEW,
        overpaid_policy=VariancePolicy.HOLD_FOR_REVIEW,
    )
    assert d.hold_reason is None and d.creditable


@pytest.mark.parametrize(
    ("credit", "final", "hold", "creditable"),
    [
        (D("1.00"), True, None, True),
        (D("1.00"), False, None, False),
        (D("1.00"), True, "held", False),
        (D("0"), True, None, False),
    ],
)
def test_creditable_property(credit, final, hold, creditable):
    assert CreditDecision(credit, Variance.EXACT, final=final, hold_reason=hold).creditable is creditable


# --- received value ----------------------------------------------------------------------------------


def _exact_floor(price, pay, paid):
    value = Fraction(paid) * Fraction(price) / Fraction(pay)
    return D(int(value * 100)) / 100


def test_received_value_usd_never_rounds_up_on_ordinary_amounts():
    price = D("100.00")
    pay = D("0.00250000")
    for paid_sats in range(1, 600):
        paid = D(paid_sats) / D(100_000_000)
        got = received_value_usd(price_amount=price, pay_amount=pay, actually_paid=paid)
        assert got == _exact_floor(price, pay, paid), paid
        assert got.as_tuple().exponent == -2


def test_received_value_usd_with_zero_pay_amount_is_zero():
    assert received_value_usd(price_amount=D("10"), pay_amount=D("0"), actually_paid=D("1")) == 0


def test_received_value_usd_never_rounds_up_with_18_decimal_amounts():
    price = D("100.00")
    pay = D("2423809.835651109713949999")
    paid = D("2423567.454667544602978604")
    exact = Fraction(paid) * Fraction(price) / Fraction(pay)
    assert exact < Fraction(9999, 100)  # what arrived is worth a hair less than 99.99
    assert received_value_usd(price_amount=price, pay_amount=pay, actually_paid=paid) == D("99.98")


# --- polling and fingerprints ------------------------------------------------------------------------


def test_next_poll_delay_backoff_and_cap():
    delays = [next_poll_delay(n, first=5.0, minimum=10.0, maximum=300.0) for n in range(0, 9)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert next_poll_delay(-3, first=5.0, minimum=10.0, maximum=300.0) == 5.0
    assert next_poll_delay(10_000, first=5.0, minimum=10.0, maximum=300.0) == 300.0  # no overflow
    delays_after_first = delays[1:]
    assert all(a <= b for a, b in pairwise(delays_after_first))


BASE = dict(user_id="user-1", amount_usd=D("10.00"), currency_code="btc", description="top-up")


def test_request_fingerprint_is_stable():
    first = request_fingerprint(**BASE)
    assert first == request_fingerprint(**BASE)
    assert len(first) == 64 and int(first, 16) >= 0
    # the same amount written differently is the same request
    assert request_fingerprint(**{**BASE, "amount_usd": D("10")}) == first
    assert request_fingerprint(**{**BASE, "amount_usd": D("10.0")}) == first


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "user-2"},
        {"user_id": "User-1"},
        {"amount_usd": D("10.01")},
        {"amount_usd": D("100.00")},
        {"currency_code": "eth"},
        {"description": "top-up "},
        {"description": ""},
    ],
)
def test_request_fingerprint_differs_when_any_argument_differs(change):
    assert request_fingerprint(**{**BASE, **change}) != request_fingerprint(**BASE)
