"""The settle-deposit queue consumed in groups: many settlements per message fetch, commit and ack.

Senders are unchanged: they enqueue ``settle_deposit(payment_id)`` as before. In the worker, the
consumer of the ``settle-deposit`` queue fetches up to a group of messages at once, settles every
plain first delivery among them in one database transaction (services/settle_batch.py) and acks those
together in one Redis call. Everything else goes through dramatiq's ordinary path, one message at a
time to the ``settle_deposit`` actor, with its retries and dead-lettering: messages the group handed
back (a payment row locked by another transaction, an unknown payment, a failed group), redeliveries
(``retries`` > 0: a failing payment is retried alone), malformed or delayed messages, and messages
carrying callbacks.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq import Message
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import MessageProxy
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed, DecodeError

from domain.errors import InvalidRequest
from services.commands import PaymentMessage
from services.settle_batch import GroupOutcome, settle_group
from settings import Settings
from workers.broker import PaymentsRedisBroker, _DeadLetteringConsumer
from workers.runtime import current_context
from workers.stopping import IN_FLIGHT

log = structlog.get_logger(__name__)

QUEUE = "settle-deposit"
ACTOR = "settle_deposit"
# Options that make dramatiq do more than ack a message when it succeeds: such messages go the ordinary way.
_PER_MESSAGE_OPTIONS = frozenset({"eta", "on_success", "on_failure", "pipe_target", "pipe_ignore"})
# dramatiq's own ack, for many ids: forget each id only if this worker still holds it.
_ACK_MANY = """
for i = 1, #ARGV do
    if redis.call('srem', KEYS[1], ARGV[i]) > 0 then
        redis.call('hdel', KEYS[2], ARGV[i])
    end
end
"""
_ACK_CHUNK = 1000

SettleGroup = Callable[[list[Any]], GroupOutcome]
# A message's key in the group and what the group stage is given for it; None sends it the ordinary way.
Groupable = Callable[[Message[Any]], tuple[str, Any] | None]


def plain_first_delivery(message: Message[Any], actor: str) -> bool:
    """A first delivery to ``actor`` that needs nothing but an ack when it succeeds."""
    options = message.options
    return message.actor_name == actor and not options.get("retries", 0) and not _PER_MESSAGE_OPTIONS & set(options)


def groupable_payment_id(message: Message[Any]) -> str | None:
    """The payment a message settles, if the group may take it; ``None`` sends it the ordinary way."""
    if not plain_first_delivery(message, ACTOR):
        return None
    try:
        return PaymentMessage.from_message(message.args, message.kwargs).payment_id
    except InvalidRequest:
        return None


def groupable_settlement(message: Message[Any]) -> tuple[str, str] | None:
    payment_id = groupable_payment_id(message)
    return None if payment_id is None else (payment_id, payment_id)


def settle_on_runtime_loop(payment_ids: list[str]) -> GroupOutcome:
    """Run the group settlement on the worker's event loop, where its database pool lives."""
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("the worker runtime has not booted")
    return loop_thread.run_coroutine(settle_group(current_context(), payment_ids))


