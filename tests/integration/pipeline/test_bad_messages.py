"""Acceptance: bad messages are dead-lettered with a reason, not retried, and nothing is written.

Every message goes through the real Redis broker to real worker threads. A message counts as
refused when it sits in the queue's dead-letter set ``<ns>:<queue>.XQ`` (its body in
``<ns>:<queue>.XQ.msgs``, see dramatiq/brokers/redis/dispatch.lua, command "nack") with no retry
recorded in its options, nothing waits in the delay queue ``<ns>:<queue>.DQ``, and the
``DeadLetterLog`` middleware logged ``message_dead_lettered`` with the reason.

The log is read with ``structlog.testing.capture_logs()``: it swaps the *global* structlog
configuration, and our loggers are lazy proxies that re-read it on every call
(``cache_logger_on_first_use`` is off), so events logged on the worker threads are captured as
plain dicts. capsys would also see the console text, but only as rendered lines.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Any

import dramatiq
import dramatiq.worker
import pytest
from structlog.testing import capture_logs

from services.commands import CreatePaymentRequest
from services.create_payment import create_payment as create_payment_stage
from storage import currencies, payments
from tests.integration.stack import Stack, eventually


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _valid_create(**overrides: Any) -> dict[str, Any]:
    kwargs = {
        "request_id": _ref("req"),
        "user_id": _ref("user"),
        "amount_usd": "10.00",
        "currency_code": "btc",
        "description": "bad message test",
    }
    kwargs.update(overrides)
    return kwargs


def _without(key: str) -> dict[str, Any]:
    kwargs = _valid_create()
    del kwargs[key]
    return kwargs


def _dead_letters(stack: Stack, queue: str) -> dict[str, dict[str, Any]]:
    """Dead-lettered message bodies of ``queue`` by dramatiq message id."""
    with stack.broker.client.pipeline(transaction=True) as pipe:  # one snapshot: a nack writes both keys
        pipe.zrange(f"{stack.namespace}:{queue}.XQ", 0, -1)
        pipe.hgetall(f"{stack.namespace}:{queue}.XQ.msgs")
        ids, raw = pipe.execute()
    assert set(ids) == set(raw)
    bodies = [json.loads(value) for value in raw.values()]
    return {body["message_id"]: body for body in bodies}


async def _row_counts(stack: Stack) -> dict[str, int]:
    async with stack.pool.acquire() as conn:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("payments", "payment_events", "ledger_transactions", "ledger_entries", "ledger_accounts")
        }


async def _send_and_expect_refusals(
    stack: Stack, subtests: Any, queue: str, cases: list[tuple[str, dramatiq.Message, str]]
) -> None:
    """Send every message, wait for all to be dead-lettered, then check each one on its own."""
    with capture_logs() as logs:
        sent = [(name, stack.broker.enqueue(message), reason) for name, message, reason in cases]

        async def all_dead():
            return len(_dead_letters(stack, queue)) >= len(cases)

        await eventually(all_dead)
        await stack.wait_idle()
    dead = _dead_letters(stack, queue)
    rejections = [entry for entry in logs if entry["event"] == "message_dead_lettered"]
    assert len(dead) == len(cases) == len(rejections)
    assert stack.broker.client.hlen(f"{stack.namespace}:{queue}.DQ.msgs") == 0  # no retry waiting
    assert stack.broker.client.hlen(f"{stack.namespace}:{queue}.msgs") == 0  # nothing left in flight
    for name, message, reason in sent:
        with subtests.test(case=name):
            body = dead.get(message.message_id)
            assert body is not None, f"{name}: not dead-lettered"
            assert body["args"] == list(message.args) and body["kwargs"] == message.kwargs
            assert body["options"].get("retries", 0) == 0 and "traceback" not in body["options"]
            logged = [entry for entry in rejections if entry["message_id"] == message.message_id]
            assert len(logged) == 1, f"{name}: rejection logged {len(logged)} times"
            assert logged[0]["queue"] == queue and logged[0]["log_level"] == "error"
            assert reason in logged[0]["reason"], logged[0]["reason"]


async def test_bad_create_payment_messages_are_dead_lettered_with_reason(database_url, redis_namespace, subtests):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=8) as stack:
        async with stack.pool.acquire() as conn:
            disabled = [c.code for c in await currencies.list_currencies(conn) if not c.active]
        assert disabled, "the simulator lists at least one disabled coin"
        before = await _row_counts(stack)
        message = stack.actors.create_payment.message

        def amount(value: Any, reason: str) -> tuple[str, dramatiq.Message, str]:
            return (f"amount_usd={value!r}", message(**_valid_create(amount_usd=value)), reason)

        cases = [
            amount("-5.00", "amount_usd: '-5.00' is not a plain decimal number"),
            amount("0", "must be greater than zero"),
            amount("0.00", "must be greater than zero"),
            amount("NaN", "'NaN' is not a plain decimal number"),
            amount("Infinity", "'Infinity' is not a plain decimal number"),
            amount("1e3", "'1e3' is not a plain decimal number"),
            amount("10.001", "more than 2 decimal places"),
            amount("1" + "0" * 20, "is too large"),
            amount("100000.01", "above the maximum deposit"),
            amount("0.50", "below the minimum deposit"),
            amount(10.5, "got float"),
            amount(10, "got int"),
            amount(None, "got NoneType"),
            amount(True, "got bool"),
            ("currency zzz", message(**_valid_create(currency_code="zzz")), "unknown currency 'zzz'"),
            (
                f"disabled currency {disabled[0]}",
                message(**_valid_create(currency_code=disabled[0])),
                f"currency {disabled[0]!r} is not active",
            ),
            ("missing user_id", message(**_without("user_id")), "missing required argument(s): user_id"),
            ("missing amount_usd", message(**_without("amount_usd")), "missing required argument(s): amount_usd"),
            ("request_id int", message(**_valid_create(request_id=12345)), "request_id: must be a string, got int"),
            ("description list", message(**_valid_create(description=["a", "b"])), "description: must be a string"),
            ("unknown kwarg", message(**_valid_create(memo="hi")), "unexpected argument 'memo'"),
            ("too many args", message("r", "u", "10.00", "btc", "d", "extra"), "expected at most 5 arguments"),
        ]
        await _send_and_expect_refusals(stack, subtests, "create-payment", cases)

        assert await _row_counts(stack) == before
        assert before["payments"] == 0 and before["ledger_transactions"] == 0
        assert (await stack.sim_get("/sim/payments"))["count"] == 0  # the gateway was never called


@pytest.mark.parametrize("actor_name", ["poll_status", "settle_deposit"])
async def test_bad_payment_id_messages_are_dead_lettered_with_reason(
    database_url, redis_namespace, subtests, actor_name
):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=8) as stack:
        # A real payment at the gateway, so a malformed message naming it must still change nothing.
        existing = await create_payment_stage(
            stack.ctx,
            CreatePaymentRequest(
                request_id=_ref("req"), user_id=_ref("user"), amount_usd=Decimal("20.00"), currency_code="btc"
            ),
        )
        await stack.sim_post(
            f"/sim/payments/{existing.provider_payment_id}/play", {"scenario": "paid", "send_ipn": False}
        )
        before_rows, before_payment = await _row_counts(stack), await stack.payment(existing.id)
        actor = stack.broker.get_actor(actor_name)
        cases = [
            ("payment_id int", actor.message(payment_id=123), "payment_id: must be a string, got int"),
            ("payment_id positional int", actor.message(123), "payment_id: must be a string, got int"),
            ("payment_id list", actor.message([existing.id]), "payment_id: must be a string, got list"),
            ("payment_id empty", actor.message(""), "payment_id: must not be empty"),
            ("payment_id missing", actor.message(), "missing required argument(s): payment_id"),
            ("unknown payment", actor.message("PAY_20250101000000_nosuchpy"), "no payment 'PAY_20250101000000_"),
            ("unknown kwarg", actor.message(payment_id=existing.id, force=True), "unexpected argument 'force'"),
            ("two args", actor.message(existing.id, existing.id), "expected at most 1 arguments, got 2"),
            ("given twice", actor.message(existing.id, payment_id=existing.id), "argument 'payment_id' given twice"),
        ]
        queue = actor.queue_name
        await _send_and_expect_refusals(stack, subtests, queue, cases)

        assert await _row_counts(stack) == before_rows
        assert await stack.payment(existing.id) == before_payment  # not polled, not settled, not touched
        assert stack.broker.client.llen(f"{stack.namespace}:settle-deposit") == 0


# --- raw messages, as a system in another language would enqueue them (DESIGN.md §8) -----------------------


def _raw_enqueue(stack: Stack, queue: str, redis_id: str, body: bytes) -> None:
    client, ns = stack.broker.client, stack.namespace
    client.hset(f"{ns}:{queue}.msgs", redis_id, body)
    client.rpush(f"{ns}:{queue}", redis_id)


def _raw_create_payment(kwargs: dict[str, Any], *, actor_name: str = "create_payment") -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": "create-payment",
        "actor_name": actor_name,
        "args": [],
        "kwargs": kwargs,
        "options": {"redis_message_id": message_id},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    return message_id, json.dumps(body).encode()


async def test_raw_json_messages_from_a_foreign_sender(database_url, redis_namespace):
    """A valid raw message becomes a payment with an address; a bad amount or unknown actor is dead-lettered."""
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=4) as stack:
        good = _valid_create(amount_usd="15.00", currency_code="eth")
        bad = _valid_create(amount_usd=15)  # a JSON number, not the documented decimal string
        with capture_logs() as logs:
            bad_id, bad_body = _raw_create_payment(bad)
            _raw_enqueue(stack, "create-payment", bad_id, bad_body)
            stray_id, stray_body = _raw_create_payment(_valid_create(), actor_name="create_deposit")
            _raw_enqueue(stack, "create-payment", stray_id, stray_body)
            good_id, good_body = _raw_create_payment(good)
            _raw_enqueue(stack, "create-payment", good_id, good_body)

            payment = await stack.payment_for_request(good["request_id"])

            async def both_dead():
                return len(_dead_letters(stack, "create-payment")) == 2

            await eventually(both_dead)
            await stack.wait_idle()
        assert payment.status.value == "pending" and payment.pay_address and payment.pay_amount > 0
        assert (payment.amount_usd, payment.currency_code, payment.user_id) == (
            Decimal("15.00"),
            "eth",
            good["user_id"],
        )
        assert (await stack.sim_get(f"/sim/payments?order_id={payment.id}"))["count"] == 1
        dead = _dead_letters(stack, "create-payment")
        assert set(dead) == {bad_id, stray_id}
        assert all(body["options"].get("retries", 0) == 0 for body in dead.values())
        # Both dead letters are explained: the refused input and the unknown actor.
        reasons = {e["message_id"]: e["reason"] for e in logs if e["event"] == "message_dead_lettered"}
        assert set(reasons) == {bad_id, stray_id}
        assert "got int" in reasons[bad_id] and "create_deposit" in reasons[stray_id]
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments") == 1


GARBAGE_BODIES = {
    "not json": b"\x00\xffthis is {not json",
    "json but not a message": b'{"queue_name": "create-payment", "hello": "world"}',
}


@pytest.fixture
def quick_consumer_restart(monkeypatch):
    """dramatiq restarts a consumer 3 s after an unexpected error (env dramatiq_restart_delay); shorten it."""
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", 0.3)


@pytest.mark.parametrize("garbage", list(GARBAGE_BODIES.values()), ids=list(GARBAGE_BODIES))
async def test_garbage_raw_message_does_not_stop_the_worker(
    database_url, redis_namespace, garbage, quick_consumer_restart
):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=4) as stack:
        client, ns = stack.broker.client, stack.namespace
        _raw_enqueue(stack, "create-payment", str(uuid.uuid4()), garbage)

        async def fetched():
            return client.llen(f"{ns}:create-payment") == 0

        await eventually(fetched)  # the consumer took the garbage (and choked on it)

        good = _valid_create(amount_usd="11.00")
        good_id, good_body = _raw_create_payment(good)
        _raw_enqueue(stack, "create-payment", good_id, good_body)
        payment = await stack.payment_for_request(good["request_id"])
        assert payment.pay_address and payment.provider_payment_id

        sent = _valid_create(amount_usd="12.00")
        stack.actors.create_payment.send(**sent)
        assert (await stack.payment_for_request(sent["request_id"])).pay_address
        assert stack.worker is not None
        assert all(thread.is_alive() for thread in stack.worker.consumers.values())
        assert all(thread.is_alive() for thread in stack.worker.workers)


async def test_garbage_raw_message_is_dead_lettered_without_stranding_its_batch(
    database_url, redis_namespace, quick_consumer_restart
):
    async with Stack(database_url, redis_namespace, ipn=False, worker_threads=4, start_worker=False) as stack:
        garbage_id = str(uuid.uuid4())
        _raw_enqueue(stack, "create-payment", garbage_id, GARBAGE_BODIES["not json"])
        good = _valid_create(amount_usd="13.00")
        good_id, good_body = _raw_create_payment(good)
        _raw_enqueue(stack, "create-payment", good_id, good_body)
        stack.start_workers()  # both are fetched in one prefetch batch, the garbage first

        async def created():
            async with stack.pool.acquire() as conn:
                found = await payments.find_by_request_id(conn, good["request_id"])
            return found is not None and found.provider_payment_id is not None

        await eventually(created, timeout=5)
        client, ns = stack.broker.client, stack.namespace
        assert client.zscore(f"{ns}:create-payment.XQ", garbage_id) is not None
