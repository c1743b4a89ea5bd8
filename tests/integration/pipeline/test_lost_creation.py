"""A create-payment message lost after the payment was recorded (found by the soak: its retry could not be
enqueued while Redis was away) is resumed by the next poll: the payment is opened at the gateway once."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from gateway.errors import GatewayTransientError
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.poll_status import poll_status
from tests.integration.stack import Stack


async def test_a_recorded_payment_whose_creation_message_was_lost_is_created_by_the_next_poll(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        request = CreatePaymentRequest(request_id=f"req-{uuid.uuid4().hex[:8]}", user_id="u-lost",
                                       amount_usd=Decimal("25.00"), currency_code="btc")  # fmt: skip
        await stack.sim_post("/sim/faults", {"status": 503, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)  # ... and its retry is never enqueued
        recorded = await stack.payment_for_request(request.request_id, created=False)
        assert recorded.provider_payment_id is None and recorded.create_claimed_until is None
        assert recorded.next_poll_at is not None  # the scheduler will come back to it

        await poll_status(stack.ctx, recorded.id)
        await poll_status(stack.ctx, recorded.id)  # a second poll finds it created: nothing more

        created = await stack.payment(recorded.id)
        assert created.provider_payment_id is not None and created.pay_address
        listed = await stack.sim_get(f"/sim/payments?order_id={recorded.id}")
        assert [p["payment_id"] for p in listed["payments"]] == [created.provider_payment_id]


async def test_a_poll_leaves_a_creation_in_progress_to_its_lease_holder(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        request = CreatePaymentRequest(request_id=f"req-{uuid.uuid4().hex[:8]}", user_id="u-lease",
                                       amount_usd=Decimal("25.00"), currency_code="btc")  # fmt: skip
        await stack.sim_post("/sim/faults", {"status": 503, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)
        recorded = await stack.payment_for_request(request.request_id, created=False)
        async with stack.pool.acquire() as conn:  # another worker holds the creation lease now
            await conn.execute(
                "UPDATE payments SET create_claimed_until = now() + interval '1 minute' WHERE id = $1", recorded.id
            )
        await poll_status(stack.ctx, recorded.id)
        assert (await stack.payment(recorded.id)).provider_payment_id is None
        assert (await stack.sim_get(f"/sim/payments?order_id={recorded.id}"))["payments"] == []
