"""Benchmarks: print throughput, latency and memory figures of the real pipeline on this machine.

    .venv/bin/python scripts/bench.py                 # the full run (a few minutes)
    .venv/bin/python scripts/bench.py --quick         # seconds; the test suite runs this variant

Everything runs against the real Postgres and Redis (a fresh database, a private Redis namespace)
and the NOWPayments simulator over HTTP, exactly like the integration tests. Figures are printed,
never asserted: timings depend on the machine.

  settle      N completed payments settled by W real dramatiq worker threads (one user: the hot-row
              case; many users) → messages enqueued/s, settlements/s
  scheduler   cost of one scheduler claim with many payments stored but few due
  ipn         signed IPNs posted concurrently to the web app → requests/s, latency percentiles
  memory      peak RSS of this process (worker threads, web app and simulator included)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import redis

from entrypoints.logs import configure_logging
from entrypoints.scheduler import poll_due_payments
from gateway.signature import canonical_json, sign
from storage.db import connect
from storage.migrate import migrate
from tests.integration.stack import IPN_SECRET, Stack

ADMIN_DSN = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def fresh_database() -> tuple[str, str]:
    name = f"payments_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{name}"
    conn = await connect(dsn)
    await migrate(conn)
    await conn.close()
    return name, dsn


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def insert_completed_payments(pool: asyncpg.Pool, count: int, users: int) -> list[str]:
    """Completed, unsettled payments written in one statement (their creation is not what we measure)."""
    rows = await pool.fetch(
        """
        INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code, status,
                              provider_payment_id, pay_amount, actually_paid, credit_usd)
        SELECT 'PAY_BENCH_' || g, 'bench-' || g || '-' || $3, 'x', 'bench-user-' || (g % $2),
               (1 + (g % 500)) + 0.01 * (g % 100), 'btc', 'completed', 'bench-' || g || '-' || $3,
               0.001, 0.001, (1 + (g % 500)) + 0.01 * (g % 100)
          FROM generate_series(1, $1) AS g
        RETURNING id
        """,
        count,
        users,
        uuid.uuid4().hex[:6],
    )
    return [row["id"] for row in rows]


async def bench_settle(dsn: str, namespace: str, *, count: int, threads: int, users: int) -> dict[str, float]:
    async with Stack(
        dsn, namespace, ipn=False, start_worker=False, worker_threads=threads, db_pool_max=threads + 2
    ) as stack:
        ids = await insert_completed_payments(stack.pool, count, users)
        started = time.perf_counter()
        for payment_id in ids:
            stack.actors.settle_deposit.send(payment_id)
        enqueued = time.perf_counter()
        stack.start_workers()
        while True:
            left = await stack.pool.fetchval("SELECT count(*) FROM payments WHERE settled_at IS NULL")
            if left == 0:
                break
            await asyncio.sleep(0.05)
        finished = time.perf_counter()
        problems = await stack.pool.fetchval("SELECT count(*) FROM ledger_transactions")
        assert problems == count, f"expected {count} ledger transactions, found {problems}"
    return {
        "enqueue_per_s": count / (enqueued - started),
        "settle_per_s": count / (finished - enqueued),
        "drain_s": finished - enqueued,
    }


async def bench_scheduler(dsn: str, namespace: str, *, stored: int, due: int) -> dict[str, float]:
    async with Stack(dsn, namespace, ipn=False, start_worker=False) as stack:
        await stack.pool.execute(
            """
            INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code,
                                  status, next_poll_at)
            SELECT 'PAY_SCHED_' || g, 'sched-' || g, 'x', 'u', 10, 'btc', 'pending',
                   CASE WHEN g <= $2 THEN now() - interval '1 second'
                        WHEN g % 10 = 0 THEN now() + interval '1 hour' END
              FROM generate_series(1, $1) AS g
            """,
            stored,
            due,
        )
        await stack.pool.execute("ANALYZE payments")

        class CountingEnqueuer:
            count = 0

            async def poll_status(self, payment_id: str) -> None:
                self.count += 1

            async def settle_deposit(self, payment_id: str) -> None:
                self.count += 1

            async def process_withdrawal(self, withdrawal_id: str) -> None:
                self.count += 1

        enqueuer = CountingEnqueuer()
        started = time.perf_counter()
        claimed = await poll_due_payments(stack.pool, enqueuer, stack.settings)
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = await poll_due_payments(stack.pool, enqueuer, stack.settings)
        idle = time.perf_counter() - started
    return {
        "stored": stored,
        "claimed": claimed,
        "claim_ms": first * 1000,
        "idle_tick_ms": idle * 1000,
        "claimed_again": again,
    }


async def bench_ipn(dsn: str, namespace: str, *, count: int, concurrency: int) -> dict[str, float]:
    async with Stack(dsn, namespace, ipn=True, start_worker=False) as stack:
        payments = [
            {
                "payment_id": 9_000_000 + i,
                "payment_status": "confirming",
                "order_id": f"PAY_IPN_{i}",
                "pay_amount": Decimal("0.001"),
                "actually_paid": Decimal("0"),
                "price_amount": Decimal("10"),
            }
            for i in range(count)
        ]
        await stack.pool.execute(
            """
            INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code,
                                  provider_payment_id, pay_amount)
            SELECT 'PAY_IPN_' || g, 'ipn-' || g, 'x', 'u', 10, 'btc', (9000000 + g)::text, 0.001
              FROM generate_series(0, $1 - 1) AS g
            """,
            count,
        )
        bodies = [canonical_json(p).encode() for p in payments]
        signatures = [sign(body, IPN_SECRET) for body in bodies]
        latencies: list[float] = []
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                async with stack.http.post(
                    stack.web_url + "/ipn/nowpayments",
                    data=bodies[i],
                    headers={"x-nowpayments-sig": signatures[i], "Content-Type": "application/json"},
                ) as response:
                    assert response.status == 200, await response.text()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        moved = await stack.pool.fetchval("SELECT count(*) FROM payments WHERE status = 'confirming'")
        assert moved == count, f"{moved} of {count} payments moved"
    return {
        "requests_per_s": count / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def main(args: argparse.Namespace) -> None:
    quick = args.quick
    plan = {
        "settle_one_user": dict(count=100 if quick else 3000, threads=8 if quick else 16, users=1),
        "settle_many_users": dict(count=100 if quick else 3000, threads=8 if quick else 16, users=1000),
        "scheduler": dict(stored=2_000 if quick else 200_000, due=50 if quick else 500),
        "ipn": dict(count=100 if quick else 2000, concurrency=8 if quick else 32),
    }
    configure_logging(level="WARNING", fmt="console")
    print(f"benchmarks ({'quick' if quick else 'full'}) on {os.cpu_count()} cores")
    for name, params in plan.items():
        db_name, dsn = await fresh_database()
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            if name.startswith("settle"):
                figures = await bench_settle(dsn, namespace, **params)
            elif name == "scheduler":
                figures = await bench_scheduler(dsn, namespace, **params)
            else:
                figures = await bench_ipn(dsn, namespace, **params)
        finally:
            await drop_database(db_name)
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{namespace}*"))
            if keys:
                client.delete(*keys)
            client.close()
        shown = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        print(f"  {name:18} {params} -> {shown}", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  memory             peak RSS {peak_mb:.0f} MB (this process: workers, web app, simulator)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, for the test suite")
    asyncio.run(main(parser.parse_args()))
