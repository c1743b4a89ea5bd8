"""Apply the SQL files in storage/migrations in order, once each, under an advisory lock.

Safe to run from several release processes at once: the lock serialises them and the
second finds nothing left to do.
"""

from __future__ import annotations

from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# An arbitrary constant shared by every process that migrates this schema.
MIGRATION_LOCK_KEY = 7_301_955_001


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) pairs sorted by file name, e.g. ``("0001_init", "CREATE TABLE ...")``."""
    folder = resources.files("storage") / "migrations"
    files = sorted(entry for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")) for entry in files]


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """Versions not yet applied to this database, oldest first (every one of them when it was never migrated)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")} if exists else set()
    return [version for version, _ in migration_files() if version not in done]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("migration_applied", version=version)
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now

