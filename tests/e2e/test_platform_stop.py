"""Stopping like a platform stops, with a deposit in flight and the gateway hanging.

Heroku sends SIGTERM to every process of a dyno (honcho does the same on Ctrl-C), sometimes
more than once, and SIGKILLs what is left 30 s later. Here web, worker and scheduler each run
in their own process group, as dynos do; the simulator holds the worker's gateway call open;
each group is signalled (once, three times, or only its leader). Every process must be gone
within 25 s, the interrupted message must be back on its queue (not acked, not retried later),
and after a restart the deposit is credited exactly once. On Redis (three ways) and once on
RabbitMQ. The stop times are printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import pika
import pytest
import redis

from gateway.simulator import SimulatorServer
from tests.conftest import RABBITMQ_URL, REDIS_URL, delete_rabbitmq_queues
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.procs import Launcher, Proc, http_get, minimal_env, wait_until
from tests.ports import free_port

# These tests assert wall-clock bounds on stopping and recovery: under xdist they run one after another on
# one worker (scripts/test --dist loadgroup) rather than beside each other.
pytestmark = pytest.mark.xdist_group("stop-and-recovery-bounds")

API_TOKEN = "platform-stop-api-token"
STOP_BOUND = 25.0  # the platform kills at 30 s; we want margin
HANG_SECONDS = 120  # longer than any stop: the gateway call only ends because the worker cancels it
PROCESSES = ("web", "worker", "scheduler")


def _http(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback URLs the test builds
        url, method=method, data=json.dumps(body).encode() if body is not None else None
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, json.loads(response.read() or b"null")


def _signal_all(procs: list[Proc], how: str, started: float, stop_seconds: dict[str, float]) -> None:
    """SIGTERM every process group (or only its leader), in rounds 0.3 s apart, noting who is already gone."""
    for _ in range(3 if how == "group-thrice" else 1):
        for proc in procs:
            if how == "leader":
                proc.popen.send_signal(signal.SIGTERM)
                continue
            try:
                os.killpg(proc.pgid, signal.SIGTERM)
            except ProcessLookupError:
                stop_seconds.setdefault(proc.name.split("-")[0], round(time.monotonic() - started, 1))
        time.sleep(0.3)


def _start_all(launcher: Launcher, env: dict[str, str], round_: str) -> dict[str, Proc]:
    procs = {name: launcher.start(name, env=env, name=f"{name}-{round_}") for name in PROCESSES}
    worker = procs["worker"]
    worker.wait_for_output("Worker process is ready for action", timeout=40)
    wait_until(  # every worker process, not only the first (a signal during boot is another story)
        lambda: worker.output.count("Worker process is ready for action") == int(env["WORKER_PROCESSES"]),
        timeout=40,
        what="both worker processes ready",
    )
    procs["scheduler"].wait_for_output("scheduler_started", timeout=30)
    base = f"http://127.0.0.1:{env['PORT']}"

    def web_ready() -> bool:
        try:
            return http_get(base + "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(web_ready, timeout=30, what="web ready")
    return procs


async def _deposit_postings(dsn: str, request_id: str) -> tuple[str | None, int]:
    conn = await asyncpg.connect(dsn)
    try:
        payment = await conn.fetchrow("SELECT id, settled_at FROM payments WHERE request_id = $1", request_id)
        if payment is None:
            return None, 0
        postings = await conn.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE idempotency_key = $1", f"deposit:{payment['id']}"
        )
        return payment["id"], postings
    finally:
        await conn.close()


async def _provider_payment_id(dsn: str, request_id: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT provider_payment_id FROM payments WHERE request_id = $1", request_id)
    finally:
        await conn.close()


def _queued(broker: str, namespace: str, queue: str) -> int:
    """Messages waiting on one of the test's queues (not counting any held by a consumer)."""
    if broker == "rabbitmq":
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        try:
            return connection.channel().queue_declare(f"{namespace}.{queue}", passive=True).method.message_count
        finally:
            connection.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return client.llen(f"{namespace}:{queue}")
    finally:
        client.close()


@pytest.fixture
def process_broker_env(request: pytest.FixtureRequest, broker_env: dict[str, str]) -> Iterator[dict[str, str]]:
    if request.param == "redis":
        yield broker_env
        return
    yield {**broker_env, "BROKER_URL": RABBITMQ_URL}
    delete_rabbitmq_queues(broker_env["BROKER_NAMESPACE"])


