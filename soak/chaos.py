"""What goes wrong during the soak, and how long the pipeline takes to get over each worker kill."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis

from soak.infra import OwnRedis, ScratchDatabase
from soak.stack import WORKER_PROCESSES
from soak.supervisor import Supervisor

RECOVERY_CAP_S = 300.0
T = TypeVar("T")
H = TypeVar("H", bound=tuple[str, ...])


@dataclass
class ChaosLog:
    kills: int = 0
    recoveries: list[float] = field(default_factory=list)  # kill → every message it held finished elsewhere
    requeues: list[float] = field(default_factory=list)  # kill → every message it held back on a queue
    unrecovered: int = 0
    nothing_in_flight: int = 0  # kills of processes that held no message
    redis_outages: int = 0
    terminated_connections: int = 0
    termination_rounds: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


def in_flight(client: redis.Redis, namespace: str) -> dict[str, set[tuple[str, str]]]:
    """By worker process (broker id): (queue, redis message id) of every message it fetched and has not
    acked yet, delay queues aside."""
    held: dict[str, set[tuple[str, str]]] = {}
    for key in client.scan_iter(match=f"{namespace}:__acks__.*", count=1000):
        broker_id, _, queue = key.decode().split("__acks__.", 1)[1].partition(".")
        if queue.endswith(".DQ"):
            continue
        held.setdefault(broker_id, set()).update((queue, member.decode()) for member in client.smembers(key))
    return held


def stopped_beating(client: redis.Redis, namespace: str, since_ms: float) -> set[str]:
    """Worker processes (broker ids) whose last heartbeat is older than ``since_ms``: the killed one, and
    its sibling the dramatiq parent stops on the way out."""
    beats = client.zrange(f"{namespace}:__heartbeats__", 0, -1, withscores=True)
    return {member.decode() for member, score in beats if score < since_ms}


def seconds_until_finished(client: redis.Redis, namespace: str, held: set[tuple[str, str]]) -> float | None:
    """Wait until every one of ``held`` has left its queue's message hash (acked, retried or
    dead-lettered); seconds taken, or None past the cap."""
    return _seconds_until_gone(held, lambda item: bool(client.hexists(f"{namespace}:{item[0]}.msgs", item[1])))


def seconds_until_released(client: redis.Redis, namespace: str, held: set[tuple[str, str, str]]) -> float | None:
    """Wait until every one of ``held`` (dead broker id, queue, message id) has left the dead process's ack set:
    put back on its queue for another worker (or finished); seconds taken, or None past the cap."""
    return _seconds_until_gone(
        held, lambda item: bool(client.sismember(f"{namespace}:__acks__.{item[0]}.{item[1]}", item[2]))
    )


def _seconds_until_gone(held: set[H], still_there: Callable[[H], bool]) -> float | None:
    started = time.monotonic()
    pending = set(held)
    while pending and time.monotonic() - started < RECOVERY_CAP_S:
        try:
            pending = {item for item in pending if still_there(item)}
        except redis.RedisError:
            pass
        if pending:
            time.sleep(0.1)
    return None if pending else time.monotonic() - started


class Chaos:
    def __init__(self, supervisor: Supervisor, own_redis: OwnRedis, database: ScratchDatabase, namespace: str,
                 rng: random.Random, *, kill_every: tuple[float, float]) -> None:  # fmt: skip
        self.supervisor = supervisor
        self.redis = own_redis
        self.database = database
        self.namespace = namespace
        self.rng = rng
        self.kill_every = kill_every
        self.log = ChaosLog()
        self._measurements: list[asyncio.Task[None]] = []

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart whatever died, until stopped (and once more after)."""
        while not stop.is_set():
            for name in self.supervisor.restart_dead():
                self.log.restarts[name] = self.log.restarts.get(name, 0) + 1
            await asyncio.sleep(0.3)

    async def kill_workers(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.rng.uniform(*self.kill_every))
            if stop.is_set():
                break
            pid = self.supervisor.kill_random_worker_process(WORKER_PROCESSES)
            if pid is None:
                continue
            self.log.kills += 1
            self._measurements.append(asyncio.create_task(self._measure_recovery()))

    async def _measure_recovery(self) -> None:
        """Seconds from the kill until every message the dead processes held was finished elsewhere."""
        client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        killed_at_ms = time.time() * 1000
        started = time.monotonic()
        try:
            by_process = await asyncio.to_thread(_retrying, lambda: in_flight(client, self.namespace))
            await asyncio.sleep(3.0)  # live processes beat every second
            dead = await asyncio.to_thread(_retrying, lambda: stopped_beating(client, self.namespace, killed_at_ms))
            owned = {(broker_id, q, mid) for broker_id in dead for q, mid in by_process.get(broker_id, set())}
            held = {(q, mid) for _, q, mid in owned}
            released, seconds = await asyncio.gather(
                asyncio.to_thread(seconds_until_released, client, self.namespace, owned),
                asyncio.to_thread(seconds_until_finished, client, self.namespace, held),
            )
        finally:
            client.close()
        if not held:
            self.log.nothing_in_flight += 1
            return
        if released is not None:
            self.log.requeues.append(released + 3.0)  # from the kill: the 3 s waited above included
        if seconds is not None:
            seconds = time.monotonic() - started
        if seconds is None:
            self.log.unrecovered += 1
        else:
            self.log.recoveries.append(seconds)

    async def terminate_connections(self, stop: asyncio.Event, every: float) -> None:
        while not stop.is_set():
            await asyncio.sleep(every)
            if not stop.is_set():
                self.log.terminated_connections += await self.database.terminate_connections()
                self.log.termination_rounds += 1

    def crash(self, name: str) -> None:
        self.supervisor.crash(name)
        self.log.events.append(f"crashed {name}")

    async def redis_outage(self, seconds: float) -> None:
        await asyncio.to_thread(self.redis.stop)
        self.log.events.append(f"redis stopped for {seconds:.0f} s")
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.redis.start)
        self.log.redis_outages += 1

    async def settle_measurements(self) -> None:
        await asyncio.gather(*self._measurements)


def _retrying(read: Callable[[], T]) -> T:
    for _ in range(100):
        try:
            return read()
        except redis.RedisError:
            time.sleep(0.2)
    return read()
