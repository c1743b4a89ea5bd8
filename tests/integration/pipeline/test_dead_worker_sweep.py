"""Recovery of a dead worker process's messages (workers/recovery.py) against the real Redis.

Heartbeats and ack sets are written the way dramatiq's dispatch script writes them; the sweeper's
monotonic clock is a list the test advances, so the reachability window needs no sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis
from dramatiq.common import current_millis

from entrypoints.scheduler import run_scheduler
from settings import load_settings
from tests.conftest import REDIS_URL
from tests.e2e.procs import wait_until
from tests.integration.pipeline.test_scheduler import RecordingEnqueuer
from workers.broker import PaymentsRedisBroker
from workers.recovery import HEARTBEAT_TIMEOUT_MS, DeadWorkerSweeper, WorkerHeartbeat, heartbeats_key

QUEUE = "poll-status"


@pytest.fixture
def broker(redis_namespace: str) -> Iterator[PaymentsRedisBroker]:
    b = PaymentsRedisBroker(url=REDIS_URL, namespace=redis_namespace)
    yield b
    b.client.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _enqueue(client: redis.Redis, ns: str, queue: str, *ids: str) -> None:
    for message_id in ids:
        client.hset(f"{ns}:{queue}.msgs", message_id, b"{}")
        client.rpush(f"{ns}:{queue}", message_id)


def _held_by(client: redis.Redis, ns: str, process: str, queue: str, *ids: str, beat_ms_ago: int) -> None:
    """``process`` fetched ``ids`` (they left the queue for its ack set) and last beat ``beat_ms_ago``."""
    for message_id in ids:
        client.hset(f"{ns}:{queue}.msgs", message_id, b"{}")
        client.sadd(f"{ns}:__acks__.{process}.{queue}", message_id)
    client.zadd(heartbeats_key(ns), {process: current_millis() - beat_ms_ago})


def _queue(client: redis.Redis, ns: str, queue: str) -> list[str]:
    return [m.decode() for m in client.lrange(f"{ns}:{queue}", 0, -1)]


def test_a_dead_processs_messages_go_back_to_the_head_of_their_queues(broker, redis_namespace):
    client, ns = broker.client, redis_namespace
    _enqueue(client, ns, QUEUE, "backlog-1", "backlog-2")
    _held_by(client, ns, "dead", QUEUE, "held-1", beat_ms_ago=HEARTBEAT_TIMEOUT_MS + 1_000)
    _held_by(client, ns, "dead", f"{QUEUE}.DQ", "delayed-1", beat_ms_ago=HEARTBEAT_TIMEOUT_MS + 1_000)
    # A queue only some processes declare (the scheduler knows nothing of it): swept all the same.
    _held_by(client, ns, "dead", "deliver-notifications", "notify-1", beat_ms_ago=HEARTBEAT_TIMEOUT_MS + 1_000)
    client.sadd(f"{ns}:__acks__.dead.{QUEUE}", "acked-elsewhere")  # its body is gone: not put back
    _held_by(client, ns, "live", QUEUE, "running-1", beat_ms_ago=500)
    clock = Clock()
    sweeper = DeadWorkerSweeper(broker, clock=clock)

    assert sweeper.sweep() is None  # the first answer only opens the window
    assert _queue(client, ns, QUEUE) == ["backlog-1", "backlog-2"]
    clock.now += HEARTBEAT_TIMEOUT_MS / 1000
    result = sweeper.sweep()

    assert result is not None and (result.dead_processes, result.requeued) == (1, 3)
    assert _queue(client, ns, QUEUE) == ["held-1", "backlog-1", "backlog-2"]
    assert _queue(client, ns, f"{QUEUE}.DQ") == ["delayed-1"]
    assert _queue(client, ns, "deliver-notifications") == ["notify-1"]
    assert list(client.scan_iter(match=f"{ns}:__acks__.dead.*")) == []
    assert client.zscore(heartbeats_key(ns), "dead") is None
    assert client.smembers(f"{ns}:__acks__.live.{QUEUE}") == {b"running-1"}
    again = sweeper.sweep()
    assert again is not None and again.requeued == 0  # idempotent
    assert _queue(client, ns, QUEUE) == ["held-1", "backlog-1", "backlog-2"]


def test_a_scheduler_started_on_a_redis_long_up_judges_without_waiting_a_timeout(broker, redis_namespace):
    client, ns = broker.client, redis_namespace
    assert client.info("server")["uptime_in_seconds"] >= HEARTBEAT_TIMEOUT_MS / 1000  # the shared Redis
    _held_by(client, ns, "dead", QUEUE, "held-1", beat_ms_ago=HEARTBEAT_TIMEOUT_MS + 1_000)
    sweeper = DeadWorkerSweeper(broker, clock=Clock())

    assert sweeper.sweep() is None  # learns how long Redis has been up
    result = sweeper.sweep()  # no time has passed on the sweeper's clock

    assert result is not None and result.requeued == 1
    assert _queue(client, ns, QUEUE) == ["held-1"]


def test_after_an_outage_live_processes_get_a_whole_timeout_to_beat_again(broker, redis_namespace):
    client, ns = broker.client, redis_namespace
    outage_ms = HEARTBEAT_TIMEOUT_MS + 3_000  # every process's last beat is this old when Redis is back
    _held_by(client, ns, "live", QUEUE, "running-1", beat_ms_ago=outage_ms)
    _held_by(client, ns, "dead", QUEUE, "held-1", beat_ms_ago=outage_ms)
    clock = Clock()
    sweeper = DeadWorkerSweeper(broker, clock=clock)
    clock.now += 60  # long after the scheduler started: the window was open before the outage
    sweeper.sweep()
    real_client = broker.client
    broker.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens there
    try:
        assert sweeper.sweep() is None  # Redis away
    finally:
        broker.client.close()
        broker.client = real_client
    clock.now += 1
    assert sweeper.sweep() is None  # back, but the live process has not had the chance to beat yet
    assert client.smembers(f"{ns}:__acks__.live.{QUEUE}") == {b"running-1"}
    client.zadd(heartbeats_key(ns), {"live": current_millis()})  # its heartbeat thread gets through
    clock.now += HEARTBEAT_TIMEOUT_MS / 1000
    result = sweeper.sweep()

    assert result is not None and (result.dead_processes, result.requeued) == (1, 1)
    assert _queue(client, ns, QUEUE) == ["held-1"]
    assert client.smembers(f"{ns}:__acks__.live.{QUEUE}") == {b"running-1"}


def test_a_draining_worker_keeps_beating_until_it_has_stopped(broker, redis_namespace):
    heartbeat = WorkerHeartbeat(interval_s=0.05)
    key = heartbeats_key(redis_namespace)
    heartbeat.after_worker_boot(broker, None)
    try:
        first = wait_until(lambda: broker.client.zscore(key, broker.broker_id), timeout=10, what="a first beat")
        heartbeat.before_worker_shutdown(broker, None)  # draining: its worker threads finish their messages
        wait_until(
            lambda: broker.client.zscore(key, broker.broker_id) > first, timeout=10, what="a beat while draining"
        )
    finally:
        heartbeat.after_worker_shutdown(broker, None)
    beating = [t for t in threading.enumerate() if t.name == "heartbeat"]
    assert beating == []


async def test_the_sweep_runs_on_its_own_timer_whatever_the_tick(database_url, broker):
    sweeper = DeadWorkerSweeper(broker)
    calls: list[object] = []

    def sweep() -> object:
        calls.append(None)
        if len(calls) == 1:
            raise RuntimeError("a sweep that breaks does not end sweeping")
        return sweeper.sweep()

    settings = load_settings(database_url=database_url, redis_url=REDIS_URL, payments_scheduler_tick=3600)
    stop = asyncio.Event()
    scheduler = asyncio.create_task(
        run_scheduler(settings, RecordingEnqueuer(), stop=stop, requeue_dead_workers=sweep, sweep_interval_s=0.05)
    )
    try:
        for _ in range(600):  # one tick is an hour long; the sweeps go on meanwhile
            if len(calls) >= 4 or scheduler.done():
                break
            await asyncio.sleep(0.05)
        assert len(calls) >= 4, f"{len(calls)} sweeps"
    finally:
        stop.set()
        await asyncio.wait_for(scheduler, timeout=30)
