"""create-payment meeting a coin the catalogue lacks refreshes the catalogue once, boundedly, before refusing."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from domain.errors import InvalidRequest
from gateway.errors import GatewayTransientError
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from storage import currencies
from tests.integration.stack import Stack


def _request(currency_code: str) -> CreatePaymentRequest:
    return CreatePaymentRequest(
        request_id=f"req-{uuid.uuid4().hex[:8]}",
        user_id="user-1",
        amount_usd=Decimal("25.00"),
        currency_code=currency_code,
        description="",
    )


async def _catalogue_fetches(stack: Stack) -> int:
    return len((await stack.sim_get("/sim/requests?path_prefix=/v1/full-currencies"))["requests"])


async def _forget_eth_and_age_the_catalogue(stack: Stack) -> None:
    """As if eth had been switched on at the gateway after our last sync, an hour ago."""
    async with stack.pool.acquire() as conn:
        await conn.execute("DELETE FROM currencies WHERE code = 'eth'")
        await conn.execute("UPDATE currencies SET synced_at = now() - interval '1 hour'")


async def test_a_coin_missing_from_a_stale_catalogue_is_fetched_and_the_payment_created(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        await _forget_eth_and_age_the_catalogue(stack)
        before = await _catalogue_fetches(stack)

        payment = await create_payment(stack.ctx, _request("eth"))

        assert payment.provider_payment_id and payment.currency_code == "eth"
        assert await _catalogue_fetches(stack) == before + 1
        async with stack.pool.acquire() as conn:
            eth = await currencies.get_currency(conn, "eth")
        assert eth is not None and eth.active


async def test_a_flood_for_a_coin_that_does_not_exist_refreshes_once_and_refuses_each(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        await _forget_eth_and_age_the_catalogue(stack)
        before = await _catalogue_fetches(stack)

        results = await asyncio.gather(
            *(create_payment(stack.ctx, _request("nosuchcoin")) for _ in range(20)), return_exceptions=True
        )

        assert all(isinstance(r, InvalidRequest) and "unknown currency 'nosuchcoin'" in str(r) for r in results)
        assert await _catalogue_fetches(stack) == before + 1, "one refresh for the whole flood"
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments") == 0
            assert await currencies.get_currency(conn, "eth") is not None, "the one refresh did land"


async def test_a_fresh_catalogue_is_not_refreshed_for_an_unknown_coin(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:  # synced at start
        before = await _catalogue_fetches(stack)
        with pytest.raises(InvalidRequest):
            await create_payment(stack.ctx, _request("nosuchcoin"))
        assert await _catalogue_fetches(stack) == before


async def test_a_failed_refresh_is_retried_later_not_refused(database_url, redis_namespace):
    """The gateway is down: the message is retried (transient), never dead-lettered as an unknown coin."""
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        await _forget_eth_and_age_the_catalogue(stack)
        await stack.sim_post("/sim/faults", {"status": 503, "count": 100, "path_prefix": "/v1/full-currencies"})
        before = await _catalogue_fetches(stack)
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, _request("eth"))
        after_first = await _catalogue_fetches(stack)
        assert after_first > before
        # Again inside the refresh interval: still retried later, and the gateway is not asked again.
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, _request("eth"))
        assert await _catalogue_fetches(stack) == after_first
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments") == 0
