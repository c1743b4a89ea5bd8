"""Acceptance: each deposit actor, delivered three times at once for the same message, has one effect.

A true duplicate delivery is the very same dramatiq ``Message`` (same ``message_id``, args and
options) enqueued three times. dramatiq's Redis broker does *not* dedupe by message id:
``RedisBroker.enqueue`` stamps every enqueue with a fresh ``options.redis_message_id`` (the key in
``<ns>:<queue>.msgs``), so three ``broker.enqueue(msg)`` calls leave three entries on the queue that
all carry the same ``message_id``. The tests check exactly that before starting the workers, and
start the worker threads only once all three are queued, so the three deliveries are prefetched
together and run concurrently on the worker's event loop.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import dramatiq
from structlog.testing import capture_logs

from services.commands import CreatePaymentRequest
from services.create_payment import create_payment as create_payment_stage
from services.poll_status import poll_status as poll_status_stage
from storage import ledger, payments
from tests.integration.stack import Stack, eventually


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _queue_state(stack: Stack, queue: str) -> dict[str, Any]:
    """What sits in Redis for ``queue``: ready ids, stored bodies, delayed retries and dead letters."""
    client, ns = stack.broker.client, stack.namespace
    return {
        "ready": client.llen(f"{ns}:{queue}"),
        "stored": client.hlen(f"{ns}:{queue}.msgs"),
        "delayed": client.hlen(f"{ns}:{queue}.DQ.msgs"),
        "dead": client.zcard(f"{ns}:{queue}.XQ"),
    }


def _enqueue_three_times(stack: Stack, message: dramatiq.Message) -> None:
    for _ in range(3):
        stack.broker.enqueue(message)
    client, ns, queue = stack.broker.client, stack.namespace, message.queue_name
    stored = [json.loads(raw) for raw in client.hvals(f"{ns}:{queue}.msgs")]
    # Three queued deliveries of one message: same message id, args and kwargs; only the Redis slot differs.
    assert client.llen(f"{ns}:{queue}") == 3
    assert {m["message_id"] for m in stored} == {message.message_id}
    assert all(m["args"] == list(message.args) and m["kwargs"] == message.kwargs for m in stored)
    assert len({m["options"]["redis_message_id"] for m in stored}) == 3


def _drained(stack: Stack, queue: str) -> None:
    """Every delivery was acknowledged: nothing waiting, retrying or dead-lettered."""
    assert _queue_state(stack, queue) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}


async def _count(stack: Stack, sql: str, *args: Any) -> int:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval(sql, *args)


async def _completed_at_gateway(stack: Stack, amount: str) -> tuple[str, payments.Payment]:
    """A payment created through the real create stage, then paid in full at the simulator (no IPN)."""
    user = _ref("user")
    request = CreatePaymentRequest(
        request_id=_ref("req"), user_id=user, amount_usd=Decimal(amount), currency_code="btc", description="dup"
    )
    payment = await create_payment_stage(stack.ctx, request)
    assert payment.provider_payment_id and payment.pay_address
    await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid", "send_ipn": False})
    view = await stack.sim_get(f"/sim/payments/{payment.provider_payment_id}")
    assert view["payment_status"] == "finished"
    return user, payment


async def test_create_payment_delivered_three_times_concurrently_creates_one_payment(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=8, start_worker=False) as stack:
        user, request_id = _ref("user"), _ref("req")
        message = stack.actors.create_payment.message(
            request_id=request_id, user_id=user, amount_usd="25.00", currency_code="btc", description="three times"
        )
        _enqueue_three_times(stack, message)
        stack.start_workers()

        payment = await stack.payment_for_request(request_id)
        await stack.wait_idle()
        _drained(stack, "create-payment")  # all three deliveries finished without a dead letter

        assert await _count(stack, "SELECT count(*) FROM payments") == 1
        final = await stack.payment(payment.id)
        assert final.status.value == "pending" and final.pay_address and final.create_claimed_until is None
        at_gateway = await stack.sim_get(f"/sim/payments?order_id={payment.id}")
        assert at_gateway["count"] == 1
        assert at_gateway["payments"][0]["payment_id"] == final.provider_payment_id
        assert len((await stack.sim_get("/sim/payments"))["payments"]) == 1
        async with stack.pool.acquire() as conn:
            events = await payments.list_events(conn, payment.id)
        assert [(e["source"], e["to_status"]) for e in events] == [("create", "pending")]


async def test_poll_status_delivered_three_times_concurrently_records_each_change_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=8, start_worker=False) as stack:
        user, payment = await _completed_at_gateway(stack, "37.50")
        _enqueue_three_times(stack, stack.actors.poll_status.message(payment.id))
        stack.start_workers()

        await stack.wait_settled(payment.id)
        await stack.wait_idle()
        _drained(stack, "poll-status")
        _drained(stack, "settle-deposit")

        final = await stack.payment(payment.id)
        assert final.status.value == "completed" and final.credit_usd == Decimal("37.50")
        async with stack.pool.acquire() as conn:
            events = await payments.list_events(conn, payment.id)
            assert [(e["source"], e["from_status"], e["to_status"]) for e in events] == [
                ("create", None, "pending"),
                ("poll", "pending", "completed"),
                ("settle", "completed", "completed"),
            ]
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 1
            assert await ledger.invariant_violations(conn) == []
        assert await stack.balance(user) == Decimal("37.50")


async def test_settle_deposit_delivered_three_times_concurrently_credits_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=8, start_worker=False) as stack:
        user, payment = await _completed_at_gateway(stack, "12.34")
        # Apply the gateway's "finished" through the real poll stage; it enqueues one settlement itself.
        result = await poll_status_stage(stack.ctx, payment.id)
        assert result is not None and result.payment.status.value == "completed" and result.settle_due
        assert _queue_state(stack, "settle-deposit")["ready"] == 1
        stack.broker.flush("settle-deposit")  # replaced by three deliveries of one message of our own

        _enqueue_three_times(stack, stack.actors.settle_deposit.message(payment_id=payment.id))
        stack.start_workers()

        settled = await stack.wait_settled(payment.id)
        await stack.wait_idle()
        _drained(stack, "settle-deposit")

        assert await stack.balance(user) == Decimal("12.34")
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 1
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2
            tx_id = await conn.fetchval(
                "SELECT id FROM ledger_transactions WHERE idempotency_key = $1", f"deposit:{payment.id}"
            )
            assert settled.ledger_transaction_id == tx_id
            events = await payments.list_events(conn, payment.id)
            assert [e["source"] for e in events].count("settle") == 1
            history = await ledger.user_history(conn, user)
            assert [(h.amount_usd, h.balance_after) for h in history] == [(Decimal("12.34"), Decimal("12.34"))]
            assert await ledger.invariant_violations(conn) == []


async def test_create_payment_replayed_after_completion(database_url, redis_namespace):
    """Same request_id and arguments: a no-op. Same request_id, other amount: dead-lettered, nothing changes."""
    async with Stack(database_url, redis_namespace, ipn=True, worker_threads=8) as stack:
        user, request_id = _ref("user"), _ref("req")
        arguments = {"request_id": request_id, "user_id": user, "amount_usd": "25.00", "currency_code": "btc"}
        stack.actors.create_payment.send(**arguments)
        payment = await stack.payment_for_request(request_id)
        await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid"})
        await stack.wait_settled(payment.id)
        await stack.wait_idle()

        async def snapshot() -> tuple[Any, ...]:
            async with stack.pool.acquire() as conn:
                return (
                    await stack.payment(payment.id),
                    await conn.fetchval("SELECT count(*) FROM payments"),
                    await payments.list_events(conn, payment.id),
                    await conn.fetch("SELECT * FROM ledger_entries ORDER BY id"),
                    await stack.sim_get(f"/sim/payments?order_id={payment.id}"),
                    await stack.balance(user),
                )

        before = await snapshot()
        assert before[0].status.value == "completed" and before[0].settled_at is not None
        assert before[1] == 1 and before[4]["count"] == 1 and before[5] == Decimal("25.00")

        # Identical replay (positional this time: the contract allows either form).
        stack.actors.create_payment.send(request_id, user, "25.00", "btc")
        stack.actors.create_payment.send(**arguments)
        await stack.wait_idle()
        assert _queue_state(stack, "create-payment")["dead"] == 0
        assert await snapshot() == before

        # Mismatched replay: refused, dead-lettered once without retry, with the reason logged.
        with capture_logs() as logs:
            sent = stack.actors.create_payment.send(**{**arguments, "amount_usd": "26.00"})

            async def dead_lettered():
                return _queue_state(stack, "create-payment")["dead"] == 1

            await eventually(dead_lettered)
            await stack.wait_idle()
        client, ns = stack.broker.client, stack.namespace
        [dead_id] = client.zrange(f"{ns}:create-payment.XQ", 0, -1)
        dead = json.loads(client.hget(f"{ns}:create-payment.XQ.msgs", dead_id))
        assert dead["message_id"] == sent.message_id
        assert dead["kwargs"]["amount_usd"] == "26.00"
        assert dead["options"].get("retries", 0) == 0
        rejections = [e for e in logs if e["event"] == "message_dead_lettered"]
        assert [(e["message_id"], e["queue"]) for e in rejections] == [(sent.message_id, "create-payment")]
        assert "different arguments" in rejections[0]["reason"] and payment.id in rejections[0]["reason"]
        assert await snapshot() == before
