"""Reordered news of an over-paid deposit (issue 9), replayed through the real IPN route.

The simulator takes a $56.78 BTC payment through the "over" steps (1.5 × pay_amount arrives at
confirming), and the signed callbacks it would send are delivered out of order: FINISHED first (credited
with what arrived), then the held-back CONFIRMED. That older snapshot changes nothing and holds nothing.
A callback of an earlier stage that is newer and reports more funds is a real top-up: held for an operator.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from domain.payments import Payment, PaymentStatus, received_value_usd
from gateway.signature import canonical_json, sign
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.settle_deposit import settle_deposit
from settings import IPN_PATH
from storage import payments
from tests.integration.stack import IPN_SECRET, Stack

SATOSHI = Decimal("0.00000001")


async def _signed_ipn(stack: Stack, body: dict[str, Any]) -> tuple[int, Any]:
    raw = canonical_json(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "x-nowpayments-sig": sign(raw, IPN_SECRET)}
    async with stack.http.post(stack.web_url + IPN_PATH, data=raw, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def _step(stack: Stack, payment: Payment, status: str, **extra: str) -> dict[str, Any]:
    """Move the simulator's payment and answer the callback it would send for that snapshot."""
    body = {"status": status, "send_ipn": False, **extra}
    await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/status", body)
    view = await stack.sim_get(f"/sim/payments/{payment.provider_payment_id}")
    updated = datetime.fromisoformat(view["updated_at"].replace("Z", "+00:00"))
    return {
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


async def _state(stack: Stack, payment_id: str) -> tuple[Payment, int, list[dict[str, Any]]]:
    async with stack.pool.acquire() as conn:
        payment = await payments.get_payment(conn, payment_id)
        credits = await conn.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE idempotency_key LIKE $1", f"deposit:{payment_id}%"
        )
        events = await payments.list_events(conn, payment_id)
    assert payment is not None
    return payment, credits, events


async def test_confirmed_delivered_after_finished_changes_nothing_and_a_newer_top_up_is_held(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        request = CreatePaymentRequest(
            request_id=f"req-{uuid.uuid4().hex[:8]}", user_id=f"user-{uuid.uuid4().hex[:8]}",
            amount_usd=Decimal("56.78"), currency_code="btc",
        )  # fmt: skip
        payment = await create_payment(stack.ctx, request)
        assert payment.pay_amount is not None
        over = (payment.pay_amount * Decimal("1.5")).quantize(SATOSHI, rounding=ROUND_DOWN)
        confirming = await _step(stack, payment, "confirming", actually_paid=str(over))
        confirmed = await _step(stack, payment, "confirmed")
        finished = await _step(stack, payment, "finished")
        assert confirming["actually_paid"] == confirmed["actually_paid"] == finished["actually_paid"] == over
        assert confirming["updated_at"] < confirmed["updated_at"] < finished["updated_at"]

        # Delivered out of order: FINISHED first, credited with what arrived.
        status, answer = await _signed_ipn(stack, finished)
        assert (status, answer["payment_status"]) == (200, "completed")
        credited = (await settle_deposit(stack.ctx, payment.id)).payment
        worth = received_value_usd(price_amount=Decimal("56.78"), pay_amount=payment.pay_amount, actually_paid=over)
        assert worth > Decimal("85.00") and credited.credit_usd == worth and credited.hold_reason is None
        before = await _state(stack, payment.id)

        # The held-back callbacks arrive last: older snapshots, nothing changes, nothing is held.
        for late in (confirmed, confirming):
            status, answer = await _signed_ipn(stack, late)
            assert (status, answer["payment_status"]) == (200, "completed")
        assert await _state(stack, payment.id) == before

        # An earlier-stage callback that is newer and reports more funds is a real top-up: held, not dropped.
        top_up = {**confirmed, "actually_paid": over * 2, "updated_at": finished["updated_at"] + 1000}
        status, answer = await _signed_ipn(stack, top_up)
        assert (status, answer["payment_status"]) == (200, "completed")
        held, credits, _ = await _state(stack, payment.id)
        assert held.status is PaymentStatus.COMPLETED and held.gateway_status == "finished"
        assert held.actually_paid == over * 2 and credits == 1 and held.credit_usd == worth
        assert held.hold_reason is not None and held.hold_reason.startswith("funds after settlement")
