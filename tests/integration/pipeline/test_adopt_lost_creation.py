"""A create-payment attempt whose answer was lost made a gateway payment: the retry finds it on the gateway's
payment list by our order id and adopts it instead of making a second one (services/create_payment.py,
services/find_lost_creation.py). Real simulator over HTTP, real Postgres, real Redis workers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import SecretStr

from gateway.errors import GatewayTransientError
from services.commands import CreatePaymentRequest
from services.context import gateway_from_settings
from services.create_payment import create_payment
from services.errors import CreationOutcomePending
from services.find_gateway_orphans import find_gateway_orphans
from services.poll_status import poll_status
from tests.integration.stack import PAYOUT_EMAIL, PAYOUT_PASSWORD, Stack, eventually

# The gateway acts on POST /v1/payment and answers 500: the caller cannot tell it from "not made".
LOST_ANSWER = {"status": 500, "acted": True, "count": 1, "path_prefix": "/v1/payment", "method": "POST"}


def _request(amount: str = "25.00") -> CreatePaymentRequest:
    return CreatePaymentRequest(request_id=f"req-{uuid.uuid4().hex[:8]}", user_id=f"u-{uuid.uuid4().hex[:8]}",
                                amount_usd=Decimal(amount), currency_code="btc")  # fmt: skip


def _window() -> dict:
    today = datetime.now(UTC).date()
    return {"date_from": today - timedelta(days=1), "date_to": today + timedelta(days=1)}


async def _gateway_payments(stack: Stack, order_id: str) -> list[dict]:
    return (await stack.sim_get(f"/sim/payments?order_id={order_id}"))["payments"]


async def _orphans(stack: Stack) -> list:
    """`payments reconcile --gateway`'s pass, with the payout login (the list is behind it)."""
    settings = stack.settings.model_copy(
        update={"nowpayments_email": SecretStr(PAYOUT_EMAIL), "nowpayments_password": SecretStr(PAYOUT_PASSWORD)}
    )
    async with gateway_from_settings(settings) as gateway:
        return await find_gateway_orphans(stack.pool, gateway, **_window())


async def test_the_retry_adopts_the_payment_the_lost_answer_made_and_it_is_credited_once(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=True, payouts=True) as stack:
        request = _request()
        await stack.sim_post("/sim/faults", LOST_ANSWER)
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)
        recorded = await stack.payment_for_request(request.request_id, created=False)
        made = await _gateway_payments(stack, recorded.id)
        assert recorded.provider_payment_id is None
        assert len(made) == 1  # the gateway made it, though we were told 500

        adopted = await create_payment(stack.ctx, request)  # the retry

        assert [p["payment_id"] for p in await _gateway_payments(stack, recorded.id)] == [made[0]["payment_id"]]
        gateway_view = await stack.gateway.get_payment(str(made[0]["payment_id"]))
        assert adopted.provider_payment_id == gateway_view.payment_id
        assert (adopted.pay_address, adopted.pay_amount, adopted.pay_currency, adopted.payin_extra_id) == (
            gateway_view.pay_address, gateway_view.pay_amount, gateway_view.pay_currency, gateway_view.payin_extra_id
        )  # fmt: skip
        assert adopted.expires_at == gateway_view.expiration_estimate_date and adopted.next_poll_at is not None
        async with stack.pool.acquire() as conn:
            detail = await conn.fetchval(
                "SELECT detail FROM payment_events WHERE payment_id = $1 AND source = 'create'", recorded.id
            )
        assert detail["adopted"] is True

        await stack.sim_post(f"/sim/payments/{adopted.provider_payment_id}/play", {"scenario": "paid"})
        await stack.wait_settled(recorded.id)
        await stack.wait_idle()
        async with stack.pool.acquire() as conn:
            deposits = await conn.fetchval(
                "SELECT count(*) FROM ledger_transactions WHERE type = 'deposit' AND idempotency_key LIKE $1",
                f"%{recorded.id}%",
            )
        assert deposits == 1
        assert await stack.balance(request.user_id) == Decimal("25.00")
        assert await _orphans(stack) == []


async def test_without_the_payout_login_the_retry_creates_again_and_reconcile_finds_the_orphan(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, payouts=False, start_worker=False) as stack:
        request = _request()
        await stack.sim_post("/sim/faults", LOST_ANSWER)
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)
        recorded = await stack.payment_for_request(request.request_id, created=False)
        first = await _gateway_payments(stack, recorded.id)

        created = await create_payment(stack.ctx, request)  # no list to look in: today's behaviour

        assert len(await _gateway_payments(stack, recorded.id)) == 2
        assert created.provider_payment_id != str(first[0]["payment_id"])
        orphans = await _orphans(stack)
        assert [(o.provider_payment_id, o.payment_id) for o in orphans] == [(str(first[0]["payment_id"]), recorded.id)]


