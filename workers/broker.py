"""The dramatiq broker (Redis by default, RabbitMQ for `amqp://`), with the middleware every worker needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.middleware import CurrentMessage, Middleware

from settings import Settings
from workers.recovery import FALLBACK_HEARTBEAT_TIMEOUT_MS, WorkerHeartbeat
from workers.runtime import StageRuntime
from workers.stopping import IN_FLIGHT

log = structlog.get_logger(__name__)

# dramatiq re-queues a dead worker's messages only during "maintenance", run on a random share of
# broker calls (0.1 % by default). The scheduler's sweeper does it every second (workers/recovery.py);
# this 1 % is the fallback when no scheduler runs (60 s timeout, then a minute or two on a quiet queue).
MAINTENANCE_CHANCE = 10_000  # per million broker calls
MAX_LOGGED_BODY = 200


class MalformedMessage(ValueError):
    """Raised when decoding a body that is JSON but not shaped like a dramatiq message."""

    def __init__(self, reason: str, message_id: object) -> None:
        super().__init__(reason)
        self.message_id = message_id if isinstance(message_id, str) else None


# Each field of a message (dramatiq.Message) and the JSON type it must have.
_MESSAGE_SHAPE: tuple[tuple[str, type, str], ...] = (
    ("queue_name", str, "a string"),
    ("actor_name", str, "a string"),
    ("args", list, "a JSON array"),
    ("kwargs", dict, "a JSON object"),
    ("options", dict, "a JSON object"),
    ("message_id", str, "a string"),
    ("message_timestamp", int, "an integer"),
)


class ShapeCheckingEncoder(dramatiq.JSONEncoder):
    """dramatiq's JSON encoding, except that a body not shaped like a message fails to decode.

    Stock dramatiq builds a message from any JSON object: ``kwargs`` as a list then fails in the
    actor call, is retried 25 times, and cannot even be formatted into dramatiq's log line (and
    ``args`` as a string becomes one argument per character). Failing the decode sends the body
    down the dead-letter path for undecodable bodies at once, with the reason.
    """

    def __init__(self, *, require_redis_id: bool = True) -> None:
        super().__init__()
        self.require_redis_id = require_redis_id  # Redis finds a message by that id; RabbitMQ has none

    def decode(self, data: bytes) -> dict[str, Any]:
        fields = super().decode(data)
        if not isinstance(fields, dict):
            raise MalformedMessage(f"a message must be a JSON object, got {type(fields).__name__}", None)
        for name, kind, described in _MESSAGE_SHAPE:
            value = fields.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                got = "nothing" if name not in fields else type(value).__name__
                raise MalformedMessage(f"{name} must be {described}, got {got}", fields.get("message_id"))
        if self.require_redis_id and not isinstance(fields["options"].get("redis_message_id"), str):
            raise MalformedMessage("options.redis_message_id must be a string", fields.get("message_id"))
        return fields


class DeadLetterLog(Middleware):
    """Logs every message dramatiq dead-letters, with the reason: refused input, an unknown actor,
    or retries exhausted on a transient failure."""

    def before_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        exception = getattr(message, "_exception", None)
        log.error(
            "message_dead_lettered",
            queue=message.queue_name,
            actor=message.actor_name,
            message_id=message.message_id,
            retries=message.options.get("retries", 0),
            reason=str(exception) if exception else "failed",
            error=type(exception).__name__ if exception else None,
        )


class _DeadLetteringConsumer(_RedisConsumer):
    """dramatiq's Redis consumer, except that a body which does not decode is dead-lettered.

    Stock dramatiq lets the DecodeError escape, which drops the consumer together with the
    messages it had prefetched (stranded until the process dies) and never removes the bad body.
    """

    def ack(self, message: Any) -> None:
        """Acks, except a message whose actor a shutdown interrupted: that one goes back on its queue."""
        if not IN_FLIGHT.take_requeue(message.message_id):
            super().ack(message)
            return
        try:
            self.requeue([message])
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None
        finally:
            self.queued_message_ids.discard(message.message_id)

    def __next__(self) -> Any:
        while True:
            try:
                return super().__next__()
            except DecodeError as exc:
                self._dead_letter_undecodable(exc.args[1] if len(exc.args) > 1 else b"", exc)

    def _dead_letter_undecodable(self, data: bytes, exc: DecodeError) -> None:
        broker = self.broker
        acks_key = f"{broker.namespace}:__acks__.{broker.broker_id}.{self.queue_name}"
        messages_key = f"{broker.namespace}:{self.queue_name}.msgs"
        # The fetch script returns bodies only; find this body's id among the ones we hold.
        held = sorted(broker.client.smembers(acks_key))
        bodies = broker.client.hmget(messages_key, held) if held else []
        redis_id = next((rid for rid, body in zip(held, bodies, strict=True) if body == data), None)
        if redis_id is not None:
            broker.do_nack(self.queue_name, redis_id.decode() if isinstance(redis_id, bytes) else redis_id)
        cause = exc.args[2] if len(exc.args) > 2 else exc
        log.error(
            "message_dead_lettered",
            queue=self.queue_name,
            message_id=cause.message_id if isinstance(cause, MalformedMessage) else None,
            reason=f"undecodable message body: {cause}",
            body=data[:MAX_LOGGED_BODY].decode("utf-8", "replace") if isinstance(data, bytes) else str(data)[:200],
            moved=redis_id is not None,
        )


class PaymentsRedisBroker(RedisBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # queue name -> consumer factory (broker, queue_name, prefetch, timeout), for queues consumed differently
        self.consumer_factories: dict[str, Callable[..., _RedisConsumer]] = {}

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _DeadLetteringConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _RedisConsumer:
        factory = self.consumer_factories.get(queue_name)
        if factory is None:
            return super().consume(queue_name, prefetch, timeout)
        return factory(self, queue_name, prefetch, timeout)

    def ping(self) -> None:
        """Raises unless Redis answers."""
        self.client.ping()


def queue_name(broker: dramatiq.Broker, queue: str) -> str:
    """The broker's name for one of our queues (RabbitMQ prefixes a non-default namespace)."""
    return f"{getattr(broker, 'queue_prefix', '')}{queue}"


