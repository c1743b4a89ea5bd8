"""The real `payments` console command, run as OS processes the way a platform runs the Procfile.

Each process gets a minimal environment (PATH, HOME and what the test sets; nothing such as
DATABASE_URL leaks in from outside), runs in its own process group with a timeout, and is
killed with its whole group in teardown. Stopping tests send SIGTERM to the process only, as a
platform does, and then check that every process of the group is gone.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import pytest

from gateway.simulator import SimulatorServer
from storage.migrate import migration_files
from tests.e2e.conftest import SIM_API_KEY, SIM_IPN_SECRET
from tests.e2e.procs import Launcher, Proc, http_get, minimal_env, wait_until
from tests.ports import free_port

API_TOKEN = "process-test-api-token-9f2c"
SECRET_API_KEY = "sk-very-secret-4471"
DB_PASSWORD = "db-pass-never-shown-5x"
UNREACHABLE_DB = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/nope"
REDIS_DB0 = "redis://127.0.0.1:6379/0"
STOP_BUDGET = 30.0  # platforms SIGKILL 30 s after SIGTERM


async def _versions(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- release: payments migrate ------------------------------------------------------------------------------------


def test_migrate_applies_every_migration_to_an_empty_database_then_is_up_to_date(launcher, empty_database_url):
    expected = [version for version, _ in migration_files()]
    assert expected[0] == "0001_init"
    env = minimal_env(DATABASE_URL=empty_database_url, REDIS_URL=REDIS_DB0)

    first = launcher.run("migrate", env=env)
    assert first.popen.returncode == 0, first.output
    assert f"migrations applied: {', '.join(expected)}" in first.stdout
    assert asyncio.run(_versions(empty_database_url)) == expected

    second = launcher.run("migrate", env=env)
    assert second.popen.returncode == 0, second.output
    assert "migrations applied: none (up to date)" in second.stdout
    assert asyncio.run(_versions(empty_database_url)) == expected


def test_two_concurrent_migrates_both_succeed_and_apply_once(launcher, empty_database_url):
    expected = [version for version, _ in migration_files()]
    env = minimal_env(DATABASE_URL=empty_database_url, REDIS_URL=REDIS_DB0)
    runs = [launcher.start("migrate", env=env, name=f"migrate-{i}") for i in range(2)]
    for run in runs:
        assert run.wait(60) == 0, run.output
    reports = sorted(run.stdout.strip() for run in runs)
    # the advisory lock serialises them: one applies everything, the other finds nothing left to do
    assert reports == sorted([f"migrations applied: {', '.join(expected)}", "migrations applied: none (up to date)"])
    assert asyncio.run(_versions(empty_database_url)) == expected


def test_migrate_without_database_url_names_it(launcher):
    proc = launcher.run("migrate", env=minimal_env(REDIS_URL=REDIS_DB0), timeout=30)
    assert proc.popen.returncode != 0
    assert _lines(proc.stderr) == ["configuration error: DATABASE_URL is required but not set"]
    assert proc.stdout == ""


# --- web ---------------------------------------------------------------------------------------------------------


def test_web_without_api_token_stops_at_once_with_one_line_and_no_secret(launcher):
    env = minimal_env(
        DATABASE_URL=UNREACHABLE_DB,
        REDIS_URL=REDIS_DB0,
        NOWPAYMENTS_API_KEY=SECRET_API_KEY,
        NOWPAYMENTS_IPN_SECRET="ipn-secret-never-shown",
        PORT=str(free_port()),
    )
    started = time.monotonic()
    proc = launcher.start("web", env=env)
    code = proc.wait(15)
    assert time.monotonic() - started < 15
    assert code != 0
    lines = _lines(proc.output)
    assert len(lines) == 1, proc.output
    assert "API_TOKEN" in lines[0]
    for secret in (SECRET_API_KEY, DB_PASSWORD, "ipn-secret-never-shown"):
        assert secret not in proc.output


@pytest.mark.parametrize("port", ["abc", "0", "70000"])
def test_web_with_invalid_port_names_port(launcher, port):
    env = minimal_env(
        DATABASE_URL=UNREACHABLE_DB,
        REDIS_URL=REDIS_DB0,
        PORT=port,
        API_TOKEN=API_TOKEN,
        NOWPAYMENTS_API_KEY=SECRET_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
    )
    proc = launcher.run("web", env=env, timeout=15)
    assert proc.popen.returncode != 0
    lines = _lines(proc.output)
    assert len(lines) == 1 and "PORT" in lines[0], proc.output
    assert SECRET_API_KEY not in proc.output and API_TOKEN not in proc.output


def _web_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_DB0,
        "PORT": str(port),
        "API_TOKEN": API_TOKEN,
        "NOWPAYMENTS_API_KEY": SECRET_API_KEY,
        "NOWPAYMENTS_IPN_SECRET": SIM_IPN_SECRET,
    }
    values.update(extra)
    return minimal_env(**values)


def _healthy(proc: Proc, base: str) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"web exited with {proc.popen.returncode}:\n{proc.output[-3000:]}")
    try:
        return http_get(base + "/healthz", timeout=2) == (200, {"status": "ok"})
    except OSError:
        return False


def test_web_serves_healthz_and_stops_cleanly_on_sigterm(launcher, database_url):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = launcher.start("web", env=_web_env(database_url, port))
    wait_until(lambda: _healthy(proc, base), timeout=30, what="GET /healthz 200 ok")

    assert http_get(base + "/healthz") == (200, {"status": "ok"})
    # the JSON API is behind the bearer token
    status, body = http_get(base + "/v1/users/someone/balance")
    assert status == 401 and body["error"] == "unauthorized"
    status, body = http_get(base + "/v1/users/someone/balance", token=API_TOKEN)
    assert status == 200 and Decimal(body["balance_usd"]) == 0, body

    code, seconds = proc.terminate_and_wait(STOP_BUDGET)
    assert code == 0, proc.output
    assert seconds < STOP_BUDGET
    assert proc.live_group() == []
    for secret in (SECRET_API_KEY, API_TOKEN, SIM_IPN_SECRET):
        assert secret not in proc.output


def test_web_balance_of_a_new_user_is_given_to_the_cent(launcher, database_url):
    """A user with no ledger accounts yet gets "0.00" like every other USD amount (not a bare "0")."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = launcher.start("web", env=_web_env(database_url, port))
    wait_until(lambda: _healthy(proc, base), timeout=30, what="GET /healthz 200 ok")
    status, body = http_get(base + "/v1/users/nobody-yet/balance", token=API_TOKEN)
    assert status == 200
    amounts = {key: body[key] for key in ("balance_usd", "held_usd", "total_deposited", "total_withdrawn")}
    assert amounts == dict.fromkeys(amounts, "0.00")


