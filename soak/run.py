"""One soak run: set up, drive under chaos, drain, judge, report, tear down."""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis

from soak.chaos import Chaos
from soak.driver import DB_ERRORS, Driver, Progress, ProviderIds, drive
from soak.http import Http
from soak.infra import OwnRedis, ScratchDatabase
from soak.plan import UserPlan, make_plan
from soak.stack import (
    API_TOKEN,
    GATEWAY_TIMEOUT_S,
    NAMESPACE,
    OPERATOR_TOKEN,
    SECRETS,
    Endpoints,
    gateway_orphans,
    start_stack,
)
from soak.supervisor import Supervisor
from soak.verdicts import Figures, judge_deposits, judge_ledger, judge_messages, judge_withdrawals, note_reviews

DRAIN_SQL = """
SELECT (SELECT count(*) FROM payments WHERE settled_at IS NULL AND status NOT IN ('failed', 'expired'))
     + (SELECT count(*) FROM withdrawals WHERE status NOT IN ('completed', 'rejected', 'cancelled', 'failed'))
"""


@dataclass(frozen=True)
class Options:
    users: int
    deposits_per_user: int
    concurrency: int
    kill_every: tuple[float, float]
    terminate_every: float
    redis_outage_s: float
    drain_deadline_s: float
    worker_threads: int
    seed: int
    workdir: Path
    admin_dsn: str


FULL = {"users": 1000, "deposits_per_user": 5, "concurrency": 120, "kill_every": (4.0, 8.0), "terminate_every": 15.0,
        "redis_outage_s": 4.0, "drain_deadline_s": 900.0, "worker_threads": 8}  # fmt: skip
QUICK = {"users": 40, "deposits_per_user": 5, "concurrency": 60, "kill_every": (6.0, 10.0), "terminate_every": 10.0,
         "redis_outage_s": 3.0, "drain_deadline_s": 240.0, "worker_threads": 8}  # fmt: skip


async def soak(options: Options) -> int:
    """Run the soak; SIGTERM or SIGINT stop it and still tear everything down."""
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    run_id = uuid.uuid4().hex[:6]
    plans = make_plan(users=options.users, deposits_per_user=options.deposits_per_user, seed=options.seed,
                      run_id=run_id)  # fmt: skip
    database = ScratchDatabase(options.admin_dsn)
    own_redis = OwnRedis(options.workdir)
    supervisor = Supervisor(options.workdir, random.Random(options.seed))
    await database.create()
    try:
        own_redis.start()
        endpoints = await asyncio.to_thread(
            start_stack, supervisor, database.url, own_redis.url, seed=options.seed, workers=options.worker_threads
        )
        chaos = Chaos(supervisor, own_redis, database, NAMESPACE, random.Random(options.seed + 1),
                      kill_every=options.kill_every)  # fmt: skip
        return await _run(options, plans, database, own_redis, supervisor, endpoints, chaos)
    finally:
        supervisor.stop_all()
        own_redis.stop()
        await database.drop()


async def _run(options: Options, plans: list[UserPlan], database: ScratchDatabase, own_redis: OwnRedis,
               supervisor: Supervisor, endpoints: Endpoints, chaos: Chaos) -> int:  # fmt: skip
    progress = Progress()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        http = Http(session, web_url=endpoints.web_url, sim_url=endpoints.sim_url, api_token=API_TOKEN,
                    operator_token=OPERATOR_TOKEN)  # fmt: skip
        await _misbehave(http)
        driver = Driver(http, ProviderIds(database.url), progress, step_delay=0.3)
        started = time.monotonic()
        stop = asyncio.Event()
        background = [
            asyncio.create_task(chaos.supervise(stop)),
            asyncio.create_task(chaos.kill_workers(stop)),
            asyncio.create_task(chaos.terminate_connections(stop, options.terminate_every)),
            asyncio.create_task(_one_offs(chaos, progress, len(plans) * options.deposits_per_user, options, stop)),
        ]
        await drive(driver, plans, options.concurrency)
        driven = time.monotonic() - started
        stop.set()
        await asyncio.gather(*background)
        supervisor.restart_dead()
        await http.sim("DELETE", "/sim/faults")
        await http.sim("DELETE", "/sim/ipn-delivery")
        drain_started = time.monotonic()
        drained = await _drain(database.url, own_redis.url, options.drain_deadline_s)
        drain_s = time.monotonic() - drain_started
        await chaos.settle_measurements()
        sim_payments = await http.sim("GET", "/sim/payments")
        sim_payouts = await http.sim("GET", "/sim/payouts")
    figures = await _judge(plans, database.url, own_redis.url, supervisor, sim_payments, sim_payouts)
    orphans = await asyncio.to_thread(gateway_orphans, endpoints.env)
    _report(options, progress, chaos, figures, driven=driven, drain_s=drain_s if drained else None, http=http)
    if orphans is not None:
        funded = sum(1 for orphan in orphans if orphan.get("funds_received"))
        print(f"gateway orphans (second gateway payments after a lost answer), by payments reconcile --gateway: "
              f"{len(orphans)}, {funded} with funds (held, never credited)")  # fmt: skip
    return 0 if all(v.ok for v in figures.verdicts) and drained and not progress.problems else 1


async def _misbehave(http: Http) -> None:
    """10 % of gateway calls fail: half answer 503, half answer too late (a timeout, after acting)."""
    await http.sim("POST", "/sim/faults", {"status": 503, "rate": 0.05, "path_prefix": "/v1/"})
    await http.sim("POST", "/sim/faults", {"delay": GATEWAY_TIMEOUT_S + 1, "rate": 0.05, "path_prefix": "/v1/"})
    await http.sim("POST", "/sim/ipn-delivery",
                   {"duplicate_rate": 0.2, "delay_rate": 0.2, "reorder_rate": 0.2, "delay_seconds": 2})  # fmt: skip


