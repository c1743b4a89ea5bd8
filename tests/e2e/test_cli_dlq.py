"""`payments dlq` and the worker's Prometheus endpoint, as OS processes.

Every test works under its own BROKER_NAMESPACE in Redis db 0 and touches no other key (the
`redis_namespace` fixture deletes only the keys under that namespace afterwards).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from typing import Any

import asyncpg
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.simulator import SimulatorServer
from tests.conftest import REDIS_URL
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.procs import Launcher, Proc, minimal_env, wait_until
from tests.ports import free_port

QUEUE = "create-payment"


def _message(**kwargs: Any) -> tuple[str, str]:
    """A create_payment message as README's raw-message contract documents it."""
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": QUEUE,
        "actor_name": "create_payment",
        "args": [],
        "kwargs": kwargs,
        "options": {"redis_message_id": message_id, "retries": 25, "traceback": "Traceback ..."},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    return message_id, json.dumps(body)


def _dead_letter(client: redis.Redis, namespace: str, message_id: str, body: str) -> None:
    """What dramatiq's nack does: the id into the XQ sorted set (scored in ms), the body into its hash."""
    client.zadd(f"{namespace}:{QUEUE}.XQ", {message_id: time.time() * 1000})
    client.hset(f"{namespace}:{QUEUE}.XQ.msgs", message_id, body)


def _order(user: str = "user-1", amount: str = "25.00") -> dict[str, str]:
    request_id = f"order-{uuid.uuid4().hex[:8]}"
    return {"request_id": request_id, "user_id": user, "amount_usd": amount, "currency_code": "btc"}


def test_dlq_lists_shows_replays_once_and_purges_only_with_yes(launcher: Launcher, redis_namespace):
    client = redis.Redis.from_url(REDIS_URL)
    ns = redis_namespace
    first, first_body = _message(**_order())
    second, second_body = _message(**_order(amount="7.10"))
    _dead_letter(client, ns, first, first_body)
    _dead_letter(client, ns, second, second_body)
    _dead_letter(client, ns, "garbage-1", "\xff not json")
    env = minimal_env(DATABASE_URL="postgresql://unused@127.0.0.1:1/x", REDIS_URL=REDIS_URL, BROKER_NAMESPACE=ns)

    listed = launcher.run("dlq", "list", QUEUE, env=env)
    assert listed.popen.returncode == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["message", "id"] and len(lines) == 4
    assert any(line.startswith(first) and "create_payment" in line and "amount_usd='25.00'" in line for line in lines)
    assert any(line.startswith("garbage-1") and "undecodable" in line for line in lines)

    as_json = json.loads(launcher.run("dlq", "list", QUEUE, "--json", env=env).stdout)
    assert as_json["total"] == 3 and {m["message_id"] for m in as_json["messages"]} == {first, second, "garbage-1"}
    assert next(m for m in as_json["messages"] if m["message_id"] == second)["kwargs"]["amount_usd"] == "7.10"

    shown = launcher.run("dlq", "show", QUEUE, first, "--json", env=env)
    assert shown.popen.returncode == 0 and json.loads(shown.stdout)["message"] == json.loads(first_body)
    missing = launcher.run("dlq", "show", QUEUE, "no-such-id", env=env)
    assert missing.popen.returncode == 4
    assert missing.stderr.strip() == f"not found: no dead letter 'no-such-id' in {QUEUE}"

    replayed = launcher.run("dlq", "replay", QUEUE, first, env=env)
    assert replayed.popen.returncode == 0, replayed.output
    assert replayed.stdout.strip() == f"{first} replayed onto {QUEUE} (create_payment)"
    assert [m.decode() for m in client.lrange(f"{ns}:{QUEUE}", 0, -1)] == [first]
    back = json.loads(client.hget(f"{ns}:{QUEUE}.msgs", first))
    assert back["kwargs"] == json.loads(first_body)["kwargs"]
    assert back["options"] == {"redis_message_id": first}  # a fresh retry budget
    assert client.zscore(f"{ns}:{QUEUE}.XQ", first) is None and not client.hexists(f"{ns}:{QUEUE}.XQ.msgs", first)

    again = launcher.run("dlq", "replay", QUEUE, first, env=env)
    assert again.popen.returncode == 4 and "no dead letter" in again.stderr
    assert client.llen(f"{ns}:{QUEUE}") == 1, "a second replay must not enqueue the message twice"
    undecodable = launcher.run("dlq", "replay", QUEUE, "garbage-1", env=env)
    assert undecodable.popen.returncode == 1 and "purge it" in undecodable.stderr

    unconfirmed = launcher.run("dlq", "purge", QUEUE, env=env)
    assert unconfirmed.popen.returncode == 2 and "--yes" in unconfirmed.stderr
    assert client.zcard(f"{ns}:{QUEUE}.XQ") == 2
    purged = launcher.run("dlq", "purge", QUEUE, "--yes", env=env)
    assert purged.popen.returncode == 0 and purged.stdout.strip() == f"2 dead letter(s) purged from {QUEUE}"
    assert client.zcard(f"{ns}:{QUEUE}.XQ") == 0 and client.hlen(f"{ns}:{QUEUE}.XQ.msgs") == 0
    assert client.llen(f"{ns}:{QUEUE}") == 1, "purging dead letters leaves the live queue alone"

    empty = launcher.run("dlq", "list", QUEUE, env=env)
    assert empty.popen.returncode == 0 and empty.stdout == "" and f"{QUEUE}: none" in empty.stderr
    client.close()


