"""The six measurements of issue 10, each against its own scratch database and the real processes."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import asyncpg
import redis

from bench.harness import (
    ADMIN_DSN,
    IPN_SECRET,
    Processes,
    create_database,
    drop_database,
    enqueue_raw,
    free_port,
    group_peak_rss_mb,
    http_ok,
    process_env,
    wait_until,
    workers_ready,
)
from entrypoints.scheduler import poll_due_payments
from gateway.signature import canonical_json, sign
from settings import load_settings
from storage.db import create_pool
from storage.ledger import invariant_violations
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.enqueue import ActorEnqueuer


@dataclass
class WorkerMemory:
    """Peak RSS per worker process seen across every run that had a worker, in MB."""

    children: list[float] = field(default_factory=list)

    def record(self, pgid: int) -> None:
        peaks = group_peak_rss_mb(pgid)
        self.children += [mb for pid, mb in peaks.items() if pid != pgid]  # the dramatiq CLI's worker processes


async def pgbench_tps(*, scale: int, clients: int, seconds: int) -> float:
    """TPC-B-like transactions per second of pgbench in a scratch database."""
    name, _ = await create_database("bench_pgbench", migrated=False)
    base = ADMIN_DSN.rpartition("/")[0]
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    try:
        init = [pgbench, "-i", "-q", "-s", str(scale), f"{base}/{name}"]
        await asyncio.to_thread(subprocess.run, init, check=True, capture_output=True, timeout=600)
        run = [pgbench, "-c", str(clients), "-j", "2", "-T", str(seconds), "-b", "tpcb-like", f"{base}/{name}"]
        out = await asyncio.to_thread(
            subprocess.run, run, check=True, capture_output=True, text=True, timeout=seconds + 120
        )
    finally:
        await drop_database(name)
    match = re.search(r"tps = ([0-9.]+)", out.stdout)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps: {out.stdout[-500:]}")
    return float(match.group(1))


async def _insert_completed(pool: asyncpg.Pool, count: int, users: int) -> None:
    """Completed, unsettled payments as the poll stage leaves them (their creation is not measured)."""
    await pool.execute(
        "INSERT INTO currencies (code, name) VALUES ('btc', 'Bitcoin') ON CONFLICT (code) DO NOTHING"
    )
    await pool.execute(
        """
        INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code, status,
                              gateway_status, provider_payment_id, pay_amount, actually_paid)
        SELECT 'PAY_BENCH_' || g, 'bench-' || g, 'x', 'bench-user-' || (g % $2),
               (1 + (g % 500)) + 0.01 * (g % 100), 'btc', 'completed', 'finished', 'bench-' || g, 0.001, 0.001
          FROM generate_series(1, $1) AS g
        """,
        count,
        users,
    )
    await pool.execute("ANALYZE payments")


async def settlement(redis_url: str, memory: WorkerMemory, *, count: int, users: int, processes: int) -> float:
    """Settlements per second of `payments worker`, from the first settle_deposit enqueued to the last credit."""
    name, dsn = await create_database("bench_settle")
    procs = Processes()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await _insert_completed(pool, count, users)
        await _flush(redis_url)
        env = process_env(dsn, redis_url, WORKER_PROCESSES=str(processes))
        worker = procs.start("worker", env=env)
        wait_until(lambda: workers_ready(redis_url, processes), timeout=60, what="worker processes fetching")
        messages = [[f"PAY_BENCH_{g}"] for g in range(1, count + 1)]
        started = time.perf_counter()
        await asyncio.to_thread(enqueue_raw, redis_url, "settle-deposit", "settle_deposit", messages)
        await _until_settled(pool, count, within=max(120.0, count / 20))
        elapsed = time.perf_counter() - started
        memory.record(worker.pid)
        procs.stop(worker)
        await _check_ledger(pool, count)
        return count / elapsed
    finally:
        await pool.close()
        procs.close()
        await drop_database(name)


async def _until_settled(pool: asyncpg.Pool, count: int, *, within: float) -> None:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if await pool.fetchval("SELECT count(*) FROM payments WHERE settled_at IS NOT NULL") >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"not all {count} payments were credited within {within:.0f} s")


async def _check_ledger(pool: asyncpg.Pool, expected: int) -> None:
    async with pool.acquire() as conn:
        written = await conn.fetchval("SELECT count(*) FROM ledger_transactions")
        problems = await invariant_violations(conn)
    if written != expected or problems:
        raise RuntimeError(f"ledger check failed: {written} transactions for {expected}; {problems[:3]}")


async def _flush(redis_url: str) -> None:
    """Empty the benchmark's own Redis server between runs (never a shared one)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


@dataclass
class Stack:
    """simulator, web, worker and scheduler, as the Procfile runs them, on one scratch database."""

    procs: Processes
    env: dict[str, str]
    web_url: str
    worker_pid: int