class GroupSettlingConsumer(_DeadLetteringConsumer):
    """Consumer of a queue that runs what it can per group before handing out the rest one at a time.

    ``groupable`` keys each message (messages with one key share a fate); ``settle`` is given one item
    per key and answers which keys it finished (acked together) and which to hand out alone."""

    def __init__(
        self,
        broker: PaymentsRedisBroker,
        queue_name: str,
        prefetch: int,
        timeout: int,
        *,
        group_size: int,
        settle: SettleGroup,
        groupable: Groupable = groupable_settlement,
    ) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.group_size = group_size
        self.settle = settle
        self.groupable = groupable
        self.meters = _meters(broker)
        self.alone: deque[MessageProxy] = deque()  # fetched, to be handed out one at a time
        self._ack_many = broker.client.register_script(_ACK_MANY)
        self._ack_keys = [
            f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}",
            f"{broker.namespace}:{queue_name}.msgs",
        ]

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.alone:
                    message = self.alone.popleft()
                    self.queued_message_ids.add(message.message_id)
                    return message
                bodies = []
                # While messages handed out earlier are still being worked on alone, take no more; and
                # none once the worker is stopping (its workers take nothing new either).
                if len(self.queued_message_ids) < self.prefetch and not IN_FLIGHT.stopping:
                    bodies = self.broker.do_fetch(self.queue_name, self.group_size)
                if not bodies:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    time.sleep(backoff_ms / 1000)
                    return None
                self.misses = 0
                self._take(bodies)
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None

    def _take(self, bodies: Sequence[bytes | None]) -> None:
        by_key: dict[str, list[MessageProxy]] = {}
        items: dict[str, Any] = {}
        for data in bodies:
            if data is None:
                continue
            try:
                message = MessageProxy(Message.decode(data))
            except DecodeError as exc:
                self._dead_letter_undecodable(data, exc)
                continue
            keyed = self.groupable(message)
            if keyed is None:
                self.alone.append(message)
            else:
                by_key.setdefault(keyed[0], []).append(message)
                items.setdefault(keyed[0], keyed[1])
        if not by_key:
            return
        started = current_millis()
        try:
            outcome = self.settle(list(items.values()))
        except Exception as exc:  # the loop or the runtime is gone: the ordinary path reports it per message
            log.warning("settle_group_not_run", size=len(by_key), error=type(exc).__name__, detail=str(exc)[:200])
            outcome = GroupOutcome(finished=frozenset(), left=frozenset(by_key))
        finished = [m for key in outcome.finished for m in by_key.get(key, [])]
        self._count(finished, started)
        self._ack(finished)
        left = [m for key in sorted(outcome.left) for m in by_key.get(key, [])]
        if IN_FLIGHT.stopping:  # a stop cut the group short: put the rest back now, hand nothing out
            self._requeue_at_shutdown(left)
        else:
            self.alone.extend(left)

    def _requeue_at_shutdown(self, messages: list[MessageProxy]) -> None:
        if messages:
            self.requeue(messages)
        for message in messages:
            log.warning("message_requeued_at_shutdown", queue=message.queue_name, actor=message.actor_name,
                        message_id=message.message_id)  # fmt: skip

    def _count(self, messages: list[MessageProxy], started_ms: int) -> None:
        """Count messages the group finished in the worker's metrics as processed, each taking the group's time
        (messages handed out alone are counted by the worker as usual)."""
        for meter in self.meters:
            for message in messages:
                meter.before_process_message(self.broker, message)
                meter.message_start_times[message.message_id] = started_ms
                meter.after_process_message(self.broker, message, result=None)

    def _ack(self, messages: list[MessageProxy]) -> None:
        ids = [message.options["redis_message_id"] for message in messages]
        for start in range(0, len(ids), _ACK_CHUNK):
            self._ack_many(keys=self._ack_keys, args=ids[start : start + _ACK_CHUNK])

    def close(self) -> None:
        """Put back what was fetched but never handed out (the ordinary consumer leaves it to maintenance)."""
        left, self.alone = list(self.alone), deque()
        self._requeue_at_shutdown(left)
        super().close()


def _meters(broker: dramatiq.Broker) -> list[Any]:
    """dramatiq's Prometheus middleware on ``broker``, when the worker serves metrics (workers/broker.py)."""
    module = sys.modules.get("dramatiq.middleware.prometheus")
    if module is None:
        return []
    return [middleware for middleware in broker.middleware if isinstance(middleware, module.Prometheus)]


def install_group_settlement(broker: dramatiq.Broker, settings: Settings) -> None:
    """Consume settle-deposit in groups of ``PAYMENTS_SETTLE_GROUP`` (1 keeps one message at a time).

    Redis only: the group consumer fetches and acks through Redis itself. On RabbitMQ settle-deposit
    messages are settled one at a time by the ordinary consumer."""
    if settings.payments_settle_group <= 1 or not isinstance(broker, PaymentsRedisBroker):
        return

    def consumer(broker: PaymentsRedisBroker, queue_name: str, prefetch: int, timeout: int) -> GroupSettlingConsumer:
        size = settings.payments_settle_group
        return GroupSettlingConsumer(
            broker, queue_name, prefetch, timeout, group_size=size, settle=settle_on_runtime_loop
        )

    broker.consumer_factories[QUEUE] = consumer
