"""Shared fixtures: real Postgres databases cloned from a migrated template, real Redis.

Each test that asks for `database_url` gets its own fresh database (created from a template
migrated once per session) and it is dropped afterwards. Redis isolation uses a unique
key namespace per test, so parallel runs on one Redis never see each other's queues.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis

from storage.db import create_pool
from storage.migrate import migrate
from tests.secrets_guard import GUARD

ADMIN_DSN = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session", autouse=True)
def secrets_never_logged() -> Iterator[None]:
    """Session-wide: every test phase's output and log lines are checked for the test secrets
    (pytest_runtest_logreport below); a leak anywhere fails the session at its end."""
    with GUARD.watching_simulator_logins():
        yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, text in report.sections:
        GUARD.check(f"{report.nodeid} ({section})", text)
    if report.failed:
        GUARD.check(f"{report.nodeid} (failure text)", report.longreprtext)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if GUARD.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if GUARD.leaks:
        terminalreporter.section("SECRETS LEAKED (by name)", red=True)
        for leak in GUARD.leaks:
            terminalreporter.line(leak)


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    name = f"payments_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(_dsn_for(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"payments_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    yield _dsn_for(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's own event loop (workers under test build their own on theirs)."""
    p = await create_pool(database_url, min_size=1, max_size=20)
    yield p
    await p.close()


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A unique dramatiq namespace in the real Redis; its keys are deleted afterwards."""
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PIPELINE_QUEUES = ("create-payment", "poll-status", "settle-deposit", "process-withdrawal")


def delete_rabbitmq_queues(namespace: str) -> None:
    """Delete the queues a test made under its namespace (`<namespace>.<queue>` and its .DQ/.XQ), nothing else."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        for queue in PIPELINE_QUEUES:
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{namespace}.{queue}{suffix}")
    finally:
        connection.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_overrides(request: pytest.FixtureRequest, redis_namespace: str) -> Iterator[dict[str, str]]:
    """Settings that put a Stack on Redis or on RabbitMQ, under the test's own namespace either way."""
    if request.param == "redis":
        yield {}
        return
    yield {"broker_url": RABBITMQ_URL}
    delete_rabbitmq_queues(redis_namespace)
