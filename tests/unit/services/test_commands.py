"""The message and request-body models: the contract's wording, strictness and bounds, without any I/O."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import InvalidRequest
from services.commands import CreatePaymentRequest, OperatorDecisionBody, PaymentMessage, WithdrawalRequest


def _create(**overrides: object) -> dict[str, object]:
    return {"request_id": "r1", "user_id": "u1", "amount_usd": "10.50", "currency_code": " BTC ", **overrides}


def test_a_message_binds_positional_arguments_in_the_documented_order() -> None:
    by_position = CreatePaymentRequest.from_message(("r1", "u1", "10.5", "BTC"), {"description": "d"})
    assert by_position == CreatePaymentRequest.from_message((), _create(amount_usd="10.5", description="d"))
    assert (by_position.amount_usd, by_position.currency_code) == (Decimal("10.50"), "btc")
    assert by_position.model_dump(mode="json")["amount_usd"] == "10.50"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"amount_usd": 10}, 'amount_usd: must be a decimal string like "10.00", got int'),
        ({"amount_usd": 10.5}, "got float"),
        ({"amount_usd": "10.001"}, "more than 2 decimal places"),
        ({"amount_usd": "1" * 100}, "amount_usd: must be at most 64 characters"),
        ({"request_id": "x" * 129}, "request_id: must be at most 128 characters"),
        ({"user_id": "  "}, "user_id: must not be empty"),
        ({"user_id": "a\x00b"}, "user_id: must not contain control characters"),
        ({"currency_code": "{x}" * 40}, "is not a currency code"),
        ({"description": "d" * 501}, "description: must be at most 500 characters"),
        ({"memo": "m"}, "unexpected argument 'memo'"),
        ({"m" * 500: "m"}, "..."),
    ],
)
def test_malformed_messages_are_refused_with_field_and_reason(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        CreatePaymentRequest.from_message((), _create(**overrides))
    assert reason in str(refused.value)
    assert len(str(refused.value)) < 200, "an error never echoes a whole value"


def test_binding_errors_name_the_problem() -> None:
    with pytest.raises(InvalidRequest, match="expected at most 1 arguments, got 2"):
        PaymentMessage.from_message(("a", "b"), {})
    with pytest.raises(InvalidRequest, match="argument 'payment_id' given twice"):
        PaymentMessage.from_message(("a",), {"payment_id": "a"})
    with pytest.raises(InvalidRequest, match=r"missing required argument\(s\): payment_id"):
        PaymentMessage.from_message((), {})


def test_bodies_speak_of_fields_and_several_problems_are_reported_together() -> None:
    with pytest.raises(InvalidRequest) as refused:
        WithdrawalRequest.from_body({"request_id": 1, "extra_id": 5, "x": 1})
    text = str(refused.value)
    assert "missing required field(s): user_id, amount_usd, currency_code, wallet_address" in text
    assert "request_id: must be a string, got int" in text and "extra_id: must be a string or null, got int" in text
    assert "unexpected field 'x'" in text
    with pytest.raises(InvalidRequest, match="body must be a JSON object"):
        OperatorDecisionBody.from_body(["operator"])


def test_json_schemas_describe_the_same_rules() -> None:
    schema = CreatePaymentRequest.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["request_id", "user_id", "amount_usd", "currency_code"]
    assert schema["properties"]["amount_usd"]["type"] == "string"
    assert schema["properties"]["request_id"]["maxLength"] == 128
