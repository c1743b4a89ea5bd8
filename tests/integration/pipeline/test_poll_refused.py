"""A poll the gateway refuses (e.g. it no longer knows the payment) backs off instead of failing the message."""

from __future__ import annotations

import uuid
from decimal import Decimal

from domain.payments import PaymentUpdate
from services.poll_status import poll_status
from storage import payments
from tests.integration.stack import Stack


async def test_poll_of_a_payment_unknown_to_the_gateway_backs_off(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        async with stack.pool.acquire() as conn:
            await payments.insert_payment(
                conn,
                payment_id="PAY_20260101000000_lost0001",
                request_id=f"req-{uuid.uuid4().hex[:8]}",
                fingerprint="x",
                user_id="u-lost",
                amount_usd=Decimal("10.00"),
                currency_code="btc",
                description="",
            )
            before = await payments.update_payment(
                conn, "PAY_20260101000000_lost0001", PaymentUpdate(provider_payment_id="999999999")
            )
        assert await poll_status(stack.ctx, before.id) is None
        after = await stack.payment(before.id)
        assert after.status == before.status and after.poll_attempts == 1
        assert after.next_poll_at is not None
        async with stack.pool.acquire() as conn:
            assert await payments.list_events(conn, before.id) == []