def test_web_with_empty_api_token_refuses_to_start(launcher, database_url):
    """`API_TOKEN=` must count as unset: an empty token would let requests without any token into /v1."""
    port = free_port()
    proc = launcher.start("web", env=_web_env(database_url, port, API_TOKEN=""))
    assert proc.wait(15) != 0
    lines = _lines(proc.output)
    assert len(lines) == 1 and "API_TOKEN" in lines[0], proc.output
    assert SECRET_API_KEY not in proc.output


# --- worker ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_worker_boot(tmp_path_factory) -> Iterator[tuple[Proc, float, dict[str, int]]]:
    """`payments worker` whose Postgres is unreachable, run once for the tests below, in a broker
    namespace of its own (its keys are deleted afterwards)."""
    import redis

    namespace = f"test-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(REDIS_DB0)
    launcher = Launcher(tmp_path_factory.mktemp("failed-worker"))
    env = minimal_env(
        DATABASE_URL=UNREACHABLE_DB,
        REDIS_URL=REDIS_DB0,
        BROKER_NAMESPACE=namespace,
        NOWPAYMENTS_API_KEY=SECRET_API_KEY,
        WORKER_PROCESSES="1",
        WORKER_THREADS="2",
    )
    try:
        started = time.monotonic()
        proc = launcher.start("worker", env=env)
        try:
            proc.popen.wait(timeout=60)
        except Exception:  # noqa: S110 - asserted by the tests (returncode None)
            pass
        elapsed = time.monotonic() - started
        queues = {
            key.decode(): client.llen(key) for key in client.scan_iter(f"{namespace}:*") if client.type(key) == b"list"
        }
        yield proc, elapsed, queues
    finally:
        launcher.cleanup()
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.mark.xdist_group("cli-failed-worker-boot")  # one worker builds the module fixture once
def test_worker_with_unreachable_database_exits_non_zero_instead_of_consuming(failed_worker_boot):
    proc, elapsed, queues = failed_worker_boot
    assert proc.popen.returncode is not None, f"worker still running after 60 s:\n{proc.output[-3000:]}"
    assert proc.popen.returncode != 0
    assert elapsed < 45, f"a failed boot must stop the process promptly (took {elapsed:.1f}s)"
    # refused with one line before any worker process starts (entrypoints/startup.py)
    assert proc.output.startswith("unavailable: Postgres unreachable (DATABASE_URL): "), proc.output
    assert "Worker process is ready for action" not in proc.output
    assert proc.live_group() == [], "no worker process may survive the failed boot"
    assert all(length == 0 for length in queues.values()), queues
    assert DB_PASSWORD not in proc.output and SECRET_API_KEY not in proc.output


@pytest.mark.xdist_group("cli-failed-worker-boot")  # one worker builds the module fixture once
def test_worker_with_unreachable_database_exits_within_seconds(failed_worker_boot):
    proc, elapsed, _ = failed_worker_boot
    assert proc.popen.returncode not in (None, 0)
    assert elapsed < 15, f"took {elapsed:.1f}s to exit after a boot failure"


