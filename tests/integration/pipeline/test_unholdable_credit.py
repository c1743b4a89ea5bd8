"""A received value we cannot credit: ``actually_paid`` absurdly larger than ``pay_amount``.

Each amount fits NUMERIC(38, 18), so it passes parsing; its USD value (``actually_paid / pay_amount ×
price``) is beyond the domain's ceiling (MAX_CREDIT_USD), and the largest is beyond what NUMERIC(20, 2)
holds. Through the IPN route, a poll, the single and the group settlement the outcome is the same:
the payment is held for an operator with a reason naming the ceiling, nothing is credited, no 500, no retry.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from domain.errors import InvalidRequest
from domain.payments import BEYOND_CEILING, MAX_CREDIT_USD, Payment, PaymentStatus, PaymentUpdate
from gateway.signature import canonical_json, sign
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.poll_status import poll_status
from services.release_deposit import release_held_deposit
from services.settle_batch import settle_group
from services.settle_deposit import settle_deposit
from settings import IPN_PATH
from storage import payments
from tests.integration.stack import IPN_SECRET, Stack

# Factors of pay_amount: 10^14 makes a $100 deposit worth 10^16 USD (storable, beyond the ceiling);
# 10^18 makes it 10^20 USD (more than NUMERIC(20, 2) holds).
FACTORS = [10**14, 10**18]


async def _create(stack: Stack, amount: str = "100.00") -> Payment:
    request = CreatePaymentRequest(
        request_id=f"req-{uuid.uuid4().hex[:8]}",
        user_id=f"user-{uuid.uuid4().hex[:8]}",
        amount_usd=Decimal(amount),
        currency_code="btc",
    )
    payment = await create_payment(stack.ctx, request)
    assert payment.pay_amount is not None
    return payment


def _absurd(payment: Payment, factor: int) -> Decimal:
    assert payment.pay_amount is not None
    paid = payment.pay_amount * factor
    assert paid < Decimal(10) ** 20  # fits NUMERIC(38, 18)
    return paid


async def _post_signed_ipn(stack: Stack, body: dict[str, Any]) -> tuple[int, Any]:
    raw = canonical_json(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "x-nowpayments-sig": sign(raw, IPN_SECRET)}
    async with stack.http.post(stack.web_url + IPN_PATH, data=raw, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def _finished_body(stack: Stack, payment: Payment, paid: Decimal) -> dict[str, Any]:
    view = await stack.sim_get(f"/sim/payments/{payment.provider_payment_id}")
    updated = datetime.fromisoformat(view["updated_at"].replace("Z", "+00:00"))
    return {
        "actually_paid": paid,
        "order_id": view["order_id"],
        "pay_address": view["pay_address"],
        "pay_amount": Decimal(view["pay_amount"]),
        "pay_currency": view["pay_currency"],
        "payment_id": int(view["payment_id"]),
        "payment_status": "finished",
        "price_amount": Decimal(view["price_amount"]),
        "price_currency": view["price_currency"],
        "updated_at": int(updated.timestamp() * 1000) + 1000,
    }


async def _credits(stack: Stack, payment_id: str) -> int:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE idempotency_key LIKE $1", f"deposit:{payment_id}%"
        )


async def _stored(stack: Stack, payment_id: str) -> Payment:
    async with stack.pool.acquire() as conn:
        payment = await payments.get_payment(conn, payment_id)
    assert payment is not None
    return payment


def _assert_held(payment: Payment, paid: Decimal) -> None:
    assert payment.status is PaymentStatus.COMPLETED and payment.actually_paid == paid
    assert payment.hold_reason is not None and payment.hold_reason.startswith(BEYOND_CEILING)
    assert str(MAX_CREDIT_USD) in payment.hold_reason
    assert payment.settled_at is None and payment.credit_usd in (None, Decimal(0))


@pytest.mark.parametrize("factor", FACTORS)
async def test_an_ipn_reporting_an_absurd_amount_holds_the_payment(database_url, redis_namespace, factor):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack)
        paid = _absurd(payment, factor)
        status, answer = await _post_signed_ipn(stack, await _finished_body(stack, payment, paid))
        assert status == 200, (status, answer)
        assert answer["payment_status"] == "completed"
        _assert_held(await _stored(stack, payment.id), paid)
        assert await _credits(stack, payment.id) == 0


@pytest.mark.parametrize("factor", FACTORS)
async def test_a_poll_reporting_an_absurd_amount_holds_the_payment(database_url, redis_namespace, factor):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack)
        paid = _absurd(payment, factor)
        body = {"status": "finished", "actually_paid": str(paid), "send_ipn": False}
        await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/status", body)
        await poll_status(stack.ctx, payment.id)
        _assert_held(await _stored(stack, payment.id), paid)
        assert await _credits(stack, payment.id) == 0


async def _completed_unheld(stack: Stack, paid_factor: int) -> tuple[Payment, Decimal]:
    """A payment stored as completed with the absurd amount and no hold (as rows written before the fix)."""
    payment = await _create(stack)
    paid = _absurd(payment, paid_factor)
    async with stack.pool.acquire() as conn:
        update = PaymentUpdate(status=PaymentStatus.COMPLETED, gateway_status="finished", actually_paid=paid)
        await payments.update_payment(conn, payment.id, update)
    return payment, paid


@pytest.mark.parametrize("factor", FACTORS)
async def test_settlement_alone_or_in_a_group_credits_nothing_beyond_the_ceiling(database_url, redis_namespace, factor):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        alone, _ = await _completed_unheld(stack, factor)
        result = await settle_deposit(stack.ctx, alone.id)
        assert result.credited is False and result.payment.settled_at is None
        assert await _credits(stack, alone.id) == 0

        grouped, _ = await _completed_unheld(stack, factor)
        fine = await _create(stack, "10.00")
        async with stack.pool.acquire() as conn:
            update = PaymentUpdate(status=PaymentStatus.COMPLETED, gateway_status="finished")
            await payments.update_payment(conn, fine.id, update)
        outcome = await settle_group(stack.ctx, [grouped.id, fine.id])
        assert outcome.left == frozenset() and outcome.credited == 1
        assert await _credits(stack, grouped.id) == 0 and await _credits(stack, fine.id) == 1
        assert (await _stored(stack, grouped.id)).settled_at is None


async def test_an_operator_release_beyond_the_ceiling_is_refused_and_a_named_credit_is_made(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack)
        paid = _absurd(payment, FACTORS[-1])
        status, _ = await _post_signed_ipn(stack, await _finished_body(stack, payment, paid))
        assert status == 200
        with pytest.raises(InvalidRequest, match="never made"):
            await release_held_deposit(stack.pool, payment.id, operator="ops", note="check")
        assert await _credits(stack, payment.id) == 0
        released = await release_held_deposit(
            stack.pool, payment.id, operator="ops", note="the order", credit_usd=Decimal("100.00")
        )
        assert released.credit_usd == Decimal("100.00") and released.hold_reason is None
        assert await _credits(stack, payment.id) == 1