async def start_stack(procs: Processes, dsn: str, redis_url: str, *, auto_advance: float | None) -> Stack:
    sim_port, web_port = free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    env = process_env(
        dsn,
        redis_url,
        PORT=str(web_port),
        PUBLIC_BASE_URL=web_url,
        NOWPAYMENTS_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
    )
    sim_args = ["simulator", "--port", str(sim_port)]
    procs.start(*sim_args, *(["--auto-advance", str(auto_advance)] if auto_advance is not None else []), env=env)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{sim_port}/v1/status"), timeout=30, what="simulator up")
    procs.run("currencies", "sync", env=env)
    procs.start("web", env=env)
    worker = procs.start("worker", env=env)
    procs.start("scheduler", env=env)
    wait_until(lambda: http_ok(f"{web_url}/healthz"), timeout=30, what="web up")
    wait_until(lambda: workers_ready(env["REDIS_URL"], 2), timeout=60, what="worker processes fetching")
    return Stack(procs, env, web_url, worker.pid)


async def deposit_path(redis_url: str, memory: WorkerMemory, *, count: int) -> float:
    """Deposits per second: create_payment messages through the simulator and its IPNs to credited."""
    name, dsn = await create_database("bench_deposits")
    procs = Processes()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await _flush(redis_url)
        stack = await start_stack(procs, dsn, redis_url, auto_advance=0.05)
        requests = [[f"bench-{uuid.uuid4().hex}", f"user-{i % 100}", "25.00", "btc", ""] for i in range(count)]
        started = time.perf_counter()
        await asyncio.to_thread(enqueue_raw, redis_url, "create-payment", "create_payment", requests)
        await _until_settled(pool, count, within=max(120.0, count / 5))
        elapsed = time.perf_counter() - started
        memory.record(stack.worker_pid)
        await _check_ledger(pool, count)
        return count / elapsed
    finally:
        await pool.close()
        procs.close()
        await drop_database(name)


async def scheduler_tick(redis_url: str, *, stored: int, due: int) -> float:
    """Seconds of one scheduler tick (claim and enqueue) with ``stored`` payments of which ``due`` are due."""
    name, dsn = await create_database("bench_scheduler")
    pool = await create_pool(dsn, min_size=1, max_size=2)
    settings = load_settings(database_url=dsn, redis_url=redis_url, payments_scheduler_batch=max(due, 1))
    broker = build_broker(settings)
    declare_actors(broker)
    try:
        await pool.execute("INSERT INTO currencies (code, name) VALUES ('btc', 'Bitcoin')")
        await pool.execute(
            """
            INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code,
                                  status, next_poll_at)
            SELECT 'PAY_SCHED_' || g, 'sched-' || g, 'x', 'u' || (g % 1000), 10, 'btc', 'pending',
                   CASE WHEN g <= $2 THEN now() - interval '1 second'
                        WHEN g % 10 = 0 THEN now() + interval '1 hour' END
              FROM generate_series(1, $1) AS g
            """,
            stored,
            due,
        )
        await pool.execute("VACUUM ANALYZE payments")
        started = time.perf_counter()
        claimed = await poll_due_payments(pool, ActorEnqueuer(broker), settings)
        elapsed = time.perf_counter() - started
        if claimed != due:
            raise RuntimeError(f"the tick claimed {claimed} of {due} due payments")
        return elapsed
    finally:
        broker.close()
        await pool.close()
        await drop_database(name)


async def ipn_latency(redis_url: str, *, rate: int, seconds: float) -> tuple[float, float]:
    """p50 and p99 in ms of signed IPNs posted to `payments web` at a steady ``rate`` per second."""
    count = int(rate * seconds)
    name, dsn = await create_database("bench_ipn")
    procs = Processes()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await _flush(redis_url)
        stack = await start_stack(procs, dsn, redis_url, auto_advance=None)
        await pool.execute(
            """
            INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code,
                                  provider_payment_id, pay_amount)
            SELECT 'PAY_IPN_' || g, 'ipn-' || g, 'x', 'u', 10, 'btc', (9000000 + g)::text, 0.001
              FROM generate_series(0, $1 - 1) AS g
            """,
            count,
        )
        latencies = await _post_ipns_at_rate(stack.web_url, count, rate)
        moved = await pool.fetchval("SELECT count(*) FROM payments WHERE status = 'confirming'")
        if moved != count:
            raise RuntimeError(f"{moved} of {count} IPNs moved their payment")
    finally:
        await pool.close()
        procs.close()
        await drop_database(name)
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


async def _post_ipns_at_rate(web_url: str, count: int, rate: int) -> list[float]:
    bodies = [
        canonical_json(
            {
                "payment_id": 9_000_000 + i,
                "payment_status": "confirming",
                "order_id": f"PAY_IPN_{i}",
                "pay_amount": Decimal("0.001"),
                "actually_paid": Decimal("0"),
                "price_amount": Decimal("10"),
            }
        ).encode()
        for i in range(count)
    ]
    latencies: list[float] = []

    async def post(session: aiohttp.ClientSession, body: bytes) -> None:
        headers = {"x-nowpayments-sig": sign(body, IPN_SECRET), "Content-Type": "application/json"}
        sent = time.perf_counter()
        async with session.post(f"{web_url}/ipn/nowpayments", data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"IPN answered {response.status}")
        latencies.append(time.perf_counter() - sent)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        started = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):  # open loop: each request leaves on schedule, answered or not
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(post(session, body)))
        await asyncio.gather(*tasks)
    return latencies
