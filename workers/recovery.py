"""Bounded recovery of a dead worker process's messages.

dramatiq's Redis broker keeps every fetched-but-unacked message in an ack set named after the worker
process (``<ns>:__acks__.<broker_id>.<queue>``) and records each process's last broker call in the
sorted set ``<ns>:__heartbeats__``. On its own it moves a dead process's messages back only during
"maintenance", run on a random share of broker calls once the process has been silent for the
broker's ``heartbeat_timeout``, and it puts them at the *tail* of their queue (``rpush`` in its
dispatch.lua), behind any backlog. Here:

- every worker process beats every ``HEARTBEAT_INTERVAL_S`` (1 s) from a thread of its own
  (``WorkerHeartbeat``), from boot until its worker has fully stopped (draining included), so a live
  process is never silent for long, however busy its worker threads or its consumers are (Python hands
  the interpreter to another thread every 5 ms, so busy threads cannot hold the beat off; five missed
  beats leave room for a loaded machine);
- the scheduler runs ``DeadWorkerSweeper.sweep`` on its own timer every ``SWEEP_INTERVAL_S`` (1 s),
  whatever its tick does: processes silent for ``HEARTBEAT_TIMEOUT_MS`` (5 s, five missed beats) are
  dead, and every message they held goes back to the *head* of its queue (one atomic script over every
  queue and delay queue they hold messages of), where the next fetch of a live worker takes it before the
  backlog;
- a process is judged only after Redis has answered the sweeper without a break, each answer within a
  second, for a whole timeout (domain/worker_liveness.py): after an outage or a stall every live process's
  beat is as old as it, and judging at once would requeue everything they hold (a storm of duplicates);
- dramatiq's own random maintenance stays as a fallback for when no scheduler runs, with dramatiq's
  60 s timeout (``FALLBACK_HEARTBEAT_TIMEOUT_MS``), so it cannot cause that storm after short outages.

Bound, from the kill until a live worker has the message: the last beat is at most the kill, so the
process is dead 5 s after it; the next sweep comes within 1 s; a consumer fetches within its poll
(``worker_timeout``, 1 s): 5 + 1 + 1 = 7 s, then the message's own run (its gateway calls). Add up to
5 s when Redis has just come back (restarted, or the sweeper lost it), and one sweep when the scheduler
has just started (it takes Redis's uptime for the window it did not see). Delivery stays at least once: a
process cut off from Redis for more than 5 s may see its messages run a second time elsewhere, which
every stage tolerates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware

from domain.worker_liveness import may_judge_liveness, reachable_since_after

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TIMEOUT_MS = 5_000  # the sweeper's: five missed beats
FALLBACK_HEARTBEAT_TIMEOUT_MS = 60_000  # dramatiq's random maintenance (its default): only if no scheduler runs
SWEEP_INTERVAL_S = 1.0

# KEYS[1] namespace; ARGV[1] cutoff (ms: a process whose last beat is at or before it is dead). Same keys and
# rules as dramatiq's dispatch.lua maintenance, except that it takes every queue (and delay queue) a dead process
# holds messages of, whoever declared it, and puts the messages back at the head of their queue, not the tail.
_SWEEP_SCRIPT = """
local namespace = KEYS[1]
local heartbeats = namespace .. ":__heartbeats__"
local dead = redis.call("zrangebyscore", heartbeats, 0, ARGV[1])
local moved = 0
for _, worker in ipairs(dead) do
    local acks = namespace .. ":__acks__." .. worker .. "."
    for _, held in ipairs(redis.call("keys", acks .. "*")) do
        local queue = namespace .. ":" .. string.sub(held, #acks + 1)
        for _, message_id in ipairs(redis.call("smembers", held)) do
            if redis.call("hexists", queue .. ".msgs", message_id) == 1 then
                redis.call("lpush", queue, message_id)
                moved = moved + 1
            end
        end
        redis.call("del", held)
    end
    redis.call("zrem", heartbeats, worker)
end
return {#dead, moved}
"""


def heartbeats_key(namespace: str) -> str:
    return f"{namespace}:__heartbeats__"


class WorkerHeartbeat(Middleware):
    """Keeps a worker process's heartbeat fresh from its own thread, independent of message traffic,
    from worker boot until the worker has stopped (after draining)."""

    def __init__(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_until_stopped, args=(broker,), daemon=True, name="heartbeat")
        self._thread.start()

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        # Not before: a process draining long messages is alive and must not be taken for dead.
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s)

    def _beat_until_stopped(self, broker: Any) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                broker.client.zadd(heartbeats_key(broker.namespace), {broker.broker_id: current_millis()})
            except redis.RedisError as exc:  # Redis away: the broker's own calls fail too; keep trying
                log.warning("worker_heartbeat_failed", error=type(exc).__name__)


@dataclass(frozen=True)
class SweepResult:
    dead_processes: int
    requeued: int


class DeadWorkerSweeper:
    """Puts the messages of worker processes silent for ``timeout_ms`` back at the head of their queues.

    Run by the scheduler every ``SWEEP_INTERVAL_S``. Idempotent and safe from any number of schedulers at
    once (each sweep is one atomic script). Judges nobody until Redis has answered it promptly, without a
    break, for a whole timeout (after an outage or a stall); at its start, Redis's uptime counts as such.
    """

    def __init__(
        self, broker: Any, *, timeout_ms: int = HEARTBEAT_TIMEOUT_MS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.broker = broker
        self.timeout_ms = timeout_ms
        self._clock = clock
        self._reachable_since: float | None = None
        self._failed_yet = False
        self._script = broker.client.register_script(_SWEEP_SCRIPT)

    def sweep(self) -> SweepResult | None:
        """One sweep; None when nobody was judged (Redis did not answer, or not for long enough yet)."""
        started = self._clock()
        judge = may_judge_liveness(self._reachable_since, started, self.timeout_ms / 1000)
        result, up_for_s = None, None
        try:
            if judge:
                dead, moved = self._script(
                    keys=[self.broker.namespace], args=[self._cutoff_ms()], client=self.broker.client
                )
                result = SweepResult(int(dead), int(moved))
            elif self._reachable_since is None and not self._failed_yet:
                up_for_s = self._redis_uptime_s()
            else:
                self.broker.client.ping()
        except redis.RedisError as exc:
            log.warning("dead_worker_sweep_failed", error=type(exc).__name__)
            self._failed_yet = True
            self._reachable_since = reachable_since_after(
                self._reachable_since, answered=False, started=started, finished=self._clock(), slow_after_s=0
            )
            return None
        self._reachable_since = reachable_since_after(
            self._reachable_since,
            answered=True,
            started=started,
            finished=self._clock(),
            slow_after_s=SWEEP_INTERVAL_S,
            up_for_s=up_for_s,
        )
        if result is not None and result.requeued:
            log.warning("dead_worker_messages_requeued", processes=result.dead_processes, messages=result.requeued)
        return result

    def _redis_uptime_s(self) -> float | None:
        """How long Redis has been up (a restart is an outage nobody could beat through); None if it won't say."""
        try:
            return float(self.broker.client.info("server")["uptime_in_seconds"])
        except (redis.ResponseError, KeyError, TypeError, ValueError):  # INFO disabled or unexpected
            self.broker.client.ping()
            return None

    def _cutoff_ms(self) -> int:
        # Taken before the call: a call held up by a stalled Redis judges by the time it was sent.
        return current_millis() - self.timeout_ms
