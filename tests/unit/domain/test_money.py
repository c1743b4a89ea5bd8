from decimal import Decimal

import pytest

from domain.errors import InvalidRequest
from domain.money import (
    decimal_from_wire,
    floor_cents,
    format_usd,
    holdable_crypto_amount,
    parse_usd,
    plain_amount,
    round_cents,
    same_crypto_amount,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", "10.00"),
        ("10.5", "10.50"),
        ("10.50", "10.50"),
        ("0.01", "0.01"),
        ("999999999999999.99", "999999999999999.99"),  # 15 integer digits: the largest accepted
        (" 25.5 ", "25.50"),  # surrounding whitespace is tolerated
    ],
)
def test_parse_usd_accepts_plain_decimals_and_quantises_to_cents(text, expected):
    amount = parse_usd(text)
    assert amount == Decimal(expected)
    assert str(amount) == expected  # exactly two places, not just numerically equal
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "text",
    [
        "-10",
        "-0.01",
        "+10",
        "0",
        "0.00",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1e3",
        "1E3",
        " ",
        "",
        "1,000.00",
        "10.001",
        "10.",
        ".5",
        "010",
        "1" + "0" * 20,
        "1" + "0" * 15,  # 16 integer digits
        "10 000",
        "0x10",
        "１０",  # full-width digits
    ],
)
def test_parse_usd_refuses_bad_text(text):
    with pytest.raises(InvalidRequest) as info:
        parse_usd(text)
    assert info.value.field == "amount_usd"


@pytest.mark.parametrize("value", [10.5, 10.0, 10, 0, True, False, None, Decimal("10.50"), b"10", ["10"]])
def test_parse_usd_refuses_non_strings(value):
    with pytest.raises(InvalidRequest) as info:
        parse_usd(value)
    assert "decimal string" in info.value.reason


def test_parse_usd_reports_the_given_field():
    with pytest.raises(InvalidRequest) as info:
        parse_usd("-1", field="fee")
    assert info.value.field == "fee"
    assert str(info.value).startswith("fee: ")


def test_parse_usd_error_messages_name_the_problem():
    with pytest.raises(InvalidRequest, match="more than 2 decimal places"):
        parse_usd("10.001")
    with pytest.raises(InvalidRequest, match="too large"):
        parse_usd("1" + "0" * 20)
    with pytest.raises(InvalidRequest, match="greater than zero"):
        parse_usd("0.00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.00125", Decimal("0.00125")),
        (" 12.5 ", Decimal("12.5")),
        ("1e-8", Decimal("0.00000001")),
        (7, Decimal(7)),
        (0, Decimal(0)),
        (Decimal("0.123456789012345678"), Decimal("0.123456789012345678")),
    ],
)
def test_decimal_from_wire_accepts_text_ints_and_decimals(value, expected):
    result = decimal_from_wire(value)
    assert isinstance(result, Decimal)
    assert result == expected


def test_decimal_from_wire_keeps_every_digit_of_text():
    assert str(decimal_from_wire("0.123456789012345678")) == "0.123456789012345678"


@pytest.mark.parametrize("value", [None, ""])
def test_decimal_from_wire_absent(value):
    assert decimal_from_wire(value) is None


def test_decimal_from_wire_refuses_floats_with_type_error():
    with pytest.raises(TypeError, match="float"):
        decimal_from_wire(0.1)


@pytest.mark.parametrize(
    "value", ["NaN", "sNaN", "Infinity", "-inf", Decimal("NaN"), Decimal("Infinity"), "abc", "1,5", True, [1]]
)
def test_decimal_from_wire_refuses_non_finite_and_junk(value):
    with pytest.raises(ValueError):
        decimal_from_wire(value)


