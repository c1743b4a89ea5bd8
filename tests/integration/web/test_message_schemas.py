"""Messages as they really sit in Redis, sent by the API and by the pipeline itself, match the published schemas."""

from __future__ import annotations

import json

import redis
from jsonschema import Draft202012Validator

from tests.conftest import REDIS_URL
from tests.integration.stack import Stack
from workers.contract import message_schemas


def _stored(namespace: str, queue: str) -> list[dict]:
    """Every message waiting on ``queue``, as the broker wrote it."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [json.loads(raw) for raw in client.hvals(f"{namespace}:{queue}.msgs")]
    finally:
        client.close()


async def test_messages_in_redis_match_their_actors_schemas(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        schemas = message_schemas()
        status, queued = await stack.api_post(
            "/v1/deposits", {"request_id": "schema-1", "user_id": "u1", "amount_usd": "25.00", "currency_code": "btc"}
        )
        assert status == 202, queued
        [by_name] = _stored(redis_namespace, "create-payment")
        assert by_name["message_id"] == queued["message_id"]
        assert by_name["kwargs"]["amount_usd"] == "25.00" and by_name["args"] == []
        assert not list(Draft202012Validator(schemas["create_payment"]).iter_errors(by_name))

        await stack.enqueue.poll_status("PAY_20250114123456_abc12345")  # the pipeline's own form
        [by_position] = _stored(redis_namespace, "poll-status")
        assert by_position["args"] == ["PAY_20250114123456_abc12345"] and by_position["kwargs"] == {}
        assert not list(Draft202012Validator(schemas["poll_status"]).iter_errors(by_position))
        # Neither form fits another actor, and a malformed one fits none.
        assert list(Draft202012Validator(schemas["settle_deposit"]).iter_errors(by_position))
        broken = {**by_name, "kwargs": {**by_name["kwargs"], "amount_usd": 25}}
        assert list(Draft202012Validator(schemas["create_payment"]).iter_errors(broken))