def _sync_currencies(launcher: Launcher, env: dict[str, str]) -> Proc:
    proc = launcher.run("currencies", "sync", env=env, timeout=60)
    assert proc.popen.returncode == 0, proc.output
    assert re.search(r"^synced \d+ currencies \(\d+ enabled\)$", proc.stdout, re.M), proc.stdout
    return proc


def test_worker_boots_and_every_process_stops_within_30s_of_sigterm(
    launcher, database_url, simulator: SimulatorServer, broker_env
):
    env = minimal_env(
        DATABASE_URL=database_url,
        **broker_env,
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
        WORKER_PROCESSES="1",
        WORKER_THREADS="2",
    )
    _sync_currencies(launcher, env)
    proc = launcher.start("worker", env=env)
    proc.wait_for_output("worker_runtime_ready", timeout=30)
    proc.wait_for_output("Worker process is ready for action", timeout=30)
    # the dramatiq parent plus its one worker process
    assert len(proc.live_group()) >= 2, proc.live_group()

    code, seconds = proc.terminate_and_wait(STOP_BUDGET)
    assert code == 0, proc.output
    assert seconds < STOP_BUDGET
    wait_until(lambda: proc.live_group() == [], timeout=5, what="every worker process gone")
    assert "worker_boot_failed" not in proc.output
    assert "Worker has been shut down" in proc.output
    assert SIM_API_KEY not in proc.output


def test_worker_without_api_key_stops_naming_it(launcher, database_url, broker_env):
    env = minimal_env(DATABASE_URL=database_url, **broker_env)
    proc = launcher.run("worker", env=env, timeout=20)
    assert proc.popen.returncode != 0
    assert _lines(proc.output) == [
        "configuration error: NOWPAYMENTS_API_KEY is required for this process but is not set"
    ]


# --- scheduler ---------------------------------------------------------------------------------------------------


def test_scheduler_starts_and_stops_within_seconds_of_sigterm(launcher, database_url):
    env = minimal_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_DB0,
        API_TOKEN=API_TOKEN,
        NOWPAYMENTS_API_KEY=SECRET_API_KEY,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        PAYMENTS_SCHEDULER_TICK="0.5",
    )
    proc = launcher.start("scheduler", env=env)
    proc.wait_for_output("scheduler_started", timeout=30)
    time.sleep(1.2)  # a couple of ticks against the empty database
    assert proc.popen.poll() is None, proc.output
    assert "scheduler_tick_failed" not in proc.output

    code, seconds = proc.terminate_and_wait(10)
    assert code == 0, proc.output
    assert seconds < 5
    assert "scheduler_stopped" in proc.output
    assert proc.live_group() == []


# --- operator commands -------------------------------------------------------------------------------------------


def _currency_line(listing: str, code: str) -> str:
    lines = [line for line in listing.splitlines() if line.split()[:1] == [code]]
    assert len(lines) == 1, listing
    return lines[0]


def test_currencies_deactivate_survives_a_resync(launcher, database_url, simulator: SimulatorServer):
    env = minimal_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_DB0,
        NOWPAYMENTS_API_KEY=SIM_API_KEY,
        NOWPAYMENTS_BASE_URL=simulator.api_url,
    )
    _sync_currencies(launcher, env)
    listing = launcher.run("currencies", "list", env=env)
    assert listing.popen.returncode == 0, listing.output
    assert _currency_line(listing.stdout, "btc").endswith("active")

    off = launcher.run("currencies", "deactivate", "BTC", env=env)
    assert off.popen.returncode == 0, off.output
    assert off.stdout.strip() == "btc deactivated"

    listing = launcher.run("currencies", "list", env=env)
    assert _currency_line(listing.stdout, "btc").endswith("off by operator")
    others = [line for line in listing.stdout.splitlines() if not line.startswith("btc ")]
    assert any(line.endswith("active") for line in others), "only btc was switched off"

    _sync_currencies(launcher, env)
    listing = launcher.run("currencies", "list", env=env)
    assert _currency_line(listing.stdout, "btc").endswith("off by operator"), "a sync must keep the operator's off"

    on = launcher.run("currencies", "activate", "btc", env=env)
    assert on.popen.returncode == 0 and on.stdout.strip() == "btc activated"
    listing = launcher.run("currencies", "list", env=env)
    assert _currency_line(listing.stdout, "btc").endswith("active")


def test_currencies_deactivate_unknown_code_fails(launcher, database_url):
    env = minimal_env(DATABASE_URL=database_url, REDIS_URL=REDIS_DB0)
    proc = launcher.run("currencies", "deactivate", "nosuchcoin", env=env)
    assert proc.popen.returncode == 1
    assert "no currency 'nosuchcoin'" in proc.stderr


def test_balance_of_an_unknown_user_is_zero(launcher, database_url):
    env = minimal_env(DATABASE_URL=database_url, REDIS_URL=REDIS_DB0)
    proc = launcher.run("balance", "some-user", env=env)
    assert proc.popen.returncode == 0, proc.output
    assert _lines(proc.stdout) == [
        "user some-user: balance $0.00, held $0.00",
        "  total deposited $0.00, withdrawn $0.00",
    ]
