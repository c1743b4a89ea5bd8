"""Acceptance (#9, worker side): hostile raw messages are dead-lettered at once with a reason, and no value a
message carries can make a log line longer than a bounded size.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from entrypoints.logs import MAX_LOGGED_VALUE, configure_logging
from tests.integration.stack import Stack, eventually

QUEUE = "create-payment"


def _raw(stack: Stack, **fields: Any) -> str:
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": QUEUE,
        "actor_name": "create_payment",
        "args": [],
        "kwargs": {},
        "options": {"redis_message_id": message_id},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
        **fields,
    }
    client, ns = stack.broker.client, stack.namespace
    client.hset(f"{ns}:{QUEUE}.msgs", message_id, json.dumps(body))
    client.rpush(f"{ns}:{QUEUE}", message_id)
    return message_id


async def _dead(stack: Stack, count: int) -> set[str]:
    key = f"{stack.namespace}:{QUEUE}.XQ"

    async def enough() -> bool:
        return stack.broker.client.zcard(key) >= count

    await eventually(enough)
    await stack.wait_idle()
    return {member.decode() for member in stack.broker.client.zrange(key, 0, -1)}


async def test_a_message_not_shaped_like_one_is_dead_lettered_at_once_with_the_reason(
    database_url, redis_namespace, subtests
):
    request = {"request_id": "r-1", "user_id": "u-1", "amount_usd": "10.00", "currency_code": "btc"}
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        with capture_logs() as logs:
            cases = {
                _raw(stack, kwargs=["r-1", "u-1", "10.00", "btc"]): "kwargs must be a JSON object, got list",
                _raw(stack, kwargs="request_id=r-1"): "kwargs must be a JSON object, got str",
                _raw(stack, args=request): "args must be a JSON array, got dict",
                _raw(stack, args="r-1"): "args must be a JSON array, got str",
                _raw(stack, options=[]): "options must be a JSON object, got list",
            }
            dead = await _dead(stack, len(cases))
        assert set(cases) <= dead
        client, ns = stack.broker.client, stack.namespace
        assert client.hlen(f"{ns}:{QUEUE}.DQ.msgs") == 0  # nothing waits for a retry
        logged = [entry for entry in logs if entry["event"] == "message_dead_lettered"]
        for message_id, reason in cases.items():
            with subtests.test(reason=reason):
                mine = [entry for entry in logged if entry.get("message_id") == message_id]
                assert len(mine) == 1 and reason in mine[0]["reason"], logged
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments") == 0


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The logging set-up is global: put back what the test changes."""
    saved_config = structlog.get_config()
    saved_factory = logging.getLogRecordFactory()
    yield
    structlog.configure(**saved_config)
    logging.setLogRecordFactory(saved_factory)


async def test_a_10_mb_value_never_makes_a_10_mb_log_line(
    database_url, redis_namespace, restore_logging, capsys, caplog
):
    configure_logging(level="INFO", fmt="json")  # the processes' own set-up, writing to the captured stderr
    caplog.set_level(logging.INFO)
    huge = "x" * 10_000_000
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        request = {"request_id": "r-huge", "user_id": "u-1", "amount_usd": "10.00", "currency_code": "btc"}
        big_description = _raw(stack, kwargs={**request, "description": huge})
        big_kwarg = _raw(stack, kwargs={**request, "request_id": "r-huge-2", huge[:5_000]: 1})
        big_request_id = _raw(stack, kwargs={**request, "request_id": huge})
        dead = await _dead(stack, 3)
    assert {big_description, big_kwarg, big_request_id} <= dead
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line]
    stdlib_lines = [record.getMessage() for record in caplog.records]
    assert any("message_dead_lettered" in line for line in lines)
    assert any("Failed to process message" in line for line in stdlib_lines)  # dramatiq's own line, with the message
    bound = 20 * MAX_LOGGED_VALUE
    assert max(len(line) for line in lines + stdlib_lines) < bound
    assert any("… (10,000," in line and "characters)" in line for line in stdlib_lines)  # cut, length said