@pytest.mark.parametrize(
    ("amount", "floored", "rounded"),
    [
        ("0.005", "0.00", "0.01"),
        ("0.015", "0.01", "0.02"),
        ("0.025", "0.02", "0.03"),  # half-up, not banker's rounding
        ("0.0049", "0.00", "0.00"),
        ("1.999", "1.99", "2.00"),
        ("10", "10.00", "10.00"),
        ("-0.005", "0.00", "-0.01"),
        ("-0.015", "-0.01", "-0.02"),
        ("-1.999", "-1.99", "-2.00"),
    ],
)
def test_floor_and_round_cents(amount, floored, rounded):
    assert str(floor_cents(Decimal(amount))) in (floored, "-" + floored)
    assert floor_cents(Decimal(amount)) == Decimal(floored)
    assert round_cents(Decimal(amount)) == Decimal(rounded)
    assert round_cents(Decimal(amount)).as_tuple().exponent == -2


def test_floor_cents_never_exceeds_its_input_for_positive_amounts():
    for n in range(1, 2000):
        amount = Decimal(n) / Decimal(997)
        floored = floor_cents(amount)
        assert floored <= amount < floored + Decimal("0.01")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("1234.5", "$1,234.50"),
        ("0", "$0.00"),
        ("0.1", "$0.10"),
        ("1000000", "$1,000,000.00"),
        ("-1234.5", "-$1,234.50"),
        ("-0.5", "-$0.50"),
        ("999.99", "$999.99"),
    ],
)
def test_format_usd(amount, text):
    assert format_usd(Decimal(amount)) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0E-18", "0"),
        ("0.000000000000000000", "0"),
        ("-0", "0"),
        ("0.00000100", "0.000001"),
        ("1E+3", "1000"),
        ("25.50", "25.5"),
        ("123.000000000000000001", "123.000000000000000001"),
    ],
)
def test_plain_amount_has_no_exponent_and_no_trailing_zeros(amount, text):
    assert plain_amount(Decimal(amount)) == text


# --- the same crypto amount, as far as the gateway's wire can tell ------------------------------------------


@pytest.mark.parametrize(
    ("held", "reported", "precision"),
    [
        ("0.008823529411764705", "0.008823529411764706", 18),  # a JavaScript double's last digit
        ("0.017647058823529411", "0.01764705882352941", 18),
        ("1234.123456789012345678", "1234.1234567890124", 18),
        ("0.3", "0.30000000000000004", None),
        ("0.12345678", "0.123456780000000001", 8),  # equal at the coin's precision
        ("5", "5.000000000", 8),
    ],
)
def test_amounts_a_double_or_the_coins_precision_cannot_tell_apart_are_the_same(
    held: str, reported: str, precision: int | None
) -> None:
    assert same_crypto_amount(Decimal(held), Decimal(reported), precision=precision)
    assert same_crypto_amount(Decimal(reported), Decimal(held), precision=precision)


@pytest.mark.parametrize(
    ("held", "reported", "precision"),
    [
        ("0.008823529411764705", "0.008823529411764725", 18),  # 20 wei more: real funds
        ("0.12345678", "0.12345679", 8),  # one satoshi
        ("0", "0.000000000000000001", 18),
        ("1000", "1000.000001", 8),
    ],
)
def test_amounts_apart_by_a_real_unit_are_not_the_same(held: str, reported: str, precision: int | None) -> None:
    assert not same_crypto_amount(Decimal(held), Decimal(reported), precision=precision)


@pytest.mark.parametrize(
    ("amount", "holdable"),
    [
        ("0", True),
        ("0.000000000000000001", True),
        ("1e-400", True),  # rounds to 0 at 18 places, as Postgres stores it
        ("99999999999999999999.999999999999999999", True),
        ("99999999999999999999.9999999999999999995", False),  # rounds up to 10^20
        ("100000000000000000000", False),
        ("1e400", False),
        ("-0.000000000000000001", False),
        ("NaN", False),
        ("Infinity", False),
    ],
)
def test_holdable_crypto_amounts_fit_numeric_38_18_and_are_not_negative(amount: str, holdable: bool) -> None:
    assert holdable_crypto_amount(Decimal(amount)) is holdable
