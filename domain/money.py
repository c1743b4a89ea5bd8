"""Money as `Decimal`, never float, with every rounding spelled out.

USD is kept to the cent. Crypto amounts keep up to 18 decimal places (the most any
supported coin uses). Amounts arriving from outside are parsed from their text.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from domain.errors import InvalidRequest

USD_PLACES = 2
CENT = Decimal("0.01")
CRYPTO_MAX_PLACES = 18
CRYPTO_MAX_INTEGER_DIGITS = 20  # crypto amounts are stored as NUMERIC(38, 18)
ZERO = Decimal("0")

# Plain positional notation only: no sign, no exponent, no thousands separators.
_DECIMAL_TEXT = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_MAX_INTEGER_DIGITS = 15  # 10^15 USD is far beyond any real deposit; bigger text is an attack or a bug


def parse_amount_text(value: object, *, field: str, max_places: int) -> Decimal:
    """Parse a positive amount sent to us as a decimal string, e.g. ``"25.50"``.

    Refuses floats and ints (the contract sends strings so nothing is lost in JSON),
    NaN/Infinity, exponents, signs, zero, and more than ``max_places`` decimals.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise InvalidRequest(f'must be a decimal string like "10.00", got {type(value).__name__}', field=field)
    text = value.strip()
    match = _DECIMAL_TEXT.match(text)
    if match is None:
        raise InvalidRequest(f"{value!r} is not a plain decimal number", field=field)
    integer_part, fraction = match.group(1), match.group(2) or ""
    if len(integer_part) > _MAX_INTEGER_DIGITS:
        raise InvalidRequest(f"{value!r} is too large", field=field)
    if len(fraction) - 1 > max_places:
        raise InvalidRequest(f"{value!r} has more than {max_places} decimal places", field=field)
    amount = Decimal(text)
    if amount <= ZERO:
        raise InvalidRequest(f"{value!r} must be greater than zero", field=field)
    return amount


def parse_usd(value: object, *, field: str = "amount_usd") -> Decimal:
    """A positive USD amount from a message: at most two decimal places, quantised to the cent."""
    return parse_amount_text(value, field=field, max_places=USD_PLACES).quantize(CENT)


def decimal_from_wire(value: object) -> Decimal | None:
    """A number as a gateway sends it: text, int, or Decimal (JSON parsed with ``parse_float=Decimal``).

    ``None`` and ``""`` mean absent. Floats are refused: they have already lost digits.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, float):
        raise TypeError("floats are not accepted for money; parse JSON with parse_float=Decimal")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a number") from exc
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return result


# One step of a 64-bit double relative to its value (2^-52): the most that printing an amount as a
# JavaScript number (shortest round-trip text) moves it.
_DOUBLE_STEP = Decimal(2) ** -52


def same_crypto_amount(held: Decimal, reported: Decimal, *, precision: int | None) -> bool:
    """Whether the gateway's ``reported`` amount is the amount we hold, as far as its wire can tell.

    Equal at the coin's ``precision`` (decimal places; None: the most any coin uses), or apart by no
    more than a JavaScript double can carry at that size: IPN bodies hold amounts as doubles (about 16
    significant digits), so an 18-decimal amount repeated by the gateway may come back a unit off in
    its last places. Far below the smallest unit of any real deposit.
    """
    places = CRYPTO_MAX_PLACES if precision is None else max(0, min(precision, CRYPTO_MAX_PLACES))
    with localcontext() as exact:
        exact.prec = 80
        quantum = Decimal(1).scaleb(-places)
        if held.quantize(quantum, rounding=ROUND_HALF_EVEN) == reported.quantize(quantum, rounding=ROUND_HALF_EVEN):
            return True
        return abs(held - reported) <= max(abs(held), abs(reported)) * _DOUBLE_STEP


def holdable_crypto_amount(amount: Decimal) -> bool:
    """Whether ``amount`` is one a crypto amount column holds: finite, not negative, and below
    10^20 once rounded to 18 places (as Postgres rounds it)."""
    limit = Decimal(10) ** CRYPTO_MAX_INTEGER_DIGITS
    if not amount.is_finite() or amount < ZERO or amount >= limit:
        return False
    with localcontext() as exact:
        exact.prec = CRYPTO_MAX_INTEGER_DIGITS + CRYPTO_MAX_PLACES + 1
        return amount.quantize(Decimal(1).scaleb(-CRYPTO_MAX_PLACES), rounding=ROUND_HALF_UP) < limit


def floor_cents(amount: Decimal) -> Decimal:
    """Round towards zero to the cent: what we credit is never more than what arrived."""
    return amount.quantize(CENT, rounding=ROUND_DOWN)


def round_cents(amount: Decimal) -> Decimal:
    """Round half-up to the cent: used for fees, where the rule is the commercial one."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def plain_amount(amount: Decimal) -> str:
    """Positional text without trailing zeros or exponent: ``0.00000100`` → ``"0.000001"``, ``0E-18`` → ``"0"``."""
    text = format(amount.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_usd(amount: Decimal) -> str:
    """``Decimal("1234.5")`` → ``"$1,234.50"``; negative amounts keep their sign in front."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount).quantize(CENT):,.2f}"
