"""Heroku Redis: a `rediss://` URL whose server presents a self-signed certificate.

Verified by default, so a process refuses it in one line that names the setting to change; with
REDIS_TLS_VERIFY=false every Redis client of ours (the broker, the startup check, `payments dlq`)
talks to it, still over TLS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis

from settings import load_settings
from tests.e2e.private_redis import run_private_redis
from tests.e2e.procs import Launcher, minimal_env
from workers.broker import build_broker

EXIT_UNAVAILABLE = 3


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    yield from run_private_redis(tmp_path / "tls-redis", tls=True)


def test_a_self_signed_certificate_is_refused_by_default_with_the_setting_to_change(
    launcher: Launcher, database_url: str, tls_redis_url: str
):
    proc = launcher.run("scheduler", env=minimal_env(DATABASE_URL=database_url, REDIS_URL=tls_redis_url), timeout=30)
    assert proc.popen.returncode == EXIT_UNAVAILABLE, proc.output
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "TLS certificate (REDIS_URL) did not verify" in lines[0]
    assert "set REDIS_TLS_VERIFY=false" in lines[0]


def test_with_verification_off_the_broker_and_the_cli_use_the_tls_redis(
    launcher: Launcher, database_url: str, tls_redis_url: str
):
    settings = load_settings(database_url=database_url, redis_url=tls_redis_url, redis_tls_verify=False)
    broker = build_broker(settings, namespace="tls-test")
    try:
        broker.ping()  # type: ignore[attr-defined]
        broker.declare_queue("create-payment")
        broker.enqueue(dramatiq.Message(queue_name="create-payment", actor_name="create_payment", args=(),
                                        kwargs={"request_id": "tls-1"}, options={}))  # fmt: skip
    finally:
        broker.close()
    reader = redis.Redis.from_url(tls_redis_url, ssl_cert_reqs=None)
    try:
        assert reader.llen("tls-test:create-payment") == 1
        assert reader.connection_pool.connection_class is redis.SSLConnection
    finally:
        reader.close()

    env = minimal_env(DATABASE_URL=database_url, REDIS_URL=tls_redis_url, REDIS_TLS_VERIFY="false")
    dlq = launcher.run("dlq", "list", "create-payment", env=env, timeout=30)
    assert dlq.popen.returncode == 0, dlq.output
