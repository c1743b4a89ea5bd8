from decimal import Decimal
from decimal import Decimal as D
from itertools import product

import pytest

from domain.errors import InvalidRequest, InvalidTransition
from domain.withdrawals import (
    TERMINAL,
    FeeSchedule,
    WithdrawalQuote,
    WithdrawalStatus,
    can_transition,
    hold_outcome,
    network_fee_in_usd,
    quote_withdrawal,
    transition,
    validate_destination,
)

S = WithdrawalStatus
ALLOWED = {
    (S.PENDING, S.APPROVED),
    (S.PENDING, S.REJECTED),
    (S.PENDING, S.CANCELLED),
    (S.APPROVED, S.PROCESSING),
    (S.APPROVED, S.COMPLETED),
    (S.APPROVED, S.FAILED),
    (S.APPROVED, S.REJECTED),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
}
ALL_PAIRS = list(product(S, S))


def test_statuses_and_terminal_set() -> None:
    assert [s.value for s in S] == [
        "pending",
        "approved",
        "processing",
        "completed",
        "rejected",
        "cancelled",
        "failed",
    ]
    assert frozenset({S.COMPLETED, S.REJECTED, S.CANCELLED, S.FAILED}) == TERMINAL


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_transition(current: WithdrawalStatus, target: WithdrawalStatus) -> None:
    if (current, target) in ALLOWED:
        assert can_transition(current, target)
        assert transition(current, target) is target
    else:
        assert not can_transition(current, target)
        with pytest.raises(InvalidTransition) as err:
            transition(current, target)
        message = str(err.value)
        assert current.value in message
        if current is not target:
            assert message.startswith("cannot ")


def test_terminal_statuses_go_nowhere() -> None:
    for current in TERMINAL:
        assert not any(can_transition(current, target) for target in S)


def test_transition_messages_are_readable() -> None:
    with pytest.raises(InvalidTransition, match=r"^cannot complete a rejected withdrawal$"):
        transition(S.REJECTED, S.COMPLETED)
    with pytest.raises(InvalidTransition, match=r"^withdrawal is already approved$"):
        transition(S.APPROVED, S.APPROVED)
    with pytest.raises(InvalidTransition, match=r"^cannot cancel an approved withdrawal$"):
        transition(S.APPROVED, S.CANCELLED)
    with pytest.raises(InvalidTransition, match=r"^cannot start processing a pending withdrawal$"):
        transition(S.PENDING, S.PROCESSING)


def test_plain_strings_are_accepted_and_unknown_statuses_refused() -> None:
    assert transition("pending", "approved") is S.APPROVED
    assert can_transition("approved", "completed")
    assert not can_transition("pending", "sent")
    assert not can_transition("bogus", "approved")
    with pytest.raises(InvalidTransition, match="unknown withdrawal status"):
        transition("pending", "sent")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (S.PENDING, None),
        (S.APPROVED, None),
        (S.PROCESSING, None),
        (S.COMPLETED, "post"),
        (S.REJECTED, "release"),
        (S.CANCELLED, "release"),
        (S.FAILED, "release"),
    ],
)
def test_hold_outcome(target: WithdrawalStatus, expected: str | None) -> None:
    assert hold_outcome(target) == expected


# --- fees -----------------------------------------------------------------------------------


def schedule(network: str = "1.00", fixed: str = "0.50", percent: str = "0", **limits: str) -> FeeSchedule:
    return FeeSchedule(
        network_fee_usd=Decimal(network),
        service_fee_fixed_usd=Decimal(fixed),
        service_fee_percent=Decimal(percent),
        **{k: Decimal(v) for k, v in limits.items()},
    )


def test_quote_seed_example() -> None:
    quote = quote_withdrawal(Decimal("100.00"), schedule())
    assert quote == WithdrawalQuote(
        amount_usd=Decimal("100.00"),
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
        total_fee_usd=Decimal("1.50"),
        final_amount_usd=Decimal("98.50"),
    )


def test_quote_with_percent() -> None:
    quote = quote_withdrawal(Decimal("200.00"), schedule(percent="1.5"))
    assert quote.service_fee_usd == Decimal("3.50")  # 0.50 + 3.00
    assert quote.total_fee_usd == Decimal("4.50")
    assert quote.final_amount_usd == Decimal("195.50")