async def test_a_failing_lookup_creates_nothing_and_the_stage_is_retried(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True, start_worker=False) as stack:
        request = _request()
        await stack.sim_post("/sim/faults", LOST_ANSWER)
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)
        recorded = await stack.payment_for_request(request.request_id, created=False)
        list_down = {"status": 503, "count": None, "path_prefix": "/v1/payment/", "method": "GET"}
        await stack.sim_post("/sim/faults", list_down)

        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)

        after_failure = await stack.payment(recorded.id)
        assert after_failure.provider_payment_id is None
        assert after_failure.create_claimed_until is None  # the retry need not wait for a lease to run out
        assert len(await _gateway_payments(stack, recorded.id)) == 1  # nothing created blindly

        async with stack.http.delete(stack.sim.url + "/sim/faults") as response:
            assert response.status < 300
        adopted = await create_payment(stack.ctx, request)
        made = await _gateway_payments(stack, recorded.id)
        assert [str(p["payment_id"]) for p in made] == [adopted.provider_payment_id]


async def test_a_payment_not_listed_yet_is_waited_for_then_adopted(database_url, redis_namespace):
    """The gateway acts on a request after we gave up waiting (or lists it late): "not listed" right after
    the attempt is not trusted; nothing is created until the settle time has passed."""
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True, start_worker=False,
                     nowpayments_timeout_seconds=0.4, nowpayments_lookup_settle_seconds=30) as stack:  # fmt: skip
        request = _request()
        late = {"delay": 2.0, "count": 1, "path_prefix": "/v1/payment", "method": "POST"}
        await stack.sim_post("/sim/faults", late)
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)  # timed out; the gateway acts on it 1.6 s later
        recorded = await stack.payment_for_request(request.request_id, created=False)

        with pytest.raises(CreationOutcomePending) as pending:
            await create_payment(stack.ctx, request)
        waiting = await stack.payment(recorded.id)
        assert waiting.create_claimed_until is None and waiting.provider_payment_id is None
        assert datetime.now(UTC) < pending.value.until <= datetime.now(UTC) + timedelta(seconds=30)
        assert waiting.next_poll_at is not None and waiting.next_poll_at <= pending.value.until  # the scheduler returns

        made = await eventually(lambda: _gateway_payments(stack, recorded.id), timeout=10)
        adopted = await create_payment(stack.ctx, request)
        assert [str(p["payment_id"]) for p in made] == [adopted.provider_payment_id]
        assert len(await _gateway_payments(stack, recorded.id)) == 1


async def test_a_payment_listed_only_after_a_trusted_miss_is_an_orphan_reconcile_finds(
    database_url, redis_namespace
):
    """The backstop: with no settle time, a miss is believed at once and a second payment is made; the first,
    appearing later, is flagged by `payments reconcile --gateway` and never adopted over the stored one."""
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True, start_worker=False,
                     nowpayments_timeout_seconds=0.4, nowpayments_lookup_settle_seconds=0) as stack:  # fmt: skip
        request = _request()
        await stack.sim_post("/sim/faults", {"delay": 2.0, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)
        recorded = await stack.payment_for_request(request.request_id, created=False)

        created = await create_payment(stack.ctx, request)

        both = await eventually(
            lambda: _two(_gateway_payments(stack, recorded.id)), timeout=10
        )  # the late one appears
        late = [str(p["payment_id"]) for p in both if str(p["payment_id"]) != created.provider_payment_id]
        assert (await stack.payment(recorded.id)).provider_payment_id == created.provider_payment_id
        orphans = await _orphans(stack)
        assert [(o.provider_payment_id, o.payment_id) for o in orphans] == [(late[0], recorded.id)]


async def _two(listing):
    found = await listing
    return found if len(found) == 2 else None


async def test_a_second_gateway_payment_with_our_order_id_but_another_price_is_not_adopted(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True, start_worker=False,
                     nowpayments_lookup_settle_seconds=0) as stack:  # fmt: skip
        request = _request()
        await stack.sim_post("/sim/faults", {"status": 503, "count": 1, "path_prefix": "/v1/payment", "method": "POST"})
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)  # refused before acting: nothing made
        recorded = await stack.payment_for_request(request.request_id, created=False)
        stranger = await stack.gateway.create_payment(
            price_amount=Decimal("99.00"), price_currency="usd", pay_currency="btc", order_id=recorded.id
        )

        created = await create_payment(stack.ctx, request)

        assert created.provider_payment_id not in (None, stranger.payment_id)
        assert created.pay_amount is not None


async def test_a_create_payment_message_whose_first_answer_was_lost_ends_with_one_gateway_payment(
    database_url, redis_namespace
):
    """Through the worker: the actor's retry (dramatiq's backoff) adopts what the first attempt made."""
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True) as stack:
        request = _request("40.00")
        await stack.sim_post("/sim/faults", LOST_ANSWER)
        stack.actors.create_payment.send(**request.model_dump(mode="json"))

        created = await stack.payment_for_request(request.request_id)
        await stack.wait_idle()

        made = await _gateway_payments(stack, created.id)
        assert [str(p["payment_id"]) for p in made] == [created.provider_payment_id]
        assert await _orphans(stack) == []


async def test_a_poll_resuming_a_creation_adopts_what_the_lost_answer_made(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True, start_worker=False) as stack:
        request = _request()
        await stack.sim_post("/sim/faults", LOST_ANSWER)
        with pytest.raises(GatewayTransientError):
            await create_payment(stack.ctx, request)  # ... and its retry is never enqueued
        recorded = await stack.payment_for_request(request.request_id, created=False)

        await poll_status(stack.ctx, recorded.id)

        made = await _gateway_payments(stack, recorded.id)
        assert [str(p["payment_id"]) for p in made] == [(await stack.payment(recorded.id)).provider_payment_id]
