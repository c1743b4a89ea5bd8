"""Settlement at the database's own speed: the real processes measured against pgbench, one table.

    .venv/bin/python -m bench            # the full run (about 10 minutes on 2 cores)
    .venv/bin/python -m bench --quick    # small sizes, seconds; the test suite runs it and reads nothing into it

Postgres comes from BENCH_DATABASE_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres):
every measurement creates its own scratch database and drops it. Redis is a redis-server of the
benchmark's own on a free port. The processes are the Procfile's: `payments worker`, `payments web`,
`payments scheduler`, `payments simulator`. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from datetime import UTC, datetime

from bench import measures
from bench.harness import private_redis
from entrypoints.logs import configure_logging

FULL = {
    "pgbench": {"scale": 10, "clients": 8, "seconds": 15},
    "settle": 20_000,
    "users": 1_000,
    "deposits": 2_000,
    "scheduler": (100_000, 1_000_000, 10_000),
    "ipn": {"rate": 200, "seconds": 15.0},
}
QUICK = {
    "pgbench": {"scale": 1, "clients": 8, "seconds": 2},
    "settle": 1_000,
    "users": 100,
    "deposits": 40,
    "scheduler": (2_000, 20_000, 200),
    "ipn": {"rate": 200, "seconds": 1.0},
}


def _row(measure: str, figure: str, note: str = "") -> None:
    print(f"| {measure:<44} | {figure:>16} | {note:<34} |", flush=True)


def _machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


async def run(plan: dict, redis_url: str) -> None:
    memory = measures.WorkerMemory()
    base = await measures.pgbench_tps(**plan["pgbench"])
    setup = "scale {scale}, {clients} clients, {seconds} s".format_map(plan["pgbench"])
    _row("pgbench TPC-B-like (before)", f"{base:,.0f} tps", setup)
    count, users = plan["settle"], plan["users"]
    for processes in (1, 2):
        rate = await measures.settlement(redis_url, memory, count=count, users=users, processes=processes)
        label = f"settlement, {count:,} of {users:,} users, {processes} proc"
        _row(label, f"{rate:,.0f} /s", f"{rate / base:.2f}x pgbench (target 1.0x)")
        many = rate
    hot = await measures.settlement(redis_url, memory, count=count, users=1, processes=2)
    label = f"settlement, {count:,} of one user, 2 proc"
    _row(label, f"{hot:,.0f} /s", f"{hot / base:.2f}x pgbench, {hot / many:.2f}x many (0.8x)")
    deposits = await measures.deposit_path(redis_url, memory, count=plan["deposits"])
    _row(f"full deposit path, {plan['deposits']:,} deposits", f"{deposits:,.0f} /s", "target 400/s")
    small, large, due = plan["scheduler"]
    tick_small = await measures.scheduler_tick(redis_url, stored=small, due=due)
    tick_large = await measures.scheduler_tick(redis_url, stored=large, due=due)
    _row(f"scheduler tick, {small:,} stored, {due:,} due", f"{tick_small * 1000:,.0f} ms")
    ratio = f"{tick_large / tick_small:.2f}x the smaller (target 1.5x)"
    _row(f"scheduler tick, {large:,} stored, {due:,} due", f"{tick_large * 1000:,.0f} ms", ratio)
    p50, p99 = await measures.ipn_latency(redis_url, **plan["ipn"])
    _row(f"IPN at {plan['ipn']['rate']} req/s, p50 / p99", f"{p50:.1f} / {p99:.1f} ms", "target p99 50 ms")
    peaks = ", ".join(f"{mb:.0f}" for mb in sorted(memory.children))
    _row("worker peak RSS per process (MB)", f"{max(memory.children, default=0):.0f} MB", f"max of: {peaks}"[:34])
    after = await measures.pgbench_tps(**plan["pgbench"])
    _row("pgbench TPC-B-like (after)", f"{after:,.0f} tps", f"settlement {many / after:.2f}x of this")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, for the test suite")
    args = parser.parse_args()
    configure_logging(level="WARNING", fmt="console")
    plan = QUICK if args.quick else FULL
    print(f"benchmark ({'quick' if args.quick else 'full'}) {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}")
    _row("measure", "figure", "ratio / target")
    with private_redis() as redis_url:
        asyncio.run(run(plan, redis_url))


if __name__ == "__main__":
    main()