@pytest.mark.parametrize(
    ("amount", "percent", "fixed", "expected_service"),
    [
        ("10.00", "0.05", "0", "0.01"),  # 0.005 exactly: half-up goes to 0.01
        ("33.00", "1.5", "0", "0.50"),  # 0.495 → 0.50
        ("10.10", "1.5", "0", "0.15"),  # 0.1515 → 0.15
        ("12.34", "0.333", "0", "0.04"),  # 0.0410922 → 0.04
        ("99.99", "2.345", "0.25", "2.59"),  # 0.25 + 2.34476550 → 2.5947655 → 2.59
        ("70.00", "0.75", "0.10", "0.63"),  # 0.10 + 0.525 = 0.625 → 0.63
        ("10.00", "0.04999", "0", "0.00"),  # 0.004999 stays down
    ],
)
def test_service_fee_rounding(amount: str, percent: str, fixed: str, expected_service: str) -> None:
    quote = quote_withdrawal(Decimal(amount), schedule(network="0", fixed=fixed, percent=percent))
    assert quote.service_fee_usd == Decimal(expected_service)
    assert quote.service_fee_usd.as_tuple().exponent == -2
    assert quote.final_amount_usd == Decimal(amount) - quote.total_fee_usd


def test_network_fee_is_rounded_to_the_cent() -> None:
    quote = quote_withdrawal(Decimal("50.00"), schedule(network="0.125", fixed="0"))
    assert quote.network_fee_usd == Decimal("0.13")
    assert quote.total_fee_usd == Decimal("0.13")
    assert quote.final_amount_usd == Decimal("49.87")


def test_all_quote_figures_are_decimal_cents() -> None:
    quote = quote_withdrawal(Decimal("10"), schedule(percent="1.234"))
    for value in (
        quote.amount_usd,
        quote.network_fee_usd,
        quote.service_fee_usd,
        quote.total_fee_usd,
        quote.final_amount_usd,
    ):
        assert isinstance(value, Decimal)
        assert value.as_tuple().exponent == -2


def test_below_minimum() -> None:
    with pytest.raises(InvalidRequest, match=r"below the minimum withdrawal of \$10\.00") as err:
        quote_withdrawal(Decimal("9.99"), schedule())
    assert err.value.field == "amount_usd"
    assert quote_withdrawal(Decimal("10.00"), schedule()).final_amount_usd == Decimal("8.50")


def test_above_maximum() -> None:
    with pytest.raises(InvalidRequest, match=r"above the maximum withdrawal of \$50,000\.00") as err:
        quote_withdrawal(Decimal("50000.01"), schedule())
    assert err.value.field == "amount_usd"
    assert quote_withdrawal(Decimal("50000.00"), schedule()).amount_usd == Decimal("50000.00")


def test_custom_limits() -> None:
    fees = schedule(min_amount_usd="1.00", max_amount_usd="20.00")
    assert quote_withdrawal(Decimal("2.00"), fees).final_amount_usd == Decimal("0.50")
    with pytest.raises(InvalidRequest, match=r"maximum withdrawal of \$20\.00"):
        quote_withdrawal(Decimal("20.01"), fees)