async def _one_offs(chaos: Chaos, progress: Progress, total: int, options: Options, stop: asyncio.Event) -> None:
    """The web crashes at a quarter of the deposits, Redis stops at 45 %, the scheduler crashes at 65 %."""
    plan: list[tuple[float, Any]] = [(0.25, "web"), (0.45, "redis"), (0.65, "scheduler")]
    while plan and not stop.is_set():
        share, what = plan[0]
        if progress.deposits_sent >= share * total:
            plan.pop(0)
            if what == "redis":
                await chaos.redis_outage(options.redis_outage_s)
            else:
                chaos.crash(what)
        await asyncio.sleep(0.2)


async def _drain(dsn: str, redis_url: str, deadline_s: float) -> bool:
    """Until every payment and withdrawal is where it ends and every queue is empty."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            try:
                conn = await asyncpg.connect(dsn)
                try:
                    open_records = await conn.fetchval(DRAIN_SQL)
                finally:
                    await conn.close()
                queued = sum(  # waiting, delayed (retries) or in flight: every message body not yet acked
                    client.hlen(key)
                    for key in client.scan_iter(match=f"{NAMESPACE}:*.msgs")
                    if not key.endswith(b".XQ.msgs")
                )
            except (*DB_ERRORS, redis.RedisError):
                open_records, queued = 1, 1
            if open_records == 0 and queued == 0:
                return True
            await asyncio.sleep(1.0)
        return False
    finally:
        client.close()


async def _judge(plans: list[UserPlan], dsn: str, redis_url: str, supervisor: Supervisor,
                 sim_payments: dict[str, Any], sim_payouts: dict[str, Any]) -> Figures:  # fmt: skip
    from soak.verdicts import DEPOSITS_SQL, WITHDRAWALS_SQL

    figures = Figures()
    conn = await asyncpg.connect(dsn)
    try:
        deposit_ids = [d.request_id for plan in plans for d in plan.deposits]
        rows = {r["request_id"]: r for r in await conn.fetch(DEPOSITS_SQL, deposit_ids)}
        by_id = {p["payment_id"]: p for p in sim_payments["payments"]}
        stored = {r["id"]: by_id[r["provider_payment_id"]] for r in rows.values() if r["provider_payment_id"] in by_id}
        judge_deposits(figures, plans, rows, stored)
        withdrawal_ids = [p.withdrawal.request_id for p in plans]
        wd_rows = {r["request_id"]: r for r in await conn.fetch(WITHDRAWALS_SQL, withdrawal_ids)}
        payouts: dict[str, list[dict[str, Any]]] = {}
        for payout in sim_payouts["payouts"]:
            payouts.setdefault(payout.get("unique_external_id") or "", []).append(payout)
        judge_withdrawals(figures, plans, wd_rows, payouts)
        await judge_ledger(figures, conn)
        await note_reviews(figures, conn)
    finally:
        await conn.close()
    logs = "\n".join(dyno.output() for dyno in supervisor.dynos.values())
    client = redis.Redis.from_url(redis_url)
    try:
        judge_messages(figures, client, NAMESPACE, logs)
    finally:
        client.close()
    leaked = [s for s in SECRETS if s in logs]
    figures.check("no secret in any process log", leaked, "none of the 5 secrets appears")
    return figures


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "none measured"
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"max {ordered[-1]:.1f} s, p95 {p95:.1f} s, median {statistics.median(ordered):.1f} s"


def _report(options: Options, progress: Progress, chaos: Chaos, figures: Figures, *, driven: float,
            drain_s: float | None, http: Http) -> None:  # fmt: skip
    log = chaos.log
    recoveries = sorted(log.recoveries)
    print("=== payments soak report ===")
    print(f"driven: {progress.deposits_sent} deposits, {progress.withdrawals_sent} withdrawals, {options.users} users, "
          f"{options.concurrency} concurrent clients, 20 % sending every message twice, in {driven:.0f} s")
    print(f"chaos: {log.kills} worker processes SIGKILLed, restarts {log.restarts}, {log.redis_outages} Redis "
          f"outage(s) of {options.redis_outage_s:.0f} s, {log.terminated_connections} database connections "
          f"terminated in {log.termination_rounds} rounds, gateway 5 % 503 + 5 % timeouts, IPNs 20 % duplicated/"
          f"delayed/reordered; {'; '.join(log.events)}")
    if recoveries:
        print(f"recovery after a kill (every message the dead processes held back on a queue): {_spread(log.requeues)}")
        print(f"recovery after a kill (every message the dead processes held finished by another, its own run time "
              f"included): {_spread(recoveries)} over {len(recoveries)} kills ({log.nothing_in_flight} more killed a "
              f"process holding nothing){f', {log.unrecovered} not recovered' if log.unrecovered else ''}")
    print(f"time to drain after the chaos stopped: {f'{drain_s:.0f} s' if drain_s is not None else 'NOT DRAINED'}")
    print(f"client retries (5xx or no answer): {http.retries}")
    for kind, count in progress.problems.items():
        print(f"CLIENT PROBLEM {kind}: {count}, e.g. {progress.examples[kind]}")
    for verdict in figures.verdicts:
        print(f"[{'ok' if verdict.ok else 'VIOLATION'}] {verdict.name}: {verdict.detail}")
    for note in figures.notes:
        print(f"note: {note}")
    print(f"logs: {options.workdir}")
