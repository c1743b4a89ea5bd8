"""`GET /readyz` of the real web process: ready only when Postgres, the broker and the schema are."""

from __future__ import annotations

import asyncio

import asyncpg

from storage.migrate import migration_files
from tests.e2e.conftest import SIM_IPN_SECRET
from tests.e2e.private_redis import run_private_redis
from tests.e2e.procs import Launcher, http_get, minimal_env, wait_until
from tests.ports import free_port

API_TOKEN = "readyz-api-token"


def _web(launcher: Launcher, database_url: str, **broker: str) -> str:
    port = free_port()
    env = minimal_env(
        DATABASE_URL=database_url,
        PORT=str(port),
        API_TOKEN=API_TOKEN,
        NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
        **broker,
    )
    proc = launcher.start("web", env=env)
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert proc.popen.poll() is None, proc.output[-3000:]
        try:
            return http_get(base + "/healthz", timeout=2)[0] in (200, 503)
        except OSError:
            return False

    wait_until(answering, timeout=30, what="web answering")
    return base


def test_readyz_is_ready_on_a_migrated_database_with_the_broker_up(launcher, database_url, broker_env):
    base = _web(launcher, database_url, **broker_env)
    assert http_get(base + "/readyz") == (200, {"status": "ready"})


def test_readyz_names_pending_migrations(launcher, database_url, broker_env):
    """A web that started on a migrated database, which then lacks a migration (say, one a newer
    release ships and has not applied yet): not ready, and the answer names it."""
    base = _web(launcher, database_url, **broker_env)
    assert http_get(base + "/readyz")[0] == 200
    latest = migration_files()[-1][0]
    asyncio.run(_forget_migration(database_url, latest))
    status, body = http_get(base + "/readyz")
    assert status == 503 and body["status"] == "not_ready"
    assert set(body["failures"]) == {"migrations"}, body
    assert latest in body["failures"]["migrations"] and "payments migrate" in body["failures"]["migrations"]


async def _forget_migration(database_url: str, version: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", version)
    finally:
        await conn.close()


def test_readyz_names_a_broker_that_stops_answering(launcher, database_url, broker_env, tmp_path):
    """Started with its Redis up; the Redis goes away: not ready, the broker named, no password shown."""
    redis_server = run_private_redis(tmp_path / "redis")
    url = next(redis_server)
    base = _web(launcher, database_url, REDIS_URL=url, BROKER_NAMESPACE=broker_env["BROKER_NAMESPACE"])
    assert http_get(base + "/readyz")[0] == 200
    next(redis_server, None)  # stops it
    status, body = http_get(base + "/readyz")
    assert status == 503 and set(body["failures"]) == {"broker"}, body


def test_a_broker_that_does_not_answer_stops_web_at_start_with_one_line(launcher, database_url, broker_env):
    closed = free_port()
    for broker, name in (
        ({"REDIS_URL": f"redis://127.0.0.1:{closed}/0"}, "REDIS_URL"),
        ({"BROKER_URL": f"amqp://guest:secret-pw@127.0.0.1:{closed}/"}, "BROKER_URL"),
    ):
        env = minimal_env(
            DATABASE_URL=database_url,
            PORT=str(free_port()),
            API_TOKEN=API_TOKEN,
            NOWPAYMENTS_IPN_SECRET=SIM_IPN_SECRET,
            BROKER_NAMESPACE=broker_env["BROKER_NAMESPACE"],
            **broker,
        )
        proc = launcher.start("web", env=env)
        assert proc.wait(30) == 3, proc.output[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "secret-pw" not in proc.output, proc.output[-2000:]
