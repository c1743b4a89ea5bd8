"""The web's pool (``create_pool(reset_session=False)``) releases a connection without asyncpg's reset query,
and still rolls back a transaction a caller left open."""

from __future__ import annotations

import asyncpg

from storage.db import create_pool


async def _last_query(admin: asyncpg.Connection, pid: int) -> str:
    return await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)


async def test_release_sends_no_reset_query_and_an_open_transaction_is_still_rolled_back(database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=1, reset_session=False)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.fetchval("SELECT 'the last thing asked'")
        assert await _last_query(admin, pid) == "SELECT 'the last thing asked'"

        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO currencies (code, name) VALUES ('zzz', 'left open')")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM currencies WHERE code = 'zzz'") == 0
    finally:
        await pool.close()
        await admin.close()


async def test_the_default_pool_still_resets_the_session(database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.fetchval("SELECT 'the last thing asked'")
        assert "RESET ALL" in await _last_query(admin, pid)
    finally:
        await pool.close()
        await admin.close()