def build_broker(
    settings: Settings,
    *,
    namespace: str | None = None,
    runtime: StageRuntime | None = None,
    metrics: bool = False,
) -> dramatiq.Broker:
    """The broker named by the settings (Redis, or RabbitMQ for `amqp://`), with our runtime (event loop,
    pool, gateway client) and dead-letter logging.

    ``runtime=None`` builds a broker for senders only (the web process, the scheduler, the CLI). ``namespace``
    defaults to ``BROKER_NAMESPACE``. ``metrics`` adds dramatiq's Prometheus middleware (message counts,
    durations and failures by actor), served by the worker CLI on ``WORKER_METRICS_PORT``.
    """
    dramatiq.set_encoder(ShapeCheckingEncoder(require_redis_id=not settings.uses_rabbitmq))
    namespace = namespace or settings.broker_namespace
    broker: dramatiq.Broker
    if settings.uses_rabbitmq:
        from workers.rabbitmq import PaymentsRabbitmqBroker

        broker = PaymentsRabbitmqBroker(url=settings.broker_dsn, namespace=namespace)
    else:
        broker = PaymentsRedisBroker(
            client=redis.Redis.from_url(settings.broker_dsn, **settings.redis_options),
            namespace=namespace,
            maintenance_chance=MAINTENANCE_CHANCE,
            heartbeat_timeout=FALLBACK_HEARTBEAT_TIMEOUT_MS,  # the scheduler's sweeper judges in 5 s
        )
    broker.add_middleware(CurrentMessage())
    if runtime is not None:
        broker.add_middleware(runtime)
        if isinstance(broker, PaymentsRedisBroker):  # RabbitMQ redelivers a dead consumer's messages itself
            broker.add_middleware(WorkerHeartbeat())
    broker.add_middleware(DeadLetterLog())
    if metrics:
        # Imported only here: the module reads its port and directory from the environment at import.
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    dramatiq.set_broker(broker)
    return broker
