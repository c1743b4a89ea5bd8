"""Acceptance (#8, definite answers): every deposit or withdrawal request gets an answer that stays.

At the door (``POST /v1/deposits``) each refusal reason is a 4xx with the reason, and nothing is queued
(the Redis queue under the test's namespace stays empty) or written. A request a worker refuses (a raw
message, or a currency switched off after the door let it through) leaves a ``rejected`` answer under
its request_id, and a replay gets that same answer without a new payment or withdrawal.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Any

from services.commands import CreatePaymentRequest
from services.create_payment import create_payment as create_payment_stage
from storage import currencies
from tests.integration.stack import Stack, eventually

DEPOSITS = "create-payment"
WITHDRAWALS = "process-withdrawal"
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _deposit(**overrides: Any) -> dict[str, Any]:
    body = {"request_id": _ref("req"), "user_id": _ref("user"), "amount_usd": "25.00", "currency_code": "btc"}
    return {**body, **overrides}


def _queued(stack: Stack, queue: str) -> tuple[int, int]:
    """(ids waiting, bodies stored) of ``queue`` under the test's own namespace."""
    client, ns = stack.broker.client, stack.namespace
    return client.llen(f"{ns}:{queue}"), client.hlen(f"{ns}:{queue}.msgs")


def _dead_lettered(stack: Stack, queue: str) -> int:
    return stack.broker.client.zcard(f"{stack.namespace}:{queue}.XQ")


async def _rows(stack: Stack) -> dict[str, int]:
    tables = ("payments", "payment_events", "withdrawals", "request_rejections", "ledger_transactions")
    async with stack.pool.acquire() as conn:
        return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in tables}


def _raw_enqueue(stack: Stack, queue: str, actor_name: str, kwargs: dict[str, Any]) -> str:
    """Enqueue as a system in another language would (README "Message contract")."""
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": queue,
        "actor_name": actor_name,
        "args": [],
        "kwargs": kwargs,
        "options": {"redis_message_id": message_id},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    client, ns = stack.broker.client, stack.namespace
    client.hset(f"{ns}:{queue}.msgs", message_id, json.dumps(body))
    client.rpush(f"{ns}:{queue}", message_id)
    return message_id


async def _until_dead_lettered(stack: Stack, queue: str, count: int) -> None:
    async def enough() -> bool:
        return _dead_lettered(stack, queue) >= count

    await eventually(enough)
    await stack.wait_idle()


