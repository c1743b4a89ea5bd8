"""dramatiq's RabbitMQ broker with the same guarantees as our Redis one (BROKER_URL=amqp://…).

- A body that does not decode is dead-lettered (to ``<queue>.XQ``) and logged as
  ``message_dead_lettered`` with the reason, as on Redis.
- A message whose actor a shutdown interrupted goes straight back to its queue (nack with requeue).
- A namespace other than the default prefixes every queue name (``<namespace>.<queue>``), so
  deployments or test runs sharing one RabbitMQ (and one vhost) never see each other's messages.
- Publishes wait for the broker's confirmation: a send that returns was stored.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial
from typing import Any

import pika
import structlog
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed, DecodeError

from workers.stopping import IN_FLIGHT

log = structlog.get_logger(__name__)

DEFAULT_NAMESPACE = "dramatiq"
MAX_LOGGED_BODY = 200
PING_TIMEOUT_SECONDS = 3.0

_Delivery = tuple[Any, Any, Any]


class _ScreeningConsumer(_RabbitmqConsumer):
    def __init__(self, broker: RabbitmqBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.iterator = self._screened(self.iterator)

    def _screened(self, deliveries: Iterator[_Delivery]) -> Iterator[_Delivery]:
        """Deliveries as they come, except that an undecodable body is dead-lettered and logged here
        (dramatiq would dead-letter it too, but only with a traceback and no reason of ours)."""
        for method, properties, body in deliveries:
            if method is not None:
                try:
                    Message.decode(body)
                except DecodeError as exc:
                    self._nack(method.delivery_tag)
                    log.error(
                        "message_dead_lettered",
                        queue=self.queue_name,
                        reason=f"undecodable message body: {exc.args[2] if len(exc.args) > 2 else exc}",
                        body=bytes(body[:MAX_LOGGED_BODY]).decode("utf-8", "replace"),
                        moved=True,
                    )
                    yield None, None, None
                    continue
            yield method, properties, body

    def ack(self, message: Any) -> None:
        """Acks, except a message whose actor a shutdown interrupted: that one goes back on its queue."""
        if not IN_FLIGHT.take_requeue(message.message_id):
            super().ack(message)
            return
        try:
            self.known_tags.discard(message._tag)
            self.connection.add_callback_threadsafe(partial(self.channel.basic_nack, message._tag, requeue=True))
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            raise ConnectionClosed(exc) from None


class PaymentsRabbitmqBroker(RabbitmqBroker):
    def __init__(self, *, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(url=url, confirm_delivery=True)
        self.namespace = namespace
        self.queue_prefix = "" if namespace == DEFAULT_NAMESPACE else f"{namespace}."

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _ScreeningConsumer

    def ping(self) -> None:
        """Raises unless RabbitMQ accepts a new connection (a cached one may not know it is dead yet)."""
        parameters = self.parameters[0] if isinstance(self.parameters, list) else self.parameters
        probe = copy.copy(parameters)
        probe.socket_timeout = PING_TIMEOUT_SECONDS
        probe.connection_attempts = 1
        pika.BlockingConnection(probe).close()
