"""GatewayPayment / GatewayCurrency / MinAmount parsing, including NOWPayments' type drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.errors import GatewayProtocolError
from gateway.models import GatewayCurrency, GatewayPayment, GatewayPayout, MinAmount, parse_timestamp


def wire(text: str) -> dict:
    return json.loads(text, parse_float=Decimal)


BASE = {
    "payment_id": "5077125051",
    "payment_status": "waiting",
    "pay_address": "bc1qexample",
    "price_amount": Decimal("25.50"),
    "price_currency": "USD",
    "pay_amount": Decimal("0.00026289"),
    "pay_currency": "BTC",
    "order_id": "PAY_1",
    "created_at": "2025-01-14T12:34:56.789Z",
    "updated_at": "2025-01-14T12:35:00.000Z",
    "purchase_id": "4944856743",
}


def test_drift_variants_parse_to_the_same_payment() -> None:
    as_strings = GatewayPayment.from_wire(BASE)
    as_numbers = GatewayPayment.from_wire(
        wire(
            '{"payment_id": 5077125051, "payment_status": "waiting", "pay_address": "bc1qexample",'
            ' "price_amount": 25.5, "price_currency": "usd", "pay_amount": "0.00026289",'
            ' "pay_currency": "btc", "order_id": "PAY_1", "created_at": "2025-01-14T12:34:56.789Z",'
            ' "updated_at": 1736858100000, "purchase_id": 4944856743}'
        )
    )
    assert as_strings == as_numbers
    assert as_numbers.payment_id == "5077125051"
    assert as_numbers.purchase_id == "4944856743"
    assert as_numbers.pay_amount == Decimal("0.00026289")
    assert isinstance(as_numbers.price_amount, Decimal)
    assert as_numbers.price_currency == "usd" and as_numbers.pay_currency == "btc"
    assert as_numbers.updated_at == datetime(2025, 1, 14, 12, 35, tzinfo=UTC)
    assert as_numbers.created_at == datetime(2025, 1, 14, 12, 34, 56, 789000, tzinfo=UTC)
    assert as_numbers.status == "waiting"
    assert as_numbers.actually_paid is None and as_numbers.payin_hash is None


def test_updated_at_as_numeric_string_and_naive_iso() -> None:
    assert parse_timestamp("1736858100000") == datetime(2025, 1, 14, 12, 35, tzinfo=UTC)
    assert parse_timestamp("2025-01-14T12:35:00") == datetime(2025, 1, 14, 12, 35, tzinfo=UTC)
    assert parse_timestamp("2025-01-14T14:35:00+02:00") == datetime(2025, 1, 14, 12, 35, tzinfo=UTC)
    assert parse_timestamp(None) is None and parse_timestamp("") is None
    with pytest.raises(GatewayProtocolError):
        parse_timestamp("yesterday")


def test_raw_kept_but_not_compared_or_shown() -> None:
    payment = GatewayPayment.from_wire({**BASE, "zzmarker": "x"})
    assert payment.raw["zzmarker"] == "x"
    assert "raw=" not in repr(payment) and "zzmarker" not in repr(payment)
    assert payment == GatewayPayment.from_wire(BASE)


def test_minimal_body_and_numeric_extra_id() -> None:
    payment = GatewayPayment.from_wire({"payment_id": 1, "payment_status": "finished", "payin_extra_id": 12345})
    assert payment.payment_id == "1" and payment.payin_extra_id == "12345"
    assert payment.expiration_estimate_date is None


@pytest.mark.parametrize(
    "body",
    [
        {"payment_status": "waiting"},
        {"payment_id": "", "payment_status": "waiting"},
        {"payment_id": 1},
        {"payment_id": 1, "payment_status": ""},
        {"payment_id": True, "payment_status": "waiting"},
        {"payment_id": 1, "payment_status": "waiting", "pay_amount": "abc"},
        {"payment_id": 1, "payment_status": "waiting", "pay_amount": 0.1},
        {"payment_id": 1, "payment_status": "waiting", "updated_at": "soon"},
    ],
)
def test_unusable_bodies_are_protocol_errors(body: dict) -> None:
    with pytest.raises(GatewayProtocolError):
        GatewayPayment.from_wire(body)


def test_not_a_mapping_is_protocol_error() -> None:
    with pytest.raises(GatewayProtocolError):
        GatewayPayment.from_wire(["payment_id"])  # type: ignore[arg-type]


def test_currency_from_wire() -> None:
    currency = GatewayCurrency.from_wire(
        wire(
            '{"id": 6, "code": "XRP", "name": "Ripple", "enable": true, "wallet_regex": "^r[0-9a-zA-Z]{24,34}$",'
            ' "extra_id_exists": true, "extra_id_regex": "^([0-9]{1,10})$", "network": "XRP",'
            ' "ticker": "xrp", "precision": 6}'
        )
    )
    assert currency == GatewayCurrency(
        code="xrp",
        name="Ripple",
        network="xrp",
        ticker="xrp",
        precision=6,
        wallet_regex="^r[0-9a-zA-Z]{24,34}$",
        extra_id_exists=True,
        extra_id_regex="^([0-9]{1,10})$",
        enabled=True,
    )
    disabled = GatewayCurrency.from_wire({"code": "DOGE", "enable": False, "precision": "8"})
    assert disabled.enabled is False and disabled.precision == 8 and disabled.extra_id_exists is False


def test_min_amount_from_wire() -> None:
    parsed = MinAmount.from_wire(
        wire('{"currency_from": "btc", "currency_to": "btc", "min_amount": 0.00002062, "fiat_equivalent": 2.0}')
    )
    assert parsed == MinAmount("btc", "btc", Decimal("0.00002062"), Decimal("2.0"))
    with pytest.raises(GatewayProtocolError):
        MinAmount.from_wire({"currency_from": "btc"})


PAYOUT = {
    "id": "5000000713",
    "address": "TEkcQ5kRcUPMPmYxpDYAhV2ZiTWhxAPxNF",
    "currency": "usdttrc20",
    "amount": "12.5",
    "batch_withdrawal_id": "5000000000",
    "status": "WAITING",
    "extra_id": None,
    "hash": None,
    "error": None,
    "unique_external_id": "WD_1",
    "created_at": "2025-01-14T12:34:56.789Z",
    "updated_at": None,
}


def test_payout_drift_variants_parse_to_the_same_payout() -> None:
    as_strings = GatewayPayout.from_wire(PAYOUT)
    as_numbers = GatewayPayout.from_wire(
        wire(
            '{"id": 5000000713, "address": "TEkcQ5kRcUPMPmYxpDYAhV2ZiTWhxAPxNF", "currency": "USDTTRC20",'
            ' "amount": 12.50, "batchWithdrawalId": 5000000000, "status": "waiting",'
            ' "unique_external_id": "WD_1", "createdAt": 1736858096789}'
        )
    )
    assert as_strings == as_numbers
    assert as_strings.payout_id == "5000000713" and as_strings.batch_id == "5000000000"
    assert as_strings.amount == Decimal("12.5") and as_strings.status == "WAITING"
    assert as_strings.created_at == datetime(2025, 1, 14, 12, 34, 56, 789000, tzinfo=UTC)
    assert as_strings.updated_at is None and as_strings.raw["currency"] == "usdttrc20"
    assert "raw" not in repr(as_strings)


def test_payout_containers() -> None:
    other = {**PAYOUT, "id": "5000000714", "unique_external_id": "WD_2"}
    batch = {"id": "5000000000", "withdrawals": [PAYOUT, other]}
    without_batch_ids = {"id": "42", "withdrawals": [{k: v for k, v in PAYOUT.items() if k != "batch_withdrawal_id"}]}
    assert [p.payout_id for p in GatewayPayout.many_from_wire(batch)] == ["5000000713", "5000000714"]
    assert [p.payout_id for p in GatewayPayout.many_from_wire([PAYOUT, other])] == ["5000000713", "5000000714"]
    assert [p.payout_id for p in GatewayPayout.many_from_wire({"payouts": [batch]})] == ["5000000713", "5000000714"]
    assert [p.payout_id for p in GatewayPayout.many_from_wire({"data": [other]})] == ["5000000714"]
    assert GatewayPayout.many_from_wire(PAYOUT) == [GatewayPayout.from_wire(PAYOUT)]
    assert GatewayPayout.many_from_wire(without_batch_ids)[0].batch_id == "42"
    assert GatewayPayout.many_from_wire({"payouts": []}) == []
    with pytest.raises(GatewayProtocolError):
        GatewayPayout.many_from_wire({"message": "OK"})
    with pytest.raises(GatewayProtocolError):
        GatewayPayout.many_from_wire([1, 2])


@pytest.mark.parametrize(
    "change",
    [{"id": None}, {"status": ""}, {"amount": None}, {"amount": "abc"}, {"amount": True}, {"created_at": "soon"}],
)
def test_payout_without_what_we_depend_on_is_refused(change: dict) -> None:
    with pytest.raises(GatewayProtocolError):
        GatewayPayout.from_wire({**PAYOUT, **change})


def test_payout_refuses_float_amounts() -> None:
    with pytest.raises((GatewayProtocolError, TypeError)):
        GatewayPayout.from_wire({**PAYOUT, "amount": 12.5})


@pytest.mark.parametrize("field", ["actually_paid", "pay_amount", "price_amount", "outcome_amount"])
@pytest.mark.parametrize(
    "value",
    ["1e400", wire('{"v": 1e400}')["v"], "-0.5", -1, "NaN", "Infinity", "100000000000000000000", "9" * 5000],
)
def test_amounts_no_numeric_column_holds_are_refused_naming_the_field_only(field: str, value: object) -> None:
    with pytest.raises(GatewayProtocolError, match=f"'{field}'") as refused:
        GatewayPayment.from_wire({**BASE, field: value})
    assert len(str(refused.value)) < 100 and "99999" not in str(refused.value)


def test_the_largest_holdable_amount_and_more_places_than_we_keep_are_accepted() -> None:
    largest = "99999999999999999999.999999999999999999"
    parsed = GatewayPayment.from_wire({**BASE, "actually_paid": largest, "pay_amount": wire('{"v": 1.5e-7}')["v"]})
    assert parsed.actually_paid == Decimal(largest) and parsed.pay_amount == Decimal("1.5e-7")
    with pytest.raises(GatewayProtocolError, match="'amount'"):
        GatewayPayout.from_wire({"id": "1", "status": "WAITING", "amount": "-2"})
