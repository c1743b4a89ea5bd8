"""Wallet payment URIs and block-explorer links, built from validated text only.

A payment URI is what the deposit QR code encodes (``bitcoin:ADDR?amount=0.0012``), so a
wallet that scans it fills in the address, the amount and, for XRP, the destination tag.
Explorer links let users and operators look a transaction or address up on a public explorer.

Networks arrive in several spellings (``"eth"``, ``"ERC20"``, ``"polygon"``...); they are
folded onto one canonical key first. When the network is unknown it is inferred from the
currency code (``"usdttrc20"`` → ``trx``), otherwise no network-specific behaviour applies.
"""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import quote, urlencode

from domain.errors import InvalidRequest
from domain.money import plain_amount

# Spellings seen from gateways and operators → canonical network key.
_NETWORK_ALIASES: dict[str, str] = {
    "btc": "btc",
    "bitcoin": "btc",
    "eth": "eth",
    "ethereum": "eth",
    "erc20": "eth",
    "trx": "trx",
    "tron": "trx",
    "trc20": "trx",
    "ltc": "ltc",
    "litecoin": "ltc",
    "xrp": "xrp",
    "ripple": "xrp",
    "bsc": "bsc",
    "bep20": "bsc",
    "bnbbsc": "bsc",
    "doge": "doge",
    "dogecoin": "doge",
    "bch": "bch",
    "bitcoincash": "bch",
    "sol": "sol",
    "solana": "sol",
    "spl": "sol",
    "matic": "matic",
    "polygon": "matic",
    "maticpolygon": "matic",
    "pol": "matic",
    "ton": "ton",
    "toncoin": "ton",
    "xlm": "xlm",
    "stellar": "xlm",
    "arbitrum": "arbitrum",
    "arb": "arbitrum",
    "op": "optimism",
    "optimism": "optimism",
    "base": "base",
    "avaxc": "avaxc",
    "avax": "avaxc",
}

# Currency-code suffixes that name the token's network, e.g. "usdttrc20", "usdcmatic".
_CODE_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("trc20", "trx"),
    ("erc20", "eth"),
    ("bep20", "bsc"),
    ("bsc", "bsc"),
    ("polygon", "matic"),
    ("matic", "matic"),
    ("sol", "sol"),
    ("ton", "ton"),
)

# The network's own coin: only for this code is an `amount=` unambiguous in a scheme
# shared with tokens (a wallet would read "amount=50" on an ERC-20 URI as 50 ETH).
_NATIVE_COIN: dict[str, str] = {
    "btc": "btc",
    "eth": "eth",
    "trx": "trx",
    "ltc": "ltc",
    "xrp": "xrp",
    "doge": "doge",
    "bch": "bch",
}

# Canonical network → URI scheme. Anything else uses the currency code itself as the scheme.
_URI_SCHEMES: dict[str, str] = {
    "btc": "bitcoin",
    "eth": "ethereum",
    "trx": "tron",
    "ltc": "litecoin",
    "xrp": "ripple",
    "doge": "dogecoin",
    "bch": "bitcoincash",
}

# Canonical network → (transaction URL template, address URL template).
_EXPLORERS: dict[str, tuple[str, str]] = {
    "btc": ("https://mempool.space/tx/{}", "https://mempool.space/address/{}"),
    "eth": ("https://etherscan.io/tx/{}", "https://etherscan.io/address/{}"),
    "trx": ("https://tronscan.org/#/transaction/{}", "https://tronscan.org/#/address/{}"),
    "ltc": ("https://litecoinspace.org/tx/{}", "https://litecoinspace.org/address/{}"),
    "xrp": ("https://xrpscan.com/tx/{}", "https://xrpscan.com/account/{}"),
    "bsc": ("https://bscscan.com/tx/{}", "https://bscscan.com/address/{}"),
    "doge": (
        "https://blockchair.com/dogecoin/transaction/{}",
        "https://blockchair.com/dogecoin/address/{}",
    ),
    "bch": (
        "https://blockchair.com/bitcoin-cash/transaction/{}",
        "https://blockchair.com/bitcoin-cash/address/{}",
    ),
    "sol": ("https://solscan.io/tx/{}", "https://solscan.io/account/{}"),
    "matic": ("https://polygonscan.com/tx/{}", "https://polygonscan.com/address/{}"),
    "ton": ("https://tonviewer.com/transaction/{}", "https://tonviewer.com/{}"),
    "xlm": (
        "https://stellar.expert/explorer/public/tx/{}",
        "https://stellar.expert/explorer/public/account/{}",
    ),
    "arbitrum": ("https://arbiscan.io/tx/{}", "https://arbiscan.io/address/{}"),
    "optimism": (
        "https://optimistic.etherscan.io/tx/{}",
        "https://optimistic.etherscan.io/address/{}",
    ),
    "base": ("https://basescan.org/tx/{}", "https://basescan.org/address/{}"),
    "avaxc": ("https://snowtrace.io/tx/{}", "https://snowtrace.io/address/{}"),
}

# What may go into an explorer URL: hashes and addresses never need anything else.
_SAFE_IDENTIFIER = re.compile(r"[A-Za-z0-9:_-]{1,200}")
# RFC 3986 scheme syntax, kept to lowercase since we lowercase codes.
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,31}")
_MAX_ADDRESS_LENGTH = 256
_MAX_XRP_TAG = 2**32 - 1


