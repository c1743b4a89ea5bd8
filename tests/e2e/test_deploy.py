"""A fresh deploy from the Procfile lines alone: release, then web, worker and scheduler.

Nothing is run by hand: no `payments migrate`, no `payments currencies sync`. The database is brand
new, Redis is a server of the test's own, and the simulator (paying by itself) is the gateway.
With LOG_FORMAT=json every line every process writes is one JSON object, dramatiq's included.
"""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimulatorConfig, SimulatorServer
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.private_redis import run_private_redis
from tests.e2e.procs import BIN, REPO, Proc, http_get, minimal_env, wait_until
from tests.ports import free_port

API_TOKEN = "deploy-test-api-token-71"
STOP_BUDGET = 30.0


def procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text(encoding="utf-8").splitlines()
    return {name.strip(): command.strip() for name, command in (line.split(":", 1) for line in lines if line.strip())}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    yield from run_private_redis(tmp_path / "redis")


@pytest.fixture
def paying_simulator() -> Iterator[SimulatorServer]:
    sim = SimulatorServer(SimulatorConfig(ipn_secret=SIM_IPN_SECRET, api_key=SIM_API_KEY, auto_advance_seconds=0.5))
    sim.start()
    yield sim
    sim.stop()


class Dyno:
    """Runs Procfile lines as a platform does: `bash -c LINE`, each in its own process group."""

    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir = logdir
        self.env = env
        self.procs: list[Proc] = []

    def start(self, process_type: str) -> Proc:
        proc = Proc(["bash", "-c", f"exec {procfile()[process_type]}"], self.env, self.logdir, process_type)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()


@pytest.fixture
def dyno_env(empty_database_url: str, private_redis: str, paying_simulator: SimulatorServer) -> dict[str, str]:
    port = free_port()
    return minimal_env(
        PATH=f"{BIN}:/usr/bin:/bin",
        DATABASE_URL=empty_database_url,
        REDIS_URL=private_redis,
        PORT=str(port),
        API_TOKEN=API_TOKEN,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=paying_simulator.api_url,
        PAYMENTS_POLL_FIRST_DELAY="1",
        PAYMENTS_POLL_MIN_INTERVAL="1",
        PAYMENTS_SCHEDULER_TICK="0.5",
        WORKER_PROCESSES="1",
        WORKER_THREADS="2",
        LOG_FORMAT="json",
    )


@pytest.fixture
def dyno(tmp_path: Path, dyno_env: dict[str, str]) -> Iterator[Dyno]:
    logdir = tmp_path / "dyno-logs"
    logdir.mkdir()
    platform = Dyno(logdir, dyno_env)
    yield platform
    platform.cleanup()


def _post(url: str, body: dict[str, str]) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback URL the test builds
        url, data=json.dumps(body).encode(), method="POST", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status


def _healthy(base: str, web: Proc) -> bool:
    assert web.popen.poll() is None, f"web exited:\n{web.output[-3000:]}"
    try:
        return http_get(base + "/healthz")[0] == 200
    except OSError:  # not listening yet
        return False


def _json_lines(proc: Proc) -> list[dict]:
    """Every non-empty line the process wrote, each parsed as one JSON object (fails on any other line)."""
    parsed = []
    for line in proc.output.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{proc.name} wrote a line that is not JSON: {line!r}")
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def test_fresh_deploy_from_the_procfile_lines_alone_credits_a_first_deposit(dyno: Dyno, dyno_env: dict[str, str]):
    release = dyno.start("release")
    assert release.wait(120) == 0, release.output
    processes = [dyno.start(kind) for kind in ("web", "worker", "scheduler")]

    base = f"http://127.0.0.1:{dyno_env['PORT']}"
    wait_until(lambda: _healthy(base, processes[0]), timeout=60, what="web answering /healthz")
    request_id, user_id = f"first-{uuid.uuid4().hex[:8]}", "first-user"
    deposit = {"request_id": request_id, "user_id": user_id, "amount_usd": "25.00", "currency_code": "btc"}
    assert _post(base + "/v1/deposits", deposit) == 202

    def credited() -> bool:
        for proc in processes:
            assert proc.popen.poll() is None, f"{proc.name} exited:\n{proc.output[-3000:]}"
        status, balance = http_get(f"{base}/v1/users/{user_id}/balance", token=API_TOKEN)
        return status == 200 and balance["balance_usd"] == "25.00" and balance["total_deposited"] == "25.00"

    wait_until(credited, timeout=90, interval=0.5, what="the first deposit credited")

    for proc in processes:
        proc.popen.send_signal(signal.SIGTERM)
    for proc in processes:
        assert proc.wait(STOP_BUDGET) == 0, proc.output[-3000:]
        wait_until(lambda p=proc: p.live_group() == [], timeout=10, what=f"{proc.name} gone")

    records = {proc.name: _json_lines(proc) for proc in [release, *processes]}
    events = {name: {r.get("event") for r in lines} for name, lines in records.items()}
    assert {"release_migrated", "release_currencies_synced", "release_done"} <= events["release"]
    assert "payment_created" in events["worker"]
    assert any(r.get("logger", "").startswith("dramatiq") for r in records["worker"]), "dramatiq's own lines"
    assert all("level" in r and "timestamp" in r for lines in records.values() for r in lines)
