"""Gateway orphans: a second gateway payment for one of our orders is found, recorded once, and its
funds are never credited (services/find_gateway_orphans.py, `/metrics`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.find_gateway_orphans import find_gateway_orphans
from tests.integration.metrics_text import metric_samples
from tests.integration.stack import Stack


def _window() -> dict:
    today = datetime.now(UTC).date()
    return {"date_from": today - timedelta(days=1), "date_to": today + timedelta(days=1)}


async def test_a_paid_second_gateway_payment_is_recorded_once_held_and_never_credited(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=True, payouts=True) as stack:
        user, request_id = f"user-{uuid.uuid4().hex[:8]}", f"req-{uuid.uuid4().hex[:8]}"
        stack.actors.create_payment.send(request_id=request_id, user_id=user, amount_usd="25.00", currency_code="btc")
        payment = await stack.payment_for_request(request_id)
        # What a worker that died after the gateway's answer leaves behind: a second gateway payment
        # for the same order, made here directly through the simulator's API, and paid by the customer.
        orphan = await stack.gateway.create_payment(
            price_amount=Decimal("25.00"), price_currency="usd", pay_currency="btc", order_id=payment.id,
            ipn_callback_url=f"{stack.web_url}/ipn/nowpayments",
        )  # fmt: skip
        await stack.gateway.create_payment(
            price_amount=Decimal("5.00"), price_currency="usd", pay_currency="btc", order_id="not-one-of-ours"
        )
        await stack.sim_post(f"/sim/payments/{orphan.payment_id}/play", {"scenario": "paid"})
        await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid"})
        await stack.wait_settled(payment.id)

        first = await find_gateway_orphans(stack.pool, stack.gateway, **_window())
        again = await find_gateway_orphans(stack.pool, stack.gateway, **_window())

        assert [(o.provider_payment_id, o.payment_id, o.gateway_status, o.funds_received) for o in first] == [
            (orphan.payment_id, payment.id, "finished", True)
        ]
        assert [o.provider_payment_id for o in again] == [orphan.payment_id]
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM gateway_orphans") == 1
            deposits = await conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE type = 'deposit'")
        await stack.wait_idle()
        assert deposits == 1
        assert await stack.balance(user) == Decimal("25.00")  # the orphan's 25.00 is held, not credited
        async with stack.http.get(stack.web_url + "/metrics") as response:
            samples = metric_samples(await response.text())
        assert samples['gateway_orphans{funds="received"}'] == "1"
        assert samples['gateway_orphans{funds="none"}'] == "0"


async def test_no_orphans_when_every_gateway_payment_is_the_one_we_stored(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True) as stack:
        for n in range(3):
            stack.actors.create_payment.send(
                request_id=f"req-{n}-{uuid.uuid4().hex[:6]}", user_id="u", amount_usd="10.00", currency_code="btc"
            )
        await stack.wait_idle()
        assert await find_gateway_orphans(stack.pool, stack.gateway, **_window()) == []
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments WHERE provider_payment_id IS NOT NULL") == 3
