"""On RabbitMQ (BROKER_URL=amqp://…) the raw-message contract and bad-message handling match Redis.

A foreign sender publishes the README's raw message with pika to the default exchange, routing
key = the queue name (here prefixed by the test's namespace). Garbage and refused input end in
the queue's dead-letter queue ``<queue>.XQ`` with ``message_dead_lettered`` logged and a reason;
the worker goes on with the next message. Queues are the test's own and are deleted afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pika
import pytest
from structlog.testing import capture_logs

from tests.conftest import RABBITMQ_URL, delete_rabbitmq_queues
from tests.integration.stack import Stack, eventually


@pytest.fixture
async def rabbit_stack(database_url: str, redis_namespace: str) -> AsyncIterator[Stack]:
    try:
        async with Stack(database_url, redis_namespace, ipn=False, broker_url=RABBITMQ_URL) as stack:
            await _consumed(f"{stack.namespace}.create-payment")
            yield stack
    finally:
        delete_rabbitmq_queues(redis_namespace)


async def _consumed(queue: str) -> None:
    """Until the worker consumes ``queue``. dramatiq declares a queue on RabbitMQ only when its consumer
    thread starts, and the default exchange drops what is routed to a queue that does not exist yet:
    a foreign sender publishing before that (a busy machine delays the thread) would lose its messages."""

    async def consumers() -> int:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet
            return 0
        finally:
            if connection.is_open:
                connection.close()

    await eventually(consumers)


def _publish(queue: str, body: bytes) -> None:
    """What a non-Python sender does: a persistent message on the default exchange, routed by queue name."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        connection.channel().basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(delivery_mode=2, priority=0),
        )
    finally:
        connection.close()


def _raw_create_payment(stack: Stack, **kwargs: Any) -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": f"{stack.namespace}.create-payment",
        "actor_name": "create_payment",
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    return message_id, json.dumps(body).encode()


def _dead_letter_count(stack: Stack, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return connection.channel().queue_declare(f"{queue}.XQ", passive=True).method.message_count
    finally:
        connection.close()


def _create_kwargs(amount: Any = "15.00") -> dict[str, Any]:
    return {
        "request_id": f"req-{uuid.uuid4().hex[:8]}",
        "user_id": f"user-{uuid.uuid4().hex[:8]}",
        "amount_usd": amount,
        "currency_code": "eth",
    }


async def test_raw_message_from_a_foreign_sender_garbage_and_refused_input_on_rabbitmq(rabbit_stack: Stack):
    stack = rabbit_stack
    queue = f"{stack.namespace}.create-payment"
    assert stack.actors.create_payment.queue_name == queue
    good = _create_kwargs()
    with capture_logs() as logs:
        _publish(queue, b"\x00\xffthis is {not json")
        refused_id, refused = _raw_create_payment(stack, **_create_kwargs(amount=15))  # a JSON number: refused
        _publish(queue, refused)
        _, body = _raw_create_payment(stack, **good)
        _publish(queue, body)

        payment = await stack.payment_for_request(good["request_id"])

        async def both_dead() -> bool:
            return _dead_letter_count(stack, queue) == 2

        await eventually(both_dead)
    assert payment.pay_address and payment.provider_payment_id
    assert (payment.amount_usd, payment.currency_code) == (Decimal("15.00"), "eth")
    dead = [entry for entry in logs if entry["event"] == "message_dead_lettered"]
    assert len(dead) == 2, dead
    reasons = {entry.get("message_id"): entry["reason"] for entry in dead}
    assert "got int" in reasons[refused_id]
    assert reasons[None].startswith("undecodable message body")
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payments") == 1