@pytest.mark.parametrize("amount", ["10.00", "12.00"])
def test_fees_exceeding_or_equal_to_the_amount(amount: str) -> None:
    with pytest.raises(InvalidRequest, match=r"fees of \$12\.00 exceed the amount") as err:
        quote_withdrawal(Decimal(amount), schedule(network="11.00", fixed="1.00"))
    assert err.value.field == "amount_usd"


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("10.001"), 10.5, "10.00"])
def test_quote_refuses_non_cent_amounts(bad: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        quote_withdrawal(bad, schedule())  # type: ignore[arg-type]
    assert err.value.field == "amount_usd"


def test_fee_schedule_defaults_and_validation() -> None:
    fees = schedule()
    assert fees.min_amount_usd == Decimal("10.00")
    assert fees.max_amount_usd == Decimal("50000.00")
    with pytest.raises(TypeError):
        FeeSchedule(network_fee_usd=1.0, service_fee_fixed_usd=Decimal(0), service_fee_percent=Decimal(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        schedule(network="-1")
    with pytest.raises(ValueError, match="below 100"):
        schedule(percent="100")
    with pytest.raises(ValueError, match="exceed"):
        schedule(min_amount_usd="100", max_amount_usd="50")
    with pytest.raises(ValueError, match="greater than zero"):
        schedule(min_amount_usd="0")
    with pytest.raises(AttributeError):
        fees.network_fee_usd = Decimal("0")  # type: ignore[misc]


# --- destinations ---------------------------------------------------------------------------

BTC_REGEX = r"^(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,39}$"
XRP_REGEX = r"^r[1-9A-HJ-NP-Za-km-z]{24,34}$"
TAG_REGEX = r"^[0-9]{1,10}$"
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
XRP_ADDRESS = "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh"


def check(address: str, extra_id: str | None = None, **kw: object) -> tuple[str, str | None]:
    options: dict = {"wallet_regex": None, "extra_id_required": False, "extra_id_regex": None}
    options.update(kw)
    return validate_destination(address, extra_id, **options)


def test_valid_address_is_stripped() -> None:
    assert check(f"  {BTC_ADDRESS}\n", wallet_regex=BTC_REGEX) == (BTC_ADDRESS, None)


def test_no_regex_accepts_any_reasonable_address() -> None:
    assert check("anything-goes_123") == ("anything-goes_123", None)
    assert check("0xabc", wallet_regex="") == ("0xabc", None)


@pytest.mark.parametrize("address", ["", "   ", "\t\n"])
def test_empty_address(address: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check(address)
    assert err.value.field == "wallet_address"


def test_too_long_address() -> None:
    assert check("a" * 128) == ("a" * 128, None)
    with pytest.raises(InvalidRequest, match="128") as err:
        check("a" * 129)
    assert err.value.field == "wallet_address"


def test_address_with_inner_whitespace_or_control_chars() -> None:
    for bad in ("bc1q abc", "bc1q\x00abc", "bc1q\nabc"):
        with pytest.raises(InvalidRequest) as err:
            check(bad)
        assert err.value.field == "wallet_address"


def test_address_must_fully_match() -> None:
    with pytest.raises(InvalidRequest, match="address does not match the BTC address format") as err:
        check("0x" + "a" * 40, wallet_regex=BTC_REGEX, currency="btc")
    assert err.value.field == "wallet_address"
    # An unanchored pattern still has to match the whole address.
    with pytest.raises(InvalidRequest, match="does not match the expected address format"):
        check(BTC_ADDRESS + "zz!", wallet_regex=r"bc1[a-z0-9]+")


def test_memo_required() -> None:
    with pytest.raises(InvalidRequest, match="this currency needs a memo/tag") as err:
        check(XRP_ADDRESS, None, wallet_regex=XRP_REGEX, extra_id_required=True, extra_id_regex=TAG_REGEX)
    assert err.value.field == "extra_id"
    with pytest.raises(InvalidRequest, match="needs a memo/tag"):
        check(XRP_ADDRESS, "   ", extra_id_required=True)


def test_memo_valid_and_invalid() -> None:
    assert check(XRP_ADDRESS, " 12345 ", extra_id_required=True, extra_id_regex=TAG_REGEX) == (
        XRP_ADDRESS,
        "12345",
    )
    with pytest.raises(InvalidRequest, match="memo/tag does not match") as err:
        check(XRP_ADDRESS, "12a45", extra_id_regex=TAG_REGEX)
    assert err.value.field == "extra_id"
    with pytest.raises(InvalidRequest) as err:
        check(XRP_ADDRESS, "1" * 129)
    assert err.value.field == "extra_id"
    with pytest.raises(InvalidRequest):
        check(XRP_ADDRESS, "12\x0045")


def test_optional_memo() -> None:
    assert check(XRP_ADDRESS, "", extra_id_regex=TAG_REGEX) == (XRP_ADDRESS, None)
    assert check("GABC", "hello world") == ("GABC", "hello world")  # Stellar text memos may have spaces


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"wallet_regex": "^(bc1|[13][a-z"}, "wallet_address"),
        ({"wallet_regex": "*abc"}, "wallet_address"),
        ({"extra_id_regex": "(?P<x"}, "extra_id"),
    ],
)
def test_broken_regex_is_an_invalid_request(kw: dict, field: str) -> None:
    with pytest.raises(InvalidRequest, match="rules for XRP are broken") as err:
        check(XRP_ADDRESS, "123", currency="xrp", **kw)
    assert err.value.field == field


def test_catastrophic_pattern_is_only_run_on_short_input() -> None:
    # (a+)+$ backtracks exponentially; the 128-character cap is refused before matching.
    with pytest.raises(InvalidRequest, match="longer than 128"):
        check("a" * 5000 + "!", wallet_regex=r"^(a+)+$")


def test_network_fee_in_usd_converts_at_the_payout_rate_rounding_half_up():
    # 0.0001 BTC fee on a 0.001 BTC payout worth $50.00 is $5.00.
    assert network_fee_in_usd(fee_crypto=D("0.0001"), amount_crypto=D("0.001"), amount_usd=D("50.00")) == D("5.00")
    # $0.125 rounds half-up to $0.13; $0.1249999 rounds to $0.12.
    assert network_fee_in_usd(fee_crypto=D("1"), amount_crypto=D("80"), amount_usd=D("10.00")) == D("0.13")
    assert network_fee_in_usd(fee_crypto=D("0.999999"), amount_crypto=D("80"), amount_usd=D("10.00")) == D("0.12")
    assert network_fee_in_usd(fee_crypto=D("0"), amount_crypto=D("5"), amount_usd=D("10.00")) == D("0.00")


@pytest.mark.parametrize(("fee", "amount"), [("1", "0"), ("-1", "5")])
def test_network_fee_in_usd_refuses_a_nonsense_quote(fee, amount):
    with pytest.raises(InvalidRequest):
        network_fee_in_usd(fee_crypto=D(fee), amount_crypto=D(amount), amount_usd=D("10.00"))
