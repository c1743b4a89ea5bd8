"""Enqueueing many messages at once: what `broker.enqueue` does for each, in few round trips.

On Redis each chunk of messages goes in one MULTI/EXEC pipeline of dramatiq's own ``dispatch``
script, with exactly the arguments `RedisBroker.enqueue` passes it (a fresh ``redis_message_id``
per message, the same encoding) and the middleware's ``before_enqueue`` / ``after_enqueue`` hooks
called for every message, before and after its chunk is stored. Other brokers (RabbitMQ, whose
publishes each wait for the broker's confirmation) get `broker.enqueue` per message, on one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from services.context import PartialSend

CHUNK = 500  # messages per pipeline: about 200 KB of bodies, one round trip


def enqueue_many(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message]) -> list[dramatiq.Message]:
    """Enqueue ``messages`` in order, as `broker.enqueue` would each; the messages as enqueued.

    Blocking (run it on a thread). Raises `PartialSend` from the broker's error when it fails part of the way.
    """
    enqueued: list[dramatiq.Message] = []
    try:
        if isinstance(broker, RedisBroker):
            for start in range(0, len(messages), CHUNK):
                enqueued += _redis_chunk(broker, messages[start : start + CHUNK])
        else:
            for message in messages:
                enqueued.append(broker.enqueue(message))
    except Exception as exc:
        raise PartialSend(len(enqueued)) from exc
    return enqueued


def _redis_chunk(broker: RedisBroker, messages: Sequence[dramatiq.Message]) -> list[dramatiq.Message]:
    """One MULTI/EXEC of ``dispatch("enqueue", …)`` calls: the chunk is stored whole or not at all."""
    prepared = [message.copy(options={"redis_message_id": str(uuid4())}) for message in messages]
    for message in prepared:
        broker.emit_before("enqueue", message, None)
    dispatch = broker.scripts["dispatch"]
    pipeline = broker.client.pipeline(transaction=True)
    # Maintenance (requeueing dead workers' messages) is drawn once per round trip, as for one enqueue.
    maintenance = broker._should_do_maintenance("enqueue")
    unpack = broker._max_unpack_size()
    for message in prepared:
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            maintenance,
            unpack,
            message.options["redis_message_id"],
            message.encode(),
        ]
        dispatch(keys=[broker.namespace], args=args, client=pipeline)
        maintenance = 0
    pipeline.execute()
    for message in prepared:
        broker.emit_after("enqueue", message, None)
    return prepared
