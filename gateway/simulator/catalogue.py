"""The simulator's currencies: what it accepts, at what USD rate, minimum and precision,
with address and transaction-hash generators shaped like the real networks'."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, localcontext

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_HEX = "0123456789abcdef"


def _rand(alphabet: str, length: int) -> str:
    return "".join(random.choice(alphabet) for _ in range(length))


@dataclass(frozen=True, slots=True)
class SimCurrency:
    code: str
    name: str
    network: str
    precision: int
    usd_rate: Decimal
    min_usd: Decimal
    wallet_regex: str
    address: Callable[[], str]
    enabled: bool = True
    extra_id_regex: str | None = None
    smart_contract: str | None = None
    tx_hash: Callable[[], str] = lambda: _rand(_HEX, 64)
    payout_fee: Decimal = Decimal(0)  # what GET /v1/payout/fee answers, whatever the amount

    @property
    def extra_id_exists(self) -> bool:
        return self.extra_id_regex is not None

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.precision)


def _tron_address() -> str:
    return "T" + _rand(_BASE58, 33)


_CURRENCIES = (
    SimCurrency(
        "btc",
        "Bitcoin",
        "btc",
        8,
        Decimal("97000.00"),
        Decimal("2.00"),
        "^(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,62}$",
        lambda: "bc1q" + _rand(_BECH32, 38),
        payout_fee=Decimal("0.00012"),
    ),
    SimCurrency(
        "eth",
        "Ethereum",
        "eth",
        18,
        Decimal("3400.00"),
        Decimal("1.50"),
        "^(0x)[0-9A-Fa-f]{40}$",
        lambda: "0x" + _rand(_HEX, 40),
        tx_hash=lambda: "0x" + _rand(_HEX, 64),
        payout_fee=Decimal("0.000731966158472103"),
    ),
    SimCurrency(
        "usdttrc20",
        "Tether USD (Tron)",
        "trx",
        6,
        Decimal("1.00"),
        Decimal("1.00"),
        "^T[1-9A-HJ-NP-Za-km-z]{33}$",
        _tron_address,
        smart_contract="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        payout_fee=Decimal("1.1"),
    ),
    SimCurrency(
        "ltc",
        "Litecoin",
        "ltc",
        8,
        Decimal("105.00"),
        Decimal("0.50"),
        "^(L|M|3|ltc1)[a-km-zA-HJ-NP-Z0-9]{26,62}$",
        # The gateway's LTC wallet_regex leaves out "l", so generated addresses do too.
        lambda: "ltc1q" + _rand(_BECH32.replace("l", ""), 38),
        payout_fee=Decimal("0.001"),
    ),
    SimCurrency(
        "trx",
        "Tron",
        "trx",
        6,
        Decimal("0.25"),
        Decimal("0.30"),
        "^T[1-9A-HJ-NP-Za-km-z]{33}$",
        _tron_address,
        payout_fee=Decimal("1"),
    ),
    SimCurrency(
        "xrp",
        "Ripple",
        "xrp",
        6,
        Decimal("2.40"),
        Decimal("0.50"),
        "^r[1-9A-HJ-NP-Za-km-z]{24,34}$",
        lambda: "r" + _rand(_BASE58, 33),
        extra_id_regex="^([0-9]{1,10})$",
        payout_fee=Decimal("0.2"),
    ),
    SimCurrency(
        "doge",
        "Dogecoin",
        "doge",
        8,
        Decimal("0.35"),
        Decimal("1.00"),
        "^(D|A|9)[a-km-zA-HJ-NP-Z1-9]{33,34}$",
        lambda: "D" + _rand(_BASE58, 33),
        enabled=False,
        payout_fee=Decimal("2"),
    ),
)


CATALOGUE: Mapping[str, SimCurrency] = {c.code: c for c in _CURRENCIES}
FIAT_USD_RATES: Mapping[str, Decimal] = {"usd": Decimal("1"), "eur": Decimal("1.08")}
FIAT_PRECISION = 2


def plain(amount: Decimal) -> Decimal:
    """Drop trailing zeros, as a JavaScript number would print (0.00010000 → 0.0001)."""
    normalized = amount.normalize()
    return normalized if normalized.as_tuple().exponent <= 0 else normalized.quantize(Decimal(1))


def min_crypto(currency: SimCurrency) -> Decimal:
    """The smallest amount of `currency` the gateway takes (its USD minimum, rounded up)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return plain((currency.min_usd / currency.usd_rate).quantize(currency.quantum, rounding=ROUND_UP))