async def test_each_refusal_at_the_door_is_a_4xx_with_nothing_queued_or_written(
    database_url, redis_namespace, subtests
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        async with stack.pool.acquire() as conn:
            disabled = next(c.code for c in await currencies.list_currencies(conn) if not c.active)
            await currencies.set_operator_active(conn, "ltc", False)  # switched off by an operator
        earlier = _deposit()
        existing = await create_payment_stage(stack.ctx, CreatePaymentRequest.from_body(earlier))
        before = await _rows(stack)
        cases = [
            ("above the maximum", _deposit(amount_usd="100000.01"), 400, "above the maximum deposit of $100,000.00"),
            ("below the minimum", _deposit(amount_usd="0.50"), 400, "below the minimum deposit of $"),
            ("unknown currency", _deposit(currency_code="zzz"), 400, "unknown currency 'zzz'"),
            ("gateway disabled", _deposit(currency_code=disabled), 400, f"currency {disabled!r} is not active"),
            ("operator disabled", _deposit(currency_code="ltc"), 400, "currency 'ltc' is not active"),
            ("malformed", _deposit(amount_usd=25), 400, "amount_usd: must be a decimal string"),
            (
                "request_id reused",
                {**earlier, "amount_usd": "26.00"},
                409,
                f"was already used for payment {existing.id} with different arguments",
            ),
        ]
        for name, body, status, reason in cases:
            with subtests.test(case=name):
                answer_status, answer = await stack.api_post("/v1/deposits", body)
                assert answer_status == status, answer
                expected_code = "request_id_reused" if status == 409 else "invalid_request"
                assert answer["error"] == expected_code and reason in answer["message"], answer
        assert _queued(stack, DEPOSITS) == (0, 0)
        assert await _rows(stack) == before

        # The earlier request again, in an equivalent spelling: its payment, 200, nothing queued.
        status, replay = await stack.api_post("/v1/deposits", {**earlier, "amount_usd": "25", "currency_code": "BTC"})
        assert status == 200 and replay["internal_payment_id"] == existing.id and "refused_replay" not in replay
        assert _queued(stack, DEPOSITS) == (0, 0)
        assert await _rows(stack) == before

        # A new request passes and is queued once.
        status, queued = await stack.api_post("/v1/deposits", _deposit())
        assert (status, queued["status"]) == (202, "queued")
        assert _queued(stack, DEPOSITS) == (1, 1)


async def test_a_currency_switched_off_after_the_door_leaves_a_rejected_answer(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        body = _deposit(currency_code="eth")
        status, _ = await stack.api_post("/v1/deposits", body)
        assert status == 202
        async with stack.pool.acquire() as conn:
            await currencies.set_operator_active(conn, "eth", False)  # the race: switched off while queued
        stack.start_workers()
        await _until_dead_lettered(stack, DEPOSITS, 1)

        status, answer = await stack.api_get(f"/v1/deposits/{body['request_id']}")
        assert status == 200, answer
        assert answer["status"] == "rejected" and answer["request_id"] == body["request_id"]
        assert "currency 'eth' is not active" in answer["reason"] and answer["error"] == "invalid_request"
        assert answer["rejected_at"]

        # Switched on again, the same request_id still gets the same answer: at the door and from a worker.
        async with stack.pool.acquire() as conn:
            await currencies.set_operator_active(conn, "eth", True)
        status, again = await stack.api_post("/v1/deposits", body)
        assert (status, again) == (200, answer)
        assert _queued(stack, DEPOSITS) == (0, 0)
        _raw_enqueue(stack, DEPOSITS, "create_payment", body)
        await _until_dead_lettered(stack, DEPOSITS, 2)
        assert (await stack.api_get(f"/v1/deposits/{body['request_id']}")) == (200, answer)
        rows = await _rows(stack)
        assert (rows["payments"], rows["request_rejections"]) == (0, 1)
        assert (await stack.sim_get("/sim/payments"))["count"] == 0

        # Other arguments under the refused request_id: 409, naming the earlier refusal.
        status, refused = await stack.api_post("/v1/deposits", {**body, "amount_usd": "30.00"})
        assert (status, refused["error"]) == (409, "request_id_reused")
        assert "refused at" in refused["message"] and "is not active" in refused["message"]


async def test_a_malformed_raw_message_with_a_readable_request_id_is_answered_rejected(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        body = _deposit(amount_usd=25)  # a JSON number, not the documented decimal string
        _raw_enqueue(stack, DEPOSITS, "create_payment", body)
        unreadable = _deposit(request_id=["not", "an", "id"], amount_usd="1e3")
        _raw_enqueue(stack, DEPOSITS, "create_payment", unreadable)
        await _until_dead_lettered(stack, DEPOSITS, 2)

        status, answer = await stack.api_get(f"/v1/deposits/{body['request_id']}")
        assert status == 200 and answer["status"] == "rejected", answer
        assert answer["reason"] == 'amount_usd: must be a decimal string like "10.00", got int'
        assert answer["field"] == "amount_usd"
        # The corrected request under the same request_id is not taken as the refused one's answer.
        status, refused = await stack.api_post("/v1/deposits", {**body, "amount_usd": "25.00"})
        assert (status, refused["error"]) == (409, "request_id_reused")
        rows = await _rows(stack)
        assert (rows["payments"], rows["request_rejections"]) == (0, 1)  # nothing to record for an unreadable id


async def test_a_raw_replay_with_other_arguments_never_passes_for_the_earlier_payment(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        body = _deposit()
        payment = await create_payment_stage(stack.ctx, CreatePaymentRequest.from_body(body))
        status, plain = await stack.api_get(f"/v1/deposits/{body['request_id']}")
        assert status == 200 and plain["internal_payment_id"] == payment.id and "refused_replay" not in plain

        _raw_enqueue(stack, DEPOSITS, "create_payment", {**body, "amount_usd": "99.00"})
        await _until_dead_lettered(stack, DEPOSITS, 1)
        status, answer = await stack.api_get(f"/v1/deposits/{body['request_id']}")
        assert status == 200 and answer["internal_payment_id"] == payment.id
        assert answer["amount_usd"] == "25.00"  # the arguments the payment answers
        refused = answer["refused_replay"]
        assert "with different arguments" in refused["reason"] and refused["rejected_at"]
        assert "not its answer" in refused["note"]
        rows = await _rows(stack)
        assert (rows["payments"], rows["request_rejections"]) == (1, 1)

        # A duplicate delivery of the accepted request is still the payment, and records nothing more.
        _raw_enqueue(stack, DEPOSITS, "create_payment", body)
        await stack.wait_idle()
        assert _dead_lettered(stack, DEPOSITS) == 1
        assert (await _rows(stack))["request_rejections"] == 1


async def test_a_withdrawal_message_refused_by_a_worker_is_answered_rejected(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        user = _ref("user")
        body = {
            "request_id": _ref("wreq"),
            "user_id": user,
            "amount_usd": "40.00",
            "currency_code": "btc",
            "wallet_address": BTC_ADDRESS,
        }
        _raw_enqueue(stack, WITHDRAWALS, "request_withdrawal", body)  # the user has no balance
        bad_address = {**body, "request_id": _ref("wreq"), "wallet_address": "not-an-address"}
        _raw_enqueue(stack, WITHDRAWALS, "request_withdrawal", bad_address)
        await _until_dead_lettered(stack, WITHDRAWALS, 2)

        status, answer = await stack.api_get(f"/v1/withdrawals/by-request/{body['request_id']}")
        assert status == 200 and answer["status"] == "rejected", answer
        assert answer["error"] == "insufficient_funds" and "insufficient funds" in answer["reason"]
        status, other = await stack.api_get(f"/v1/withdrawals/by-request/{bad_address['request_id']}")
        assert status == 200 and other["status"] == "rejected" and other["field"] == "wallet_address", other

        # The same request over HTTP gets the same answer and holds nothing; other arguments are a 409.
        status, again = await stack.api_post("/v1/withdrawals", body)
        assert (status, again) == (200, answer)
        status, refused = await stack.api_post("/v1/withdrawals", {**body, "amount_usd": "41.00"})
        assert (status, refused["error"]) == (409, "request_id_reused")
        rows = await _rows(stack)
        assert (rows["withdrawals"], rows["ledger_transactions"], rows["request_rejections"]) == (0, 0, 2)
        assert await stack.balance(user) == Decimal(0)

        status, missing = await stack.api_get(f"/v1/withdrawals/by-request/{_ref('never')}")
        assert (status, missing["error"]) == (404, "not_found")
