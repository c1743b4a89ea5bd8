"""create-payment consumed in groups (workers/create_group.py → services/create_group.py): every member
runs the single stage; a duplicate shares one run, a refused or failing member goes on alone with the
ordinary retries and dead-lettering, and every payment is opened at the gateway exactly once."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from domain.payments import Payment
from domain.rejections import RequestKind
from services.commands import CreatePaymentRequest
from services.create_group import create_group
from services.create_payment import create_payment
from storage import rejections
from tests.integration.stack import Stack, eventually

FAULT_ONE_CREATION = {"status": 503, "count": 1, "path_prefix": "/v1/payment", "method": "POST"}


def _create(**overrides: Any) -> dict[str, Any]:
    fields = {
        "request_id": f"req-{uuid.uuid4().hex[:10]}",
        "user_id": f"user-{uuid.uuid4().hex[:6]}",
        "amount_usd": "25.00",
        "currency_code": "btc",
        "description": "group test",
    }
    fields.update(overrides)
    return fields


async def _gateway_payments(stack: Stack, order_id: str) -> int:
    return (await stack.sim_get(f"/sim/payments?order_id={order_id}"))["count"]


async def _gateway_creations(stack: Stack) -> int:
    answer = await stack.sim_get("/sim/requests?path_prefix=/v1/payment")
    return sum(1 for entry in answer["requests"] if entry["method"] == "POST")


def _dead_request_ids(stack: Stack) -> list[str]:
    raw = stack.broker.client.hgetall(f"{stack.namespace}:create-payment.XQ.msgs").values()
    return sorted(json.loads(body)["kwargs"]["request_id"] for body in raw)


async def test_worker_creates_a_group_with_a_duplicate_a_refusal_and_a_gateway_error(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        await stack.sim_post("/sim/faults", FAULT_ONE_CREATION)  # one member's gateway call fails
        plain = [_create() for _ in range(8)]
        mismatched = {**plain[0], "amount_usd": "26.00"}  # same request_id, other content: refused
        unknown_coin = _create(currency_code="nosuchcoin")  # refused: no such currency
        for fields in [*plain, plain[1], plain[2], mismatched, unknown_coin]:  # two plain ones delivered twice
            stack.actors.create_payment.send(**fields)
        stack.start_workers()

        created = [await stack.payment_for_request(fields["request_id"]) for fields in plain]
        await stack.wait_idle()
        assert all(p.provider_payment_id and p.pay_address for p in created)
        for payment in created:
            assert await _gateway_payments(stack, payment.id) == 1
        # One call failed (503) and was retried alone; every other call created a payment, once.
        assert await _gateway_creations(stack) == len(plain) + 1
        assert _dead_request_ids(stack) == sorted([mismatched["request_id"], unknown_coin["request_id"]])
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments") == len(plain)
            refused = await rejections.find_rejection(conn, RequestKind.DEPOSIT, unknown_coin["request_id"])
        assert refused is not None
        assert stack.broker.client.hlen(f"{stack.namespace}:create-payment.msgs") == 0


async def test_group_stage_answers_what_it_finished_and_what_to_run_alone(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        good = [CreatePaymentRequest(**_create()) for _ in range(5)]  # type: ignore[arg-type]
        replayed = good[0]
        mismatched = CreatePaymentRequest(**{**_create(), "request_id": replayed.request_id, "amount_usd": "30"})
        before = await create_payment(stack.ctx, replayed)  # a replay in the group finds this one
        await stack.sim_post("/sim/faults", FAULT_ONE_CREATION)
        members = [(f"k{i}", request) for i, request in enumerate([*good, mismatched])]

        outcome = await create_group(stack.ctx, members)

        keys = {key for key, _ in members}
        assert outcome.finished | outcome.left == keys and not outcome.finished & outcome.left
        assert "k5" in outcome.left  # the mismatched replay is refused: it goes on alone to be recorded
        assert "k0" in outcome.finished  # the replay answers the payment made before
        assert len(outcome.left) == 2  # ... and the one member whose gateway call failed
        failed_key = next(iter(outcome.left - {"k5"}))
        failed = dict(members)[failed_key]
        again = await create_payment(stack.ctx, failed)  # run alone, as the consumer hands it out
        assert isinstance(again, Payment) and again.provider_payment_id
        async with stack.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, request_id, amount_usd FROM payments ORDER BY request_id")
        assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in good)
        assert {r["id"] for r in rows if r["request_id"] == replayed.request_id} == {before.id}
        assert all(r["amount_usd"] == Decimal("25.00") for r in rows)
        for row in rows:
            assert await _gateway_payments(stack, row["id"]) == 1


async def test_group_of_one_request_twice_makes_one_payment(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        request = CreatePaymentRequest(**_create())  # type: ignore[arg-type]
        outcome = await create_group(stack.ctx, [("a", request), ("b", request), ("c", request)])
        # One holds the lease; the others find it in progress (left to the scheduler, as the actor leaves
        # them) or already made: none is handed back.
        assert outcome.finished == {"a", "b", "c"} and not outcome.left
        payment = await eventually(lambda: _created(stack, request))
        assert await _gateway_payments(stack, payment.id) == 1
        assert await _gateway_creations(stack) == 1


async def _created(stack: Stack, request: CreatePaymentRequest) -> Payment | None:
    payment = await stack.payment_for_request(request.request_id, created=False)
    return payment if payment.provider_payment_id else None
