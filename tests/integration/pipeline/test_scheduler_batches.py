"""The scheduler's batched enqueue (workers/batch.py) on the real Redis and RabbitMQ.

A tick of 10,000 due payments stores exactly one message per payment, with the actor, queue and
arguments `actor.send` would give it, every middleware's enqueue hooks called for each; a broker
failure part of the way leaves every unsent payment due again at once, and the next tick sends
those (and only those).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import dramatiq
import pika
import pytest
from dramatiq.middleware import Middleware, MiddlewareError

from entrypoints.scheduler import poll_due_payments
from settings import Settings, load_settings
from tests.conftest import RABBITMQ_URL, REDIS_URL, delete_rabbitmq_queues
from tests.integration.pipeline.test_scheduler import _add_currency, _add_payments
from workers.actors import declare_actors
from workers.broker import build_broker, queue_name
from workers.enqueue import ActorEnqueuer

DUE = 10_000
SETTLE = 1_000  # of which are completed but not credited: settle_deposit, not poll_status


class EnqueueRefused(MiddlewareError):
    """What a middleware raises to stop an enqueue (dramatiq lets only a MiddlewareError through)."""


class EnqueueHooks(Middleware):
    """Writes down each before/after_enqueue call; with ``fail_at`` set, the enqueue of that message fails."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_at = fail_at
        self.seen = 0

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: Any) -> None:
        self.seen += 1
        if self.seen == self.fail_at:
            raise EnqueueRefused(f"message {self.seen} refused")
        self.calls.append(("before", message.message_id))

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: Any) -> None:
        self.calls.append(("after", message.message_id))


@pytest.fixture(params=["redis", "rabbitmq"])
def settings(request: pytest.FixtureRequest, database_url: str, redis_namespace: str) -> Iterator[Settings]:
    broker = {} if request.param == "redis" else {"broker_url": RABBITMQ_URL}
    yield load_settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        broker_namespace=redis_namespace,
        payments_scheduler_batch=DUE,
        **broker,
    )
    if request.param == "rabbitmq":
        delete_rabbitmq_queues(redis_namespace)


@pytest.fixture
def broker(settings: Settings) -> Iterator[dramatiq.Broker]:
    broker = build_broker(settings)
    declare_actors(broker)
    yield broker
    broker.close()


@pytest.fixture
async def due(pool: asyncpg.Pool) -> AsyncIterator[dict[str, str]]:
    """Payment id -> the actor its next stage is, for DUE payments due now."""
    async with pool.acquire() as conn:
        await _add_currency(conn)
        polls = await _add_payments(conn, "PAY_poll", DUE - SETTLE, next_poll_in=-5)
        settles = await _add_payments(
            conn, "PAY_done", SETTLE, next_poll_in=-5, status="completed", credit_usd=25, final=True
        )
    yield {**dict.fromkeys(polls, "poll_status"), **dict.fromkeys(settles, "settle_deposit")}


def _taken(broker: dramatiq.Broker, queue: str) -> list[dict[str, Any]]:
    """Every message waiting on ``queue``, decoded, taken straight from the broker's own storage."""
    name = queue_name(broker, queue)
    if isinstance(broker, dramatiq.brokers.redis.RedisBroker):
        client, keys = broker.client, [f"{broker.namespace}:{name}", f"{broker.namespace}:{name}.msgs"]
        ids = client.lrange(keys[0], 0, -1)
        bodies = client.hmget(keys[1], ids) if ids else []
        client.delete(*keys)
        return [dramatiq.get_encoder().decode(body) for body in bodies]
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel, found = connection.channel(), []
        while True:
            try:
                method, _, body = channel.basic_get(name, auto_ack=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:  # nothing was ever sent to this queue
                    return found
                raise
            if method is None:
                return found
            found.append(dramatiq.get_encoder().decode(body))
    finally:
        connection.close()


def _all_taken(broker: dramatiq.Broker) -> list[dict[str, Any]]:
    return _taken(broker, "poll-status") + _taken(broker, "settle-deposit")


def _check_shape(broker: dramatiq.Broker, messages: list[dict[str, Any]], expected: dict[str, str]) -> None:
    """One message per payment, each as its actor's ``send`` would build it."""
    assert Counter(message["args"][0] for message in messages) == Counter(expected.keys())
    redis_ids = isinstance(broker, dramatiq.brokers.redis.RedisBroker)
    for message in messages:
        payment_id = message["args"][0]
        actor = broker.get_actor(expected[payment_id])
        assert message["actor_name"] == actor.actor_name
        assert message["queue_name"] == actor.queue_name
        assert (message["args"], message["kwargs"]) == ([payment_id], {})
        assert set(message["options"]) == ({"redis_message_id"} if redis_ids else set())


async def test_a_tick_of_10000_due_stores_each_message_once_as_send_would(pool, broker, settings, due):
    hooks = EnqueueHooks()
    broker.add_middleware(hooks)

    assert await poll_due_payments(pool, ActorEnqueuer(broker), settings) == DUE

    messages = _all_taken(broker)
    assert len(messages) == DUE
    _check_shape(broker, messages, due)
    # Every message through before_enqueue, then after_enqueue, once each.
    befores = [mid for hook, mid in hooks.calls if hook == "before"]
    afters = [mid for hook, mid in hooks.calls if hook == "after"]
    assert sorted(befores) == sorted(afters) == sorted(message["message_id"] for message in messages)
    position = {call: n for n, call in enumerate(hooks.calls)}
    assert all(position[("before", mid)] < position[("after", mid)] for mid in befores)
    assert await poll_due_payments(pool, ActorEnqueuer(broker), settings) == 0  # all leased, none due


async def test_a_broker_failure_part_way_leaves_the_unsent_due_and_the_next_tick_sends_them(
    pool, broker, settings, due
):
    hooks = EnqueueHooks(fail_at=1_235)
    broker.add_middleware(hooks)
    with pytest.raises(EnqueueRefused):
        await poll_due_payments(pool, ActorEnqueuer(broker), settings)
    stored = _all_taken(broker)
    # Redis stores whole chunks of 500 (two of them); RabbitMQ each message before the failing one.
    assert len(stored) == (1_000 if isinstance(broker, dramatiq.brokers.redis.RedisBroker) else 1_234)
    sent = {message["args"][0] for message in stored}
    rows = await pool.fetch("SELECT id, next_poll_at <= now() AS due_now FROM payments")
    assert {row["id"] for row in rows if row["due_now"]} == set(due) - sent  # at once, not after the lease
    assert {row["id"] for row in rows if not row["due_now"]} == sent

    hooks.fail_at = None
    assert await poll_due_payments(pool, ActorEnqueuer(broker), settings) == DUE - len(sent)
    messages = stored + _all_taken(broker)
    assert len(messages) == DUE
    _check_shape(broker, messages, due)
