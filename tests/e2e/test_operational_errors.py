"""Operational mistakes end in one line on stderr naming the setting or service and what to do.

Each case runs the real `payments` process and checks: it exits at once with the documented exit
code (2: configuration, 3: a service we depend on, its line labelled "unavailable: " by the CLI),
stderr is exactly one line, stdout is empty, and no password or key is shown.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import asyncpg
import pytest

from gateway.simulator import SimulatorServer
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.procs import Launcher, Proc, minimal_env
from tests.ports import free_port

DB_PASSWORD = "db-pass-never-shown-8q"
API_KEY = "sk-never-shown-5521"
UNREACHABLE_DB = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/payments"
UNREACHABLE_REDIS = "redis://:redis-pass-never-shown@127.0.0.1:1/0"
REACHABLE_REDIS = "redis://127.0.0.1:6379/0"  # only pinged: nothing is read or written
EXIT_USAGE, EXIT_UNAVAILABLE = 2, 3
PROCESSES = ["web", "worker", "scheduler"]


def _env(**values: str) -> dict[str, str]:
    base = {
        "API_TOKEN": "api-token-never-shown",
        "NOWPAYMENTS_API_KEY": API_KEY,
        "NOWPAYMENTS_IPN_SECRET": "ipn-secret-never-shown",
        "PORT": str(free_port()),
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "1",
    }
    base.update(values)
    return minimal_env(**base)


def _one_line(proc: Proc, exit_code: int) -> str:
    assert proc.popen.returncode == exit_code, proc.output
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert proc.stdout == ""
    for secret in (DB_PASSWORD, API_KEY, "redis-pass-never-shown", "api-token-never-shown"):
        assert secret not in proc.output
    return lines[0]


@pytest.mark.parametrize(
    ("command", "url"),
    [
        *((command, f"postgres://postgres:{DB_PASSWORD}@127.0.0.1:notaport/payments") for command in
          ["migrate", "release", *PROCESSES]),
        ("web", f"mysql://postgres:{DB_PASSWORD}@127.0.0.1/payments"),
        ("worker", "127.0.0.1:5432/payments"),
    ],
)
def test_malformed_database_url(launcher: Launcher, command: str, url: str):
    proc = launcher.run(command, env=_env(DATABASE_URL=url, REDIS_URL=REACHABLE_REDIS), timeout=30)
    line = _one_line(proc, EXIT_USAGE)
    assert line.startswith("configuration error: DATABASE_URL "), line


@pytest.mark.parametrize("command", PROCESSES)
def test_malformed_redis_url(launcher: Launcher, command: str, database_url: str):
    proc = launcher.run(command, env=_env(DATABASE_URL=database_url, REDIS_URL="localhost:6379"), timeout=30)
    assert _one_line(proc, EXIT_USAGE).startswith("configuration error: REDIS_URL must be a URL starting with redis://")


@pytest.mark.parametrize("command", ["migrate", "release", *PROCESSES])
def test_postgres_unreachable(launcher: Launcher, command: str):
    proc = launcher.run(command, env=_env(DATABASE_URL=UNREACHABLE_DB, REDIS_URL=REACHABLE_REDIS), timeout=30)
    line = _one_line(proc, EXIT_UNAVAILABLE)
    assert line.startswith("unavailable: Postgres unreachable (DATABASE_URL): "), line
    assert "check DATABASE_URL and that Postgres is running" in line


def test_database_that_does_not_exist_is_named(launcher: Launcher, database_url: str):
    missing = database_url.rsplit("/", 1)[0] + "/payments_no_such_database"
    proc = launcher.run("web", env=_env(DATABASE_URL=missing, REDIS_URL=REACHABLE_REDIS), timeout=30)
    line = _one_line(proc, EXIT_UNAVAILABLE)
    assert "payments_no_such_database" in line and "does not exist" in line and "DATABASE_URL" in line


@pytest.mark.parametrize("command", PROCESSES)
def test_redis_unreachable(launcher: Launcher, command: str, database_url: str):
    proc = launcher.run(command, env=_env(DATABASE_URL=database_url, REDIS_URL=UNREACHABLE_REDIS), timeout=30)
    line = _one_line(proc, EXIT_UNAVAILABLE)
    assert line.startswith("unavailable: Redis unreachable (REDIS_URL): "), line
    assert "check REDIS_URL and that Redis is running" in line


@pytest.mark.parametrize("command", PROCESSES)
def test_a_database_not_migrated_is_refused_with_the_command_to_run(
    launcher: Launcher, command: str, empty_database_url: str
):
    proc = launcher.run(command, env=_env(DATABASE_URL=empty_database_url, REDIS_URL=REACHABLE_REDIS), timeout=30)
    line = _one_line(proc, EXIT_UNAVAILABLE)
    assert "not migrated" in line and "run `payments migrate`" in line, line


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # noqa: S104 - web listens on all interfaces, so the clash must be there
        listener.listen()
        yield listener.getsockname()[1]


def test_port_in_use(launcher: Launcher, database_url: str, taken_port: int):
    env = _env(DATABASE_URL=database_url, REDIS_URL=REACHABLE_REDIS, PORT=str(taken_port))
    proc = launcher.run("web", env=env, timeout=30)
    line = _one_line(proc, EXIT_UNAVAILABLE)
    assert line == (
        f"unavailable: PORT {taken_port} is already in use by another process: stop it or set PORT to a free port"
    )


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        *((command, "LOG_LEVEL", "LOUD") for command in ["migrate", "release", *PROCESSES]),
        ("web", "LOG_FORMAT", "xml"),
        ("worker", "PAYMENTS_UNDERPAID_POLICY", "maybe"),
        ("scheduler", "PAYMENTS_OVERPAID_POLICY", "sometimes"),
    ],
)
def test_invalid_enumerated_settings_are_refused(launcher: Launcher, command: str, variable: str, value: str):
    env = _env(DATABASE_URL=UNREACHABLE_DB, REDIS_URL=REACHABLE_REDIS, **{variable: value})
    proc = launcher.run(command, env=env, timeout=30)
    line = _one_line(proc, EXIT_USAGE)
    assert line.startswith(f"configuration error: {variable} "), line
    assert value not in line.removeprefix(f"configuration error: {variable} "), "the value is not echoed"


def test_log_level_is_case_insensitive(launcher: Launcher, database_url: str):
    proc = launcher.run("migrate", env=_env(DATABASE_URL=database_url, REDIS_URL=REACHABLE_REDIS, LOG_LEVEL="debug"))
    assert proc.popen.returncode == 0, proc.output


# --- release: the currency catalogue ------------------------------------------------------------------------------


async def _currency_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM currencies")
    finally:
        await conn.close()


def test_release_with_the_gateway_down_fails_when_there_is_no_catalogue(launcher: Launcher, empty_database_url: str):
    env = _env(
        DATABASE_URL=empty_database_url,
        REDIS_URL=REACHABLE_REDIS,
        NOWPAYMENTS_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        NOWPAYMENTS_TIMEOUT_SECONDS="2",
    )
    proc = launcher.run("release", env=env, timeout=90)
    assert proc.popen.returncode == EXIT_UNAVAILABLE, proc.output
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("unavailable: release failed: there is no currency catalogue yet"), lines
    assert "NOWPAYMENTS_API_KEY" in lines[-1]
    assert API_KEY not in proc.output
    assert asyncio.run(_currency_count(empty_database_url)) == 0


def test_release_with_the_gateway_down_keeps_an_existing_catalogue(
    launcher: Launcher, empty_database_url: str, simulator: SimulatorServer
):
    env = _env(
        DATABASE_URL=empty_database_url,
        REDIS_URL=REACHABLE_REDIS,
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
    )
    first = launcher.run("release", env=env, timeout=90)
    assert first.popen.returncode == 0, first.output
    known = asyncio.run(_currency_count(empty_database_url))
    assert known > 0

    env.update(NOWPAYMENTS_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", NOWPAYMENTS_TIMEOUT_SECONDS="2")
    second = launcher.run("release", env=env, timeout=90)
    assert second.popen.returncode == 0, second.output
    assert "release_currencies_sync_failed" in second.stderr
    assert "release_done" in second.stderr
    assert asyncio.run(_currency_count(empty_database_url)) == known
