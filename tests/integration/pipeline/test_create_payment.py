"""Stage 1, create-payment, called directly through ``stack.ctx`` against the simulator and real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from domain.errors import InvalidRequest
from domain.payments import Payment
from gateway.errors import GatewayTransientError
from services.commands import CreatePaymentRequest
from services.create_payment import CreationInProgress, create_payment
from services.sync_currencies import sync_currencies
from storage import currencies, payments
from tests.integration.stack import Stack


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _request(**fields: object) -> CreatePaymentRequest:
    values: dict[str, object] = {
        "request_id": _ref("req"),
        "user_id": "user-1",
        "amount_usd": Decimal("25.00"),
        "currency_code": "btc",
        "description": "top-up",
    }
    values.update(fields)
    return CreatePaymentRequest(**values)  # type: ignore[arg-type]


async def _gateway_creations(stack: Stack) -> int:
    answer = await stack.sim_get("/sim/requests?path_prefix=/v1/payment")
    return sum(1 for entry in answer["requests"] if entry["method"] == "POST")


async def _gateway_payments_for(stack: Stack, payment_id: str) -> int:
    return (await stack.sim_get(f"/sim/payments?order_id={payment_id}"))["count"]


async def _stored(stack: Stack) -> tuple[int, int]:
    async with stack.pool.acquire() as conn:
        return (
            await conn.fetchval("SELECT count(*) FROM payments"),
            await conn.fetchval("SELECT count(*) FROM payment_events"),
        )


async def _refused(stack: Stack, request: CreatePaymentRequest, field: str) -> InvalidRequest:
    before, calls = await _stored(stack), await _gateway_creations(stack)
    with pytest.raises(InvalidRequest) as refused:
        await create_payment(stack.ctx, request)
    assert refused.value.field == field, refused.value
    assert await _stored(stack) == before, "a refused request wrote something"
    assert await _gateway_creations(stack) == calls, "a refused request reached the gateway"
    return refused.value


async def test_replay_returns_the_same_payment_and_calls_the_gateway_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        request = _request()
        first = await create_payment(stack.ctx, request)
        assert first.provider_payment_id and first.pay_address and first.pay_amount and first.expires_at
        assert first.next_poll_at is not None and first.create_claimed_until is None
        for _ in range(3):
            again = await create_payment(stack.ctx, request)
            assert again == first
        # The amount is compared to the cent: 25 and 25.00 are the same request.
        assert (
            await create_payment(stack.ctx, _request(request_id=request.request_id, amount_usd=Decimal(25)))
        ) == first
        assert await _gateway_creations(stack) == 1
        assert await _gateway_payments_for(stack, first.id) == 1
        assert await _stored(stack) == (1, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"amount_usd": Decimal("25.01")},
        {"currency_code": "eth"},
        {"user_id": "user-2"},
        {"description": "something else"},
    ],
    ids=["amount", "currency", "user", "description"],
)
async def test_replay_with_different_arguments_is_refused(database_url, redis_namespace, change):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        request = _request()
        first = await create_payment(stack.ctx, request)
        error = await _refused(stack, _request(request_id=request.request_id, **change), "request_id")
        assert first.id in str(error)
        async with stack.pool.acquire() as conn:
            assert await payments.get_payment(conn, first.id) == first


async def test_unknown_and_unavailable_currencies_are_refused_without_writing(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        await _refused(stack, _request(currency_code="nosuchcoin"), "currency_code")
        await _refused(stack, _request(currency_code="doge"), "currency_code")  # listed, disabled at the gateway
        assert await _stored(stack) == (0, 0)


async def test_operator_deactivation_refuses_and_survives_a_resync(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        async with stack.pool.acquire() as conn:
            assert await currencies.set_operator_active(conn, "btc", False)
        await _refused(stack, _request(currency_code="btc"), "currency_code")

        synced = await sync_currencies(stack.pool, stack.gateway)
        assert "btc" in {c.code for c in synced}
        async with stack.pool.acquire() as conn:
            btc = await currencies.get_currency(conn, "btc")
        assert btc is not None and btc.gateway_enabled and not btc.operator_active and not btc.active
        await _refused(stack, _request(currency_code="btc"), "currency_code")
        assert await _stored(stack) == (0, 0)

        # Other coins are unaffected; reactivating brings btc back.
        assert (await create_payment(stack.ctx, _request(currency_code="eth"))).provider_payment_id
        async with stack.pool.acquire() as conn:
            await currencies.set_operator_active(conn, "btc", True)
        assert (await create_payment(stack.ctx, _request(currency_code="btc"))).provider_payment_id


async def test_amount_limits(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False, payments_max_deposit_usd="500.00") as stack:
        # The coin's gateway minimum (btc: 2.00, stored by the currency sync) ...
        error = await _refused(stack, _request(currency_code="btc", amount_usd=Decimal("1.99")), "amount_usd")
        assert "$2.00" in str(error)
        assert (await create_payment(stack.ctx, _request(currency_code="btc", amount_usd=Decimal("2.00")))).pay_amount
        # ... or our own minimum when the coin's is lower (trx: 0.30 < 1.00).
        await _refused(stack, _request(currency_code="trx", amount_usd=Decimal("0.99")), "amount_usd")
        assert (await create_payment(stack.ctx, _request(currency_code="trx", amount_usd=Decimal("1.00")))).pay_amount
        # The maximum from settings.
        error = await _refused(stack, _request(amount_usd=Decimal("500.01")), "amount_usd")
        assert "$500.00" in str(error)
        assert (await create_payment(stack.ctx, _request(amount_usd=Decimal("500.00")))).pay_amount
        assert await _gateway_creations(stack) == 3


async def test_concurrent_creates_of_one_request_make_one_payment(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        # A slow gateway keeps the first creator inside its lease while the second arrives.
        await stack.sim_post("/sim/faults", {"delay": 0.5, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        request = _request()
        results = await asyncio.gather(*(create_payment(stack.ctx, request) for _ in range(2)), return_exceptions=True)

        created = [r for r in results if isinstance(r, Payment)]
        in_progress = [r for r in results if isinstance(r, CreationInProgress)]
        assert len(created) == 1 and len(in_progress) == 1, results
        payment = created[0]
        # The designed retry: the loser, retried, finds the winner's payment.
        assert await create_payment(stack.ctx, request) == payment
        assert await _gateway_payments_for(stack, payment.id) == 1
        assert await _gateway_creations(stack) == 1
        assert await _stored(stack) == (1, 1)

        # Without the delay, many at once: still one payment and one gateway payment.
        burst = _request()
        results = await asyncio.gather(*(create_payment(stack.ctx, burst) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, Payment | CreationInProgress) for r in results), results
        ids = {r.id for r in results if isinstance(r, Payment)}
        assert len(ids) == 1
        assert await _gateway_payments_for(stack, ids.pop()) == 1
        assert await _stored(stack) == (2, 2)


async def test_transient_failure_releases_the_lease_and_a_crashed_holders_lease_runs_out(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        await stack.sim_post("/sim/faults", {"status": 503, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        request = _request()
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)
        async with stack.pool.acquire() as conn:
            recorded = await payments.find_by_request_id(conn, request.request_id)
        assert recorded is not None and recorded.provider_payment_id is None
        assert recorded.status.value == "pending" and recorded.create_claimed_until is None

        # A worker that died while holding the lease: others wait for it ...
        async with stack.pool.acquire() as conn:
            await conn.execute(
                "UPDATE payments SET create_claimed_until = now() + interval '60 seconds' WHERE id = $1", recorded.id
            )
        with pytest.raises(CreationInProgress):
            await create_payment(stack.ctx, request)
        # ... until it runs out.
        async with stack.pool.acquire() as conn:
            await conn.execute(
                "UPDATE payments SET create_claimed_until = now() - interval '1 second' WHERE id = $1", recorded.id
            )
        created = await create_payment(stack.ctx, request)
        assert created.id == recorded.id and created.provider_payment_id
        assert await _gateway_payments_for(stack, created.id) == 1


async def test_a_first_delivery_records_the_payment_with_its_creation_lease_taken(database_url, redis_namespace):
    """The lease is taken in the transaction that records the request (no claim of its own), and held
    while the gateway call is in flight: a duplicate delivery then waits for it."""
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        await stack.sim_post("/sim/faults", {"delay": 1.0, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        request = _request()
        first = asyncio.create_task(create_payment(stack.ctx, request))
        recorded = None
        for _ in range(200):
            async with stack.pool.acquire() as conn:
                recorded = await payments.find_by_request_id(conn, request.request_id)
            if recorded is not None:
                break
            await asyncio.sleep(0.005)
        assert recorded is not None and recorded.provider_payment_id is None
        assert recorded.create_claimed_until is not None and recorded.create_claimed_until > recorded.created_at
        assert recorded.updated_at == recorded.created_at  # one transaction: no separate claim wrote the row
        with pytest.raises(CreationInProgress):
            await create_payment(stack.ctx, request)
        created = await first
        assert created.id == recorded.id and created.provider_payment_id and created.create_claimed_until is None
        assert await _gateway_payments_for(stack, created.id) == 1
        assert await _stored(stack) == (1, 1)
