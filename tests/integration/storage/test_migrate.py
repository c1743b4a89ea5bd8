"""storage.migrate against real Postgres: idempotent and safe to run from several processes at once."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from storage.migrate import MIGRATION_LOCK_KEY, migrate, migration_files

ADMIN_DSN = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    """A brand-new database with no schema at all (not cloned from the migrated template)."""
    name = f"payments_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _dsn_for(name)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_migration_files_are_sorted_and_named():
    files = migration_files()
    versions = [v for v, _ in files]
    assert versions == sorted(versions)
    assert versions[0] == "0001_init"
    assert all(sql.strip() for _, sql in files)


async def test_second_migrate_applies_nothing(pool):
    async with pool.acquire() as conn:
        before = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        assert await migrate(conn) == []
        assert await migrate(conn) == []
        after = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert [r["version"] for r in after] == [v for v, _ in migration_files()]


async def test_migrate_on_empty_database_then_again(empty_database):
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('ledger_entries')") is None
        assert await migrate(conn) == [v for v, _ in migration_files()]
        assert await conn.fetchval("SELECT to_regclass('ledger_entries')") is not None
        assert await migrate(conn) == []
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [v for v, _ in migration_files()]
        # the advisory lock is released afterwards: another session can take it at once
        other = await asyncpg.connect(empty_database)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY) is True
        finally:
            await other.close()
    finally:
        await conn.close()


async def test_concurrent_migrations_on_empty_database_both_succeed(empty_database):
    conns = [await asyncpg.connect(empty_database) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        expected = [v for v, _ in migration_files()]
        # exactly one of them applied everything; the other found nothing left to do
        assert sorted(results, key=len) == [[], expected]
        rows = await conns[0].fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
        assert {r["version"]: r["n"] for r in rows} == dict.fromkeys(expected, 1)
        # the schema is usable: the ledger's deferred balance check is in place
        triggers = await conns[1].fetchval(
            "SELECT count(*) FROM pg_trigger"
            " WHERE tgname IN ('ledger_entries_balanced', 'ledger_transactions_balanced')"
        )
        assert triggers == 2
    finally:
        for c in conns:
            await c.close()
