"""Bounded recovery of a dead worker's messages.

dramatiq's Redis broker keeps every fetched-but-unacked message in an ack set named after the
worker process (``<ns>:__acks__.<broker_id>.<queue>``) and records each process's last broker call
in the sorted set ``<ns>:__heartbeats__``. It moves a dead process's messages back onto their
queues only during "maintenance", run on a random share of broker calls once the process has
missed its heartbeat for ``heartbeat_timeout``: 66-75 s with the defaults, and unbounded on a
quiet queue. Two changes make it bounded and deterministic:

- every worker process beats at least every ``HEARTBEAT_INTERVAL_S`` from a thread of its own
  (``WorkerHeartbeat``), so a live process is never taken for dead even when all its worker
  threads are busy with long messages and its consumers fetch nothing, and the broker's
  ``heartbeat_timeout`` can be short (``HEARTBEAT_TIMEOUT_MS``);
- the scheduler forces one maintenance pass per queue (and delay queue) on every tick
  (``requeue_dead_workers``), so a dead process's messages are back on their queue at most one
  tick after its heartbeat went stale, whatever the traffic.

Bound: ``HEARTBEAT_TIMEOUT_MS`` + one scheduler tick + one consumer poll (``worker_timeout``, 1 s),
i.e. 8 + 2 + 1 = 11 s with the defaults. Delivery stays at least once: a process that was only
cut off from Redis for longer than the timeout may see its messages run a second time elsewhere,
which every stage tolerates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import redis
import structlog
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import Middleware

log = structlog.get_logger(__name__)

HEARTBEAT_TIMEOUT_MS = 8_000
HEARTBEAT_INTERVAL_S = 1.0
_NOOP_COMMAND = "requeue"  # with no message ids the dispatch script's requeue does nothing but maintenance


def heartbeats_key(namespace: str) -> str:
    return f"{namespace}:__heartbeats__"


class WorkerHeartbeat(Middleware):
    """Keeps a worker process's heartbeat fresh from its own thread, independent of message traffic."""

    def __init__(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_until_stopped, args=(broker,), daemon=True, name="heartbeat")
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        # The process still heartbeats through its own broker calls while it drains.
        self._stop.set()

    def _beat_until_stopped(self, broker: Any) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                broker.client.zadd(heartbeats_key(broker.namespace), {broker.broker_id: current_millis()})
            except redis.RedisError as exc:  # Redis away: the broker's own calls fail too; keep trying
                log.warning("worker_heartbeat_failed", error=type(exc).__name__)


def requeue_dead_workers(broker: Any, queue_names: Iterable[str]) -> bool:
    """Run dramatiq's maintenance once on every queue and its delay queue: messages held by worker
    processes whose heartbeat is older than the broker's ``heartbeat_timeout`` go back on their queue.

    Idempotent and safe from any number of schedulers at once (each pass is one atomic Lua script).
    Returns False when Redis did not answer (the next tick tries again).
    """
    dispatch = broker.scripts["dispatch"]
    try:
        for queue_name in sorted(queue_names):
            for name in (queue_name, dq_name(queue_name)):
                dispatch(
                    keys=[broker.namespace],
                    args=[
                        _NOOP_COMMAND,
                        current_millis(),
                        name,
                        broker.broker_id,
                        broker.heartbeat_timeout,
                        broker.dead_message_ttl,
                        1,  # do maintenance
                        broker._max_unpack_size(),
                    ],
                )
    except redis.RedisError as exc:
        log.warning("requeue_pass_failed", error=type(exc).__name__)
        return False
    return True