@pytest.mark.parametrize(
    ("how", "process_broker_env"),
    [("group-once", "redis"), ("group-thrice", "redis"), ("leader", "redis"), ("group-thrice", "rabbitmq")],
    indirect=["process_broker_env"],
)
def test_each_process_group_stops_within_25s_while_the_gateway_hangs_and_the_deposit_is_credited_once(
    how: str, launcher: Launcher, database_url: str, simulator: SimulatorServer, process_broker_env: dict[str, str]
):
    broker_env = process_broker_env
    broker = "rabbitmq" if "BROKER_URL" in broker_env else "redis"
    port = free_port()
    env = minimal_env(
        DATABASE_URL=database_url,
        **broker_env,
        PORT=str(port),
        API_TOKEN=API_TOKEN,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
        NOWPAYMENTS_TIMEOUT_SECONDS="60",  # the client alone would wait a minute
        WORKER_PROCESSES="2",
        WORKER_THREADS="2",
        PAYMENTS_SCHEDULER_TICK="0.5",
        PAYMENTS_POLL_FIRST_DELAY="1",
        PAYMENTS_POLL_MIN_INTERVAL="1",
    )
    synced = launcher.run("currencies", "sync", env=env, timeout=60)
    assert synced.popen.returncode == 0, synced.output
    first = _start_all(launcher, env, "first")

    # The gateway takes in the next payment creation and never answers it.
    _http(
        "POST",
        simulator.url + "/sim/faults",
        {"path_prefix": "/v1/payment", "method": "POST", "count": 1, "delay": HANG_SECONDS},
    )
    request_id, user = f"req-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{port}"
    status, _ = _http(
        "POST",
        base + "/v1/deposits",
        {"request_id": request_id, "user_id": user, "amount_usd": "25.00", "currency_code": "btc"},
        token=API_TOKEN,
    )
    assert status == 202

    def gateway_call_hanging() -> bool:
        _, answer = _http("GET", simulator.url + "/sim/requests?path_prefix=/v1/payment")
        return any(r["method"] == "POST" and "status" not in r for r in answer["requests"])

    wait_until(gateway_call_hanging, timeout=30, what="the worker's gateway call in flight")

    started = time.monotonic()
    stop_seconds: dict[str, float] = {}
    _signal_all(list(first.values()), how, started, stop_seconds)
    while len(stop_seconds) < len(first) and time.monotonic() - started < STOP_BOUND + 5:
        for name, proc in first.items():
            if name not in stop_seconds and not proc.live_group():
                stop_seconds[name] = round(time.monotonic() - started, 1)
        time.sleep(0.1)
    print(f"\nstop times after SIGTERM ({how}, {broker}, gateway hanging): {stop_seconds}")
    for name, proc in first.items():
        assert name in stop_seconds, f"{name} still running {STOP_BOUND + 5}s after SIGTERM:\n{proc.output[-3000:]}"
        assert stop_seconds[name] < STOP_BOUND, (name, stop_seconds)
        assert proc.popen.wait(5) == 0, f"{name} exited {proc.popen.returncode}:\n{proc.output[-3000:]}"
    assert "message_requeued_at_shutdown" in first["worker"].output, first["worker"].output[-3000:]

    # Nothing was lost: the interrupted message is back on its own queue, neither acked nor delayed as a retry.
    assert _queued(broker, broker_env["BROKER_NAMESPACE"], "create-payment") == 1
    payment_id, postings = asyncio.run(_deposit_postings(database_url, request_id))
    assert payment_id is not None and postings == 0

    # Restarted, with the gateway answering again: the same deposit is created, paid and credited once.
    _http("DELETE", simulator.url + "/sim/faults")
    second = _start_all(launcher, env, "second")

    def created_at_gateway() -> str | None:
        return asyncio.run(_provider_payment_id(database_url, request_id))

    provider_id = wait_until(created_at_gateway, timeout=40, what="the deposit created at the gateway")
    _http("POST", f"{simulator.url}/sim/payments/{provider_id}/play", {"scenario": "paid"})

    def credited() -> Decimal | None:
        _, balance = http_get(f"{base}/v1/users/{user}/balance", token=API_TOKEN)
        return Decimal(balance["balance_usd"]) or None

    assert wait_until(credited, timeout=40, what="the deposit credited") == Decimal("25.00")
    time.sleep(1.5)  # a couple more scheduler ticks: nothing more may be credited
    assert http_get(f"{base}/v1/users/{user}/balance", token=API_TOKEN)[1]["balance_usd"] == "25.00"
    assert asyncio.run(_deposit_postings(database_url, request_id)) == (payment_id, 1)
    for proc in second.values():
        code, _ = proc.terminate_and_wait(STOP_BOUND)
        assert code == 0, proc.output[-3000:]
