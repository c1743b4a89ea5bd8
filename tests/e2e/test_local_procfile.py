"""`honcho start -f Procfile.dev`: migrations and the catalogue first, then the processes; Ctrl-C stops them all.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group (honcho and its children),
and honcho then sends SIGTERM to each child, SIGKILLing any still there 5 s later.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimulatorServer
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.private_redis import run_private_redis
from tests.e2e.procs import BIN, REPO, Proc, http_get, minimal_env, wait_until
from tests.ports import free_port

STOP_BUDGET = 30.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    yield from run_private_redis(tmp_path / "redis")


@pytest.fixture
def honcho(tmp_path: Path, empty_database_url: str, private_redis: str, simulator: SimulatorServer) -> Iterator[Proc]:
    port = free_port()
    env_file = tmp_path / "empty.env"  # never a developer's own .env
    env_file.write_text("")
    env = minimal_env(
        PATH=f"{BIN}:/usr/bin:/bin",
        DATABASE_URL=empty_database_url,
        REDIS_URL=private_redis,
        PORT=str(port),
        API_TOKEN="honcho-test-token",
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
        WORKER_PROCESSES="1",
        WORKER_THREADS="1",
    )
    args = [str(BIN / "honcho"), "-e", str(env_file), "-d", str(REPO), "-f", str(REPO / "Procfile.dev"), "start"]
    logdir = tmp_path / "honcho-logs"
    logdir.mkdir()
    proc = Proc(args, env, logdir, "honcho")
    proc.port = port  # type: ignore[attr-defined]
    yield proc
    proc.kill()


def _all_up(honcho: Proc) -> bool:
    assert honcho.popen.poll() is None, f"honcho stopped early:\n{honcho.output[-4000:]}"
    try:
        web_up = http_get(f"http://127.0.0.1:{honcho.port}/healthz")[0] == 200  # type: ignore[attr-defined]
    except OSError:
        web_up = False
    return web_up and "Worker process is ready for action" in honcho.output and "scheduler_started" in honcho.output


def _ctrl_c(honcho: Proc) -> float:
    started = time.monotonic()
    os.killpg(honcho.pgid, signal.SIGINT)
    honcho.wait(STOP_BUDGET)
    wait_until(lambda: honcho.live_group() == [], timeout=10, what="every process of the group gone")
    return time.monotonic() - started


def test_honcho_releases_first_then_runs_the_processes_and_ctrl_c_stops_them(honcho: Proc):
    wait_until(lambda: _all_up(honcho), timeout=60, what="web, worker and scheduler up")
    out = honcho.output
    assert out.index("release_done") < out.index("scheduler_started")
    assert "currencies_synced" in out, "the catalogue is there before the first deposit"
    assert "Traceback" not in out

    seconds = _ctrl_c(honcho)
    assert seconds < STOP_BUDGET
    for name in ("web", "scheduler"):
        assert re.search(rf"{name}\.1 stopped \(rc=0\)", honcho.output), honcho.output[-3000:]


def test_ctrl_c_stops_the_worker_cleanly_too(honcho: Proc):
    wait_until(lambda: _all_up(honcho), timeout=60, what="web, worker and scheduler up")
    _ctrl_c(honcho)
    assert re.search(r"worker\.1 stopped \(rc=0\)", honcho.output), honcho.output[-3000:]
