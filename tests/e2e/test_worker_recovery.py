"""A worker process SIGKILLed in the middle of a message: the scheduler's sweep hands the message to
another worker, which finishes it (README "Recovery of a dead worker's messages": heartbeat timeout +
one sweep interval + one consumer poll, then the message's own run). The seconds taken are printed; the
only timeout is a generous safety net, since speed is measured by the soak, not asserted here."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid

import asyncpg
import redis

from gateway.simulator import SimulatorServer
from tests.conftest import REDIS_URL
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.procs import Launcher, minimal_env, wait_until

SCHEDULER_TICK_S = 60.0  # the sweep has its own 1 s timer: a long tick must not delay it
SAFETY_TIMEOUT_S = 90.0


def _sim(simulator: SimulatorServer, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(simulator.url + path, data=data, method="GET" if body is None else "POST")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local simulator
        return json.loads(response.read())


async def _payment(database_url: str, request_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(
            "SELECT id, provider_payment_id, status FROM payments WHERE request_id = $1", request_id
        )
    finally:
        await conn.close()


def test_a_killed_workers_message_is_finished_by_another_worker(
    launcher: Launcher, database_url, simulator: SimulatorServer, redis_namespace
):
    ns = redis_namespace
    env = minimal_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        BROKER_NAMESPACE=ns,
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
        NOWPAYMENTS_TIMEOUT_SECONDS="60",
        PAYMENTS_POLL_FIRST_DELAY="3600",  # the scheduler must not poll on its own here
        PAYMENTS_SCHEDULER_TICK=str(SCHEDULER_TICK_S),
        WORKER_PROCESSES="1",
        WORKER_THREADS="2",
    )
    assert launcher.run("currencies", "sync", env=env, timeout=60).popen.returncode == 0
    first = launcher.start("worker", env=env, name="worker-a")
    first.wait_for_output("Worker process is ready for action", timeout=60)
    scheduler = launcher.start("scheduler", env=env, name="scheduler")
    scheduler.wait_for_output("scheduler_started", timeout=30)

    client = redis.Redis.from_url(REDIS_URL)
    body = {"request_id": "recovery-1", "user_id": "u-recovery", "amount_usd": "25.00", "currency_code": "btc"}
    _send(client, ns, "create-payment", "create_payment", body)
    payment = wait_until(
        lambda: (p := asyncio.run(_payment(database_url, "recovery-1"))) and p["provider_payment_id"] and p,
        timeout=30,
        what="payment created at the gateway",
    )
    provider_id = payment["provider_payment_id"]
    # The gateway now says finished, and will hold the worker's next look at it for 40 s.
    _sim(simulator, f"/sim/payments/{provider_id}/status", {"status": "finished", "send_ipn": False})
    _sim(simulator, "/sim/faults", {"count": 1, "delay": 40, "path_prefix": f"/v1/payment/{provider_id}"})
    poll_id = _send(client, ns, "poll-status", "poll_status", {"payment_id": payment["id"]})

    def stuck_in_worker_a() -> bool:
        asked = _sim(simulator, f"/sim/requests?path_prefix=/v1/payment/{provider_id}")["requests"]
        return bool(asked) and any(client.scan_iter(match=f"{ns}:__acks__.*.poll-status"))

    wait_until(stuck_in_worker_a, timeout=30, what="worker A inside the gateway call")
    second = launcher.start("worker", env=env, name="worker-b")
    second.wait_for_output("Worker process is ready for action", timeout=60)

    held_by_a = {key for key in client.scan_iter(match=f"{ns}:__acks__.*.poll-status")}
    assert len(held_by_a) == 1 and poll_id.encode() in client.smembers(held_by_a.pop())

    first.kill()  # SIGKILL, the whole process group: nothing is requeued on the way out
    killed_at = time.monotonic()
    wait_until(
        lambda: asyncio.run(_payment(database_url, "recovery-1"))["status"] == "completed",
        timeout=SAFETY_TIMEOUT_S,
        interval=0.2,
        what="the killed worker's poll finished by worker B",
    )
    print(f"recovered {time.monotonic() - killed_at:.1f} s after the kill")
    # Worker B ran it (A is gone), handed over by the scheduler's sweep, not by dramatiq's random fallback,
    # and acked it: nothing is left on the queue, in any ack set or in the message store.
    wait_until(lambda: not client.hexists(f"{ns}:poll-status.msgs", poll_id), timeout=30, what="the poll acked")
    assert not any(client.sismember(key, poll_id) for key in client.scan_iter(match=f"{ns}:__acks__.*"))
    assert client.llen(f"{ns}:poll-status") == 0
    assert "dead_worker_messages_requeued" in scheduler.output
    asked = _sim(simulator, f"/sim/requests?path_prefix=/v1/payment/{provider_id}")["requests"]
    assert len(asked) >= 2  # A's call that never came back, then B's
    client.close()


def _send(client: redis.Redis, ns: str, queue: str, actor: str, kwargs: dict) -> str:
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": queue,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {"redis_message_id": message_id},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    client.hset(f"{ns}:{queue}.msgs", message_id, json.dumps(body))
    client.rpush(f"{ns}:{queue}", message_id)
    return message_id
