"""Amounts as the gateway sends them: repeated through a JavaScript double, or too large to hold.

An IPN carries amounts as JavaScript numbers, so an 18-decimal amount we already hold exactly may come
back a unit off in its last place: that is the same amount, not late funds, and the exact value stays.
An amount no NUMERIC column of ours can hold (1e400, negative, NaN) is refused when the answer is
parsed: the IPN route answers 400, a poll is not retried, and nothing is written.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from domain.payments import Payment
from gateway.errors import GatewayProtocolError
from gateway.signature import canonical_json, sign
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.poll_status import poll_status
from services.settle_deposit import settle_deposit
from settings import IPN_PATH
from storage import payments
from tests.integration.stack import IPN_SECRET, Stack

# What arrives for a $30 ETH payment (1e-18 short of the ordered 0.008823529411764706: exact to the cent);
# a JavaScript double prints it as ...706.
EXACT = Decimal("0.008823529411764705")


def _through_a_double(amount: Decimal) -> Decimal:
    """What a JavaScript number prints for ``amount`` (the shortest text that reads back as the same double)."""
    return Decimal(repr(float(amount)))


async def _create(stack: Stack, amount: str, currency: str) -> Payment:
    request = CreatePaymentRequest(
        request_id=f"req-{uuid.uuid4().hex[:8]}",
        user_id=f"user-{uuid.uuid4().hex[:8]}",
        amount_usd=Decimal(amount),
        currency_code=currency,
    )
    return await create_payment(stack.ctx, request)


async def _ipn_body(stack: Stack, payment: Payment, **overrides: Any) -> dict[str, Any]:
    """The callback NOWPayments would send for the payment as the simulator holds it now."""
    view = await stack.sim_get(f"/sim/payments/{payment.provider_payment_id}")
    updated = datetime.fromisoformat(view["updated_at"].replace("Z", "+00:00"))
    body: dict[str, Any] = {
        "actually_paid": Decimal(view["actually_paid"]),
        "order_id": view["order_id"],
        "pay_address": view["pay_address"],
        "pay_amount": Decimal(view["pay_amount"]),
        "pay_currency": view["pay_currency"],
        "payin_hash": view["payin_hash"],
        "payment_id": int(view["payment_id"]),
        "payment_status": view["payment_status"],
        "price_amount": Decimal(view["price_amount"]),
        "price_currency": view["price_currency"],
        "updated_at": int(updated.timestamp() * 1000),
    }
    body.update(overrides)
    return body


async def _post_signed_ipn(stack: Stack, body: dict[str, Any]) -> tuple[int, Any]:
    raw = canonical_json(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "x-nowpayments-sig": sign(raw, IPN_SECRET)}
    async with stack.http.post(stack.web_url + IPN_PATH, data=raw, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def _stored(stack: Stack, payment_id: str) -> tuple[Payment, list[dict[str, Any]]]:
    async with stack.pool.acquire() as conn:
        payment = await payments.get_payment(conn, payment_id)
        events = await payments.list_events(conn, payment_id)
    assert payment is not None
    return payment, events


async def test_an_amount_repeated_through_a_javascript_double_is_the_same_amount(database_url, redis_namespace):
    assert _through_a_double(EXACT) - EXACT == Decimal("1e-18")
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, "30.00", "eth")
        await stack.sim_post(
            f"/sim/payments/{payment.provider_payment_id}/status",
            {"status": "finished", "actually_paid": str(EXACT), "send_ipn": False},
        )
        await poll_status(stack.ctx, payment.id)
        credited = (await settle_deposit(stack.ctx, payment.id)).payment
        assert credited.settled_at and credited.credit_usd == Decimal("30.00") and credited.actually_paid == EXACT
        before = await _stored(stack, payment.id)

        assert credited.pay_amount is not None
        doubles = {"actually_paid": _through_a_double(EXACT), "pay_amount": _through_a_double(credited.pay_amount)}
        body = await _ipn_body(stack, payment, **doubles)
        with capture_logs() as logs:
            status, answer = await _post_signed_ipn(stack, body)
        assert status == 200 and answer["payment_status"] == "completed"
        assert [entry for entry in logs if entry["event"] == "late_funds_on_closed_payment"] == []
        after, events = await _stored(stack, payment.id)
        assert (after.actually_paid, after.pay_amount) == (EXACT, credited.pay_amount)  # exact amounts stay
        assert after.hold_reason is None and events == before[1]
        assert after == before[0]


UNHOLDABLE = ["1e400", "123456789012345678901234", "-0.5", "NaN", "-Infinity"]


async def test_a_signed_ipn_with_an_amount_we_cannot_hold_is_refused_with_400_and_changes_nothing(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, "20.00", "btc")
        await stack.sim_post(
            f"/sim/payments/{payment.provider_payment_id}/status", {"status": "confirming", "send_ipn": False}
        )
        before = await _stored(stack, payment.id)
        for value in UNHOLDABLE:
            for field in ("actually_paid", "pay_amount"):
                status, answer = await _post_signed_ipn(stack, await _ipn_body(stack, payment, **{field: value}))
                assert status == 400, (field, value, status, answer)
                assert await _stored(stack, payment.id) == before, (field, value)
        # The genuine callback is accepted, so the refusals were about the amounts.
        status, answer = await _post_signed_ipn(stack, await _ipn_body(stack, payment))
        assert status == 200 and answer["payment_status"] == "confirming"


async def test_a_poll_answer_with_an_amount_we_cannot_hold_is_refused_and_not_retried(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, "20.00", "btc")
        too_large = "123456789012345678901234"  # 24 integer digits: more than NUMERIC(38, 18) holds
        body = {"status": "confirming", "actually_paid": too_large, "send_ipn": False}
        await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/status", body)
        before = await _stored(stack, payment.id)
        with pytest.raises(GatewayProtocolError, match="actually_paid") as refused:
            await poll_status(stack.ctx, payment.id)
        assert too_large not in str(refused.value) and len(str(refused.value)) < 200
        assert await _stored(stack, payment.id) == before

        # Through the queue: the poll actor leaves it to the scheduler, no retry and no dead letter.
        stack.start_workers()
        with capture_logs() as logs:
            stack.actors.poll_status.send(payment.id)
            await stack.wait_idle()
        deferred = [entry for entry in logs if entry["event"] == "gateway_unavailable_deferred"]
        assert len(deferred) == 1 and "actually_paid" in deferred[0]["detail"]
        client = stack.broker.client
        assert client.hlen(f"{stack.namespace}:poll-status.DQ.msgs") == 0  # no retry waiting
        assert client.zcard(f"{stack.namespace}:poll-status.XQ") == 0  # nothing dead-lettered
        assert await _stored(stack, payment.id) == before