def _fold(value: str | None) -> str:
    return (value or "").strip().lower().replace("-", "").replace("_", "").replace(" ", "")


def resolve_network(network: str | None, currency_code: str) -> str | None:
    """The canonical network key (``"eth"``, ``"trx"``...) or None when it cannot be told.

    An explicit network wins; without one, the currency code is tried as a network name
    and then by its token suffix (``"usdterc20"`` → ``"eth"``).
    """
    folded_network = _fold(network)
    if folded_network:
        return _NETWORK_ALIASES.get(folded_network)
    code = _fold(currency_code)
    if not code:
        return None
    if code in _NETWORK_ALIASES:
        return _NETWORK_ALIASES[code]
    for suffix, key in _CODE_SUFFIXES:
        if code.endswith(suffix) and len(code) > len(suffix):
            return key
    return None


def format_crypto_amount(amount: Decimal) -> str:
    """Plain positional text with trailing zeros stripped: ``Decimal("0.00000100")`` → ``"0.000001"``.

    Never uses an exponent, which wallets do not parse.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal):
        raise InvalidRequest(f"must be a Decimal, got {type(amount).__name__}", field="amount")
    if not amount.is_finite() or amount <= 0:
        raise InvalidRequest(f"{amount} is not a positive amount", field="amount")
    return plain_amount(amount)


def payment_uri(
    currency_code: str,
    network: str | None,
    address: str,
    amount: Decimal | None,
    extra_id: str | None,
) -> str:
    """A wallet URI for paying ``amount`` of ``currency_code`` to ``address``.

    * BTC/LTC/DOGE/BCH: BIP21 style, ``bitcoin:ADDR?amount=0.0012``.
    * ETH and ERC-20 tokens: ``ethereum:ADDR`` (``amount=`` only for ETH itself).
    * TRX and TRC-20 tokens: ``tron:ADDR`` (``amount=`` only for TRX itself).
    * XRP: ``ripple:ADDR?amount=..&dt=TAG`` (the destination tag must be a 32-bit integer).
    * anything else: ``<code>:ADDR?amount=..`` with ``memo=`` when an extra id is given.

    Tokens riding on a shared scheme get no amount on purpose: wallets would read it in
    the network's coin. The memo is never dropped silently: outside XRP it goes in ``memo=``.
    """
    code = _fold(currency_code)
    if not code:
        raise InvalidRequest("currency code is required", field="currency_code")
    address_text = (address or "").strip()
    if not address_text:
        raise InvalidRequest("address is required", field="address")
    if len(address_text) > _MAX_ADDRESS_LENGTH:
        raise InvalidRequest("address is too long", field="address")
    memo = (extra_id or "").strip() or None

    net = resolve_network(network, currency_code)
    scheme = _URI_SCHEMES.get(net) if net else None
    is_native = scheme is not None and _NATIVE_COIN.get(net or "") == code
    if scheme is None:
        scheme = code
        is_native = True  # the scheme names the currency itself, so the amount is unambiguous
    if _SCHEME.fullmatch(scheme) is None:
        raise InvalidRequest(f"{currency_code!r} cannot be used as a URI scheme", field="currency_code")

    # Some addresses carry their scheme already (bitcoincash:qq...): do not double it.
    if address_text.lower().startswith(scheme + ":"):
        address_text = address_text[len(scheme) + 1 :]

    params: list[tuple[str, str]] = []
    if amount is not None and is_native:
        params.append(("amount", format_crypto_amount(amount)))
    elif amount is not None:
        format_crypto_amount(amount)  # still refuse nonsense amounts for tokens
    if memo is not None:
        if scheme == "ripple":
            if not memo.isascii() or not memo.isdigit() or int(memo) > _MAX_XRP_TAG:
                raise InvalidRequest("XRP destination tag must be a number up to 4294967295", field="extra_id")
            params.append(("dt", str(int(memo))))
        else:
            params.append(("memo", memo))

    uri = f"{scheme}:{quote(address_text, safe='')}"
    if params:
        uri += "?" + urlencode(params, quote_via=quote, safe="")
    return uri


def _safe_identifier(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SAFE_IDENTIFIER.fullmatch(text) is None:
        raise ValueError("unsafe identifier")
    return text


def explorer_link(
    network: str | None,
    currency_code: str,
    *,
    tx_hash: str | None = None,
    address: str | None = None,
) -> str | None:
    """A public block-explorer URL for ``tx_hash`` if given, else for ``address``.

    Returns None when the network is unknown, when nothing usable was given, or when the
    hash/address holds anything outside ``[A-Za-z0-9:_-]``: a link is never built from
    arbitrary text (and a bad hash does not quietly fall back to the address).
    """
    net = resolve_network(network, currency_code)
    if net is None or net not in _EXPLORERS:
        return None
    tx_template, address_template = _EXPLORERS[net]
    try:
        safe_hash = _safe_identifier(tx_hash)
        if safe_hash is not None:
            return tx_template.format(safe_hash)
        safe_address = _safe_identifier(address)
    except ValueError:
        return None
    if safe_address is not None:
        return address_template.format(safe_address)
    return None
