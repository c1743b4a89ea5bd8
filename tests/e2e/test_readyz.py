"""`GET /readyz` of the real web process: ready only when Postgres, the broker and the schema are."""

from __future__ import annotations

from tests.e2e.conftest import SIM_IPN_SECRET
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


def test_readyz_names_pending_migrations(launcher, empty_database_url, broker_env):
    base = _web(launcher, empty_database_url, **broker_env)
    status, body = http_get(base + "/readyz")
    assert status == 503 and body["status"] == "not_ready"
    assert set(body["failures"]) == {"migrations"}, body
    assert "0001_init" in body["failures"]["migrations"] and "payments migrate" in body["failures"]["migrations"]


def test_readyz_names_a_broker_that_does_not_answer(launcher, database_url, broker_env):
    closed = free_port()
    for broker in (
        {"REDIS_URL": f"redis://127.0.0.1:{closed}/0"},
        {"BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed}/"},
    ):
        base = _web(launcher, database_url, BROKER_NAMESPACE=broker_env["BROKER_NAMESPACE"], **broker)
        status, body = http_get(base + "/readyz")
        assert status == 503 and set(body["failures"]) == {"broker"}, (broker, body)
        assert "guest" not in str(body)
