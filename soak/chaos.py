"""What goes wrong during the soak, and how long the pipeline takes to get over each worker kill."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from soak.infra import OwnRedis, ScratchDatabase
from soak.supervisor import Supervisor

RECOVERY_CAP_S = 300.0


@dataclass
class ChaosLog:
    kills: int = 0
    recoveries: list[float] = field(default_factory=list)
    unrecovered: int = 0
    redis_outages: int = 0
    terminated_connections: int = 0
    termination_rounds: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


def in_flight(client: redis.Redis, namespace: str) -> set[tuple[str, str]]:
    """(queue, redis message id) of every message fetched and not yet acked, delay queues aside."""
    held = set()
    for key in client.scan_iter(match=f"{namespace}:__acks__.*", count=1000):
        name = key.decode()
        queue = name.split("__acks__.", 1)[1].split(".", 1)[1]
        if queue.endswith(".DQ"):
            continue
        held.update((queue, member.decode()) for member in client.smembers(key))
    return held


def seconds_until_finished(client: redis.Redis, namespace: str, held: set[tuple[str, str]]) -> float | None:
    """Wait until every one of ``held`` has left its queue's message hash (acked, retried or
    dead-lettered); seconds taken, or None past the cap."""
    started = time.monotonic()
    pending = set(held)
    while pending and time.monotonic() - started < RECOVERY_CAP_S:
        try:
            pending = {(q, mid) for q, mid in pending if client.hexists(f"{namespace}:{q}.msgs", mid)}
        except redis.RedisError:
            pass
        if pending:
            time.sleep(0.2)
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
            pid = self.supervisor.kill_random_worker_process()
            if pid is None:
                continue
            self.log.kills += 1
            self._measurements.append(asyncio.create_task(self._measure_recovery()))

    async def _measure_recovery(self) -> None:
        client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        try:
            held = await asyncio.to_thread(_retrying, lambda: in_flight(client, self.namespace))
            seconds = await asyncio.to_thread(seconds_until_finished, client, self.namespace, held)
        finally:
            client.close()
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


def _retrying(read: Callable[[], set[tuple[str, str]]]) -> set[tuple[str, str]]:
    for _ in range(100):
        try:
            return read()
        except redis.RedisError:
            time.sleep(0.2)
    return set()
