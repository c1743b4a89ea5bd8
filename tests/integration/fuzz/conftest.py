"""One pipeline for a whole fuzzing module: hypothesis runs many examples against it, and each
example must leave it exactly as it found it (nothing written, every process still serving)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from tests.conftest import REDIS_URL, _admin, _dsn_for
from tests.integration.stack import Stack

TABLES = ("payments", "payment_events", "withdrawals", "withdrawal_events", "ledger_transactions", "ledger_entries",
          "ledger_accounts")  # fmt: skip


@pytest.fixture(scope="module")
async def fuzz_stack(template_database: str) -> AsyncIterator[Stack]:
    name = f"payments_fuzz_{uuid.uuid4().hex[:10]}"
    namespace = f"test-fuzz-{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        async with Stack(_dsn_for(name), namespace, ipn=True, worker_threads=4) as stack:
            yield stack
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


async def row_counts(stack: Stack) -> dict[str, int]:
    async with stack.pool.acquire() as conn:
        return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
