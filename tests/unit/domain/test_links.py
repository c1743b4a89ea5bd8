from decimal import Decimal

import pytest

from domain.errors import InvalidRequest
from domain.links import explorer_link, format_crypto_amount, payment_uri, resolve_network

BTC = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
ETH = "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"
TRX = "TN3W4H6rK2ce4vX9YnFQHwKENnHjoxb3m9"
XRP = "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh"
TX = "a1075db55d416d3ca199f55b6084e2115b9345e16c5cf302fc80e9d5fbf5d48d"


# --- amounts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0.00000100", "0.000001"),
        ("0.00000001", "0.00000001"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("1E-7", "0.0000001"),
        ("1.50", "1.5"),
        ("100", "100"),
        ("100.000", "100"),
        ("1E+3", "1000"),
        ("12345.678900", "12345.6789"),
    ],
)
def test_amount_text_is_plain(amount: str, text: str) -> None:
    assert format_crypto_amount(Decimal(amount)) == text


@pytest.mark.parametrize("bad", [Decimal("0"), Decimal("-1"), Decimal("NaN"), Decimal("Infinity"), 1.5])
def test_amount_text_refuses_nonsense(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        format_crypto_amount(bad)  # type: ignore[arg-type]


# --- payment URIs ---------------------------------------------------------------------------


def test_bitcoin_uri_tiny_amount_without_exponent() -> None:
    assert payment_uri("BTC", "btc", BTC, Decimal("0.00000100"), None) == f"bitcoin:{BTC}?amount=0.000001"


def test_bitcoin_uri_without_amount() -> None:
    assert payment_uri("btc", None, BTC, None, None) == f"bitcoin:{BTC}"


def test_litecoin_and_dogecoin() -> None:
    assert payment_uri("ltc", "ltc", "ltc1qxyz", Decimal("1.2500"), None) == "litecoin:ltc1qxyz?amount=1.25"
    assert payment_uri("DOGE", None, "DAbc", Decimal("420"), None) == "dogecoin:DAbc?amount=420"


def test_ethereum_native_amount() -> None:
    assert payment_uri("eth", "eth", ETH, Decimal("0.05"), None) == f"ethereum:{ETH}?amount=0.05"


def test_erc20_token_gets_no_amount() -> None:
    # "amount=" on an ethereum: URI would be read as ETH, never as USDT.
    assert payment_uri("usdterc20", "eth", ETH, Decimal("50"), None) == f"ethereum:{ETH}"
    assert payment_uri("USDTERC20", None, ETH, Decimal("50"), None) == f"ethereum:{ETH}"


def test_tron_native_and_trc20() -> None:
    assert payment_uri("trx", "trx", TRX, Decimal("10.000000"), None) == f"tron:{TRX}?amount=10"
    assert payment_uri("usdttrc20", "trx", TRX, Decimal("25.5"), None) == f"tron:{TRX}"
    assert payment_uri("usdttrc20", None, TRX, None, None) == f"tron:{TRX}"


def test_ripple_destination_tag() -> None:
    assert payment_uri("xrp", "xrp", XRP, Decimal("12.500000"), "123456") == f"ripple:{XRP}?amount=12.5&dt=123456"
    assert payment_uri("xrp", "xrp", XRP, None, " 7 ") == f"ripple:{XRP}?dt=7"
    assert payment_uri("xrp", "xrp", XRP, None, "") == f"ripple:{XRP}"


@pytest.mark.parametrize("tag", ["abc", "-1", "4294967296", "12 34", "١٢"])
def test_ripple_tag_must_be_a_32_bit_number(tag: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        payment_uri("xrp", "xrp", XRP, None, tag)
    assert err.value.field == "extra_id"


def test_generic_scheme_for_other_currencies() -> None:
    assert payment_uri("XMR", "xmr", "4Abc", Decimal("0.120"), None) == "xmr:4Abc?amount=0.12"
    assert payment_uri("bnbbsc", "bsc", ETH, Decimal("0.5"), None) == f"bnbbsc:{ETH}?amount=0.5"


def test_memo_is_kept_outside_xrp_and_encoded() -> None:
    uri = payment_uri("xlm", "xlm", "GABC", Decimal("5"), "hello world&x=1")
    assert uri == "xlm:GABC?amount=5&memo=hello%20world%26x%3D1"


def test_address_is_url_encoded() -> None:
    uri = payment_uri("ton", "ton", "EQ+ab/c=", None, None)
    assert uri == "ton:EQ%2Bab%2Fc%3D"
    uri = payment_uri("btc", "btc", "bc1q?amount=999", Decimal("1"), None)
    assert uri == "bitcoin:bc1q%3Famount%3D999?amount=1"


def test_scheme_prefix_in_address_is_not_doubled() -> None:
    assert payment_uri("bch", "bch", "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", None, None) == (
        "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a"
    )


def test_payment_uri_refuses_bad_input() -> None:
    with pytest.raises(InvalidRequest):
        payment_uri("btc", "btc", "   ", None, None)
    with pytest.raises(InvalidRequest):
        payment_uri("", None, BTC, None, None)
    with pytest.raises(InvalidRequest):
        payment_uri("1inch", None, "0xabc", None, None)  # a scheme must start with a letter
    with pytest.raises(InvalidRequest):
        payment_uri("btc", "btc", BTC, Decimal("0"), None)
    with pytest.raises(InvalidRequest):
        payment_uri("btc", "btc", "a" * 300, None, None)


# --- networks and explorers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "code", "expected"),
    [
        ("ERC20", "usdt", "eth"),
        ("trc20", "usdt", "trx"),
        ("Polygon", "usdc", "matic"),
        (None, "usdttrc20", "trx"),
        (None, "usdterc20", "eth"),
        (None, "usdtbsc", "bsc"),
        (None, "usdcmatic", "matic"),
        (None, "btc", "btc"),
        ("bitcoin-cash", "bch", "bch"),
        ("unknownchain", "btc", None),
        (None, "xyz", None),
    ],
)
def test_resolve_network(network: str | None, code: str, expected: str | None) -> None:
    assert resolve_network(network, code) == expected


@pytest.mark.parametrize(
    ("network", "code", "tx_url", "address_url"),
    [
        ("btc", "btc", "https://mempool.space/tx/{}", "https://mempool.space/address/{}"),
        ("eth", "eth", "https://etherscan.io/tx/{}", "https://etherscan.io/address/{}"),
        ("erc20", "usdterc20", "https://etherscan.io/tx/{}", "https://etherscan.io/address/{}"),
        ("trx", "trx", "https://tronscan.org/#/transaction/{}", "https://tronscan.org/#/address/{}"),
        (None, "usdttrc20", "https://tronscan.org/#/transaction/{}", "https://tronscan.org/#/address/{}"),
        ("ltc", "ltc", "https://litecoinspace.org/tx/{}", "https://litecoinspace.org/address/{}"),
        ("xrp", "xrp", "https://xrpscan.com/tx/{}", "https://xrpscan.com/account/{}"),
        ("bsc", "bnbbsc", "https://bscscan.com/tx/{}", "https://bscscan.com/address/{}"),
        (
            "doge",
            "doge",
            "https://blockchair.com/dogecoin/transaction/{}",
            "https://blockchair.com/dogecoin/address/{}",
        ),
        ("sol", "sol", "https://solscan.io/tx/{}", "https://solscan.io/account/{}"),
        ("matic", "maticpolygon", "https://polygonscan.com/tx/{}", "https://polygonscan.com/address/{}"),
        ("polygon", "usdcpolygon", "https://polygonscan.com/tx/{}", "https://polygonscan.com/address/{}"),
        ("ton", "ton", "https://tonviewer.com/transaction/{}", "https://tonviewer.com/{}"),
        (
            "xlm",
            "xlm",
            "https://stellar.expert/explorer/public/tx/{}",
            "https://stellar.expert/explorer/public/account/{}",
        ),
        ("arbitrum", "usdcarb", "https://arbiscan.io/tx/{}", "https://arbiscan.io/address/{}"),
        ("base", "usdcbase", "https://basescan.org/tx/{}", "https://basescan.org/address/{}"),
    ],
)
def test_explorer_links_per_network(network: str | None, code: str, tx_url: str, address_url: str) -> None:
    assert explorer_link(network, code, tx_hash=TX) == tx_url.format(TX)
    assert explorer_link(network, code, address="Addr_1-x") == address_url.format("Addr_1-x")
    # The hash wins over the address.
    assert explorer_link(network, code, tx_hash=TX, address="Addr") == tx_url.format(TX)


def test_bch_cash_address_with_colon() -> None:
    address = "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a"
    assert explorer_link("bch", "bch", address=address) == (f"https://blockchair.com/bitcoin-cash/address/{address}")


def test_unknown_network_or_nothing_to_show() -> None:
    assert explorer_link("madeupchain", "xyz", tx_hash=TX) is None
    assert explorer_link(None, "xyz", tx_hash=TX) is None
    assert explorer_link("btc", "btc") is None
    assert explorer_link("btc", "btc", tx_hash="", address="  ") is None


def test_empty_hash_falls_back_to_address() -> None:
    assert explorer_link("btc", "btc", tx_hash="", address=BTC) == f"https://mempool.space/address/{BTC}"


@pytest.mark.parametrize(
    "unsafe",
    [
        "abc/../../evil",
        "abc?x=1",
        "abc#frag",
        "abc def",
        "<script>",
        "javascript:alert(1)'",
        "abc%2F",
        "abc\ndef",
        "ａｂｃ",  # fullwidth letters are not ASCII
        "x" * 201,
        "abc.def",
    ],
)
def test_unsafe_input_gives_no_link(unsafe: str) -> None:
    assert explorer_link("eth", "eth", tx_hash=unsafe) is None
    assert explorer_link("eth", "eth", address=unsafe) is None
    # A bad hash does not silently turn into an address link.
    assert explorer_link("eth", "eth", tx_hash=unsafe, address=ETH) is None


def test_surrounding_whitespace_is_trimmed() -> None:
    assert explorer_link("eth", "eth", tx_hash=f" {TX}\n") == f"https://etherscan.io/tx/{TX}"