def _samples(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("actor_name", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_bucket")
    }


async def _payments(database_url: str, request_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM payments WHERE request_id = $1", request_id)
    finally:
        await conn.close()


def _start_worker(launcher: Launcher, env: dict[str, str]) -> Proc:
    synced = launcher.run("currencies", "sync", env=env, timeout=60)
    assert synced.popen.returncode == 0, synced.output
    worker = launcher.start("worker", env=env)
    worker.wait_for_output("Worker process is ready for action", timeout=60)
    return worker


def test_worker_serves_message_counts_by_actor_and_a_replayed_dead_letter_is_worked_once(
    launcher: Launcher, database_url, simulator: SimulatorServer, redis_namespace
):
    ns, port = redis_namespace, free_port()
    env = minimal_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        BROKER_NAMESPACE=ns,
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
        WORKER_PROCESSES="1",
        WORKER_THREADS="2",
        WORKER_METRICS_PORT=str(port),
        WORKER_METRICS_HOST="127.0.0.1",
    )
    client = redis.Redis.from_url(REDIS_URL)
    worker = _start_worker(launcher, env)

    # A malformed message (an amount as a JSON number) sent the documented raw way is dead-lettered.
    bad_id, bad_body = _message(**{**_order(), "amount_usd": 25.0})
    client.hset(f"{ns}:{QUEUE}.msgs", bad_id, bad_body)
    client.rpush(f"{ns}:{QUEUE}", bad_id)
    wait_until(lambda: client.zscore(f"{ns}:{QUEUE}.XQ", bad_id) is not None, timeout=30, what="dead-lettered")
    listed = json.loads(launcher.run("dlq", "list", QUEUE, "--json", env=env).stdout)
    assert [m["message_id"] for m in listed["messages"]] == [bad_id]

    # A good message that died (say, in a gateway outage) is replayed, and replayed again after a
    # second death: the stage's request_id makes the second run find the payment the first made.
    order = _order()
    for _ in range(2):
        good_id, good_body = _message(**order)
        _dead_letter(client, ns, good_id, good_body)
        assert launcher.run("dlq", "replay", QUEUE, good_id, env=env).popen.returncode == 0
        wait_until(lambda: client.llen(f"{ns}:{QUEUE}") == 0 and client.hlen(f"{ns}:{QUEUE}.msgs") == 0,
                   timeout=30, what="replayed message worked and acked")
    assert asyncio.run(_payments(database_url, order["request_id"])) == 1

    def counted() -> dict[tuple[str, str], float] | None:
        try:
            samples = _samples(port)
        except OSError:
            return None
        return samples if samples.get(("dramatiq_messages_total", "create_payment")) == 3 else None

    samples = wait_until(counted, timeout=30, what="worker metrics counting 3 create_payment messages")
    assert samples[("dramatiq_message_errors_total", "create_payment")] == 1
    assert samples[("dramatiq_message_rejects_total", "create_payment")] == 1
    assert samples[("dramatiq_message_duration_milliseconds_count", "create_payment")] == 3

    code, _ = worker.terminate_and_wait(30)
    assert code == 0, worker.output
    client.close()
