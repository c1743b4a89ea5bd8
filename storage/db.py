"""Connection pool and transaction helpers (asyncpg)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from enum import Enum
from typing import Any

import asyncpg

Connection = asyncpg.Connection
Pool = asyncpg.Pool


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact text; audit payloads never go through float
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dump_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def load_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=dump_json, decoder=load_json, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=dump_json, decoder=load_json, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A release without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL): one round trip less.

    asyncpg still rolls back a transaction left open; the code using such a pool holds no session state.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, reset_session: bool = True) -> asyncpg.Pool:
    """A pool bound to the running event loop; create it inside the loop that will use it.

    ``reset_session=False`` skips the reset query on each release, for callers that never take session
    advisory locks, LISTEN, open cursors outside a transaction or SET session settings (the web process).
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=None if reset_session else _keep_session,
        init=_init_connection,
        command_timeout=30,
        server_settings={"application_name": "payments"},
    )
    assert pool is not None
    return pool


async def connect(dsn: str, *, connect_timeout: float = 60.0) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, timeout=connect_timeout, server_settings={"application_name": "payments"})
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection from the pool inside one READ COMMITTED transaction."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def set_clause(
    table: str, changes: dict[str, Any], *, updatable: frozenset[str], first_parameter: int
) -> tuple[str, list[Any]]:
    """``"col = $n, …, "`` for ``changes`` (parameters from ``first_parameter`` on) and the values in order.

    Column names are checked against ``updatable`` (they are spliced into the SQL; values never are).
    Enum values are stored as their text.
    """
    unknown = set(changes) - updatable
    if unknown:
        raise ValueError(f"not updatable in {table}: {sorted(unknown)}")
    names = sorted(changes)
    assignments = "".join(f"{name} = ${i}, " for i, name in enumerate(names, start=first_parameter))
    values = [changes[name].value if isinstance(changes[name], Enum) else changes[name] for name in names]
    return assignments, values


async def update_by_id(
    conn: asyncpg.Connection,
    table: str,
    row_id: str,
    changes: dict[str, Any],
    *,
    updatable: frozenset[str],
    only_if: str = "",
) -> asyncpg.Record | None:
    """``UPDATE table SET <changes>, updated_at = now() WHERE id = row_id RETURNING *``.

    Column names are checked against ``updatable`` (they are spliced into the SQL; values never are).
    Enum values are stored as their text. ``only_if`` is a constant SQL condition the row must also
    meet (the write is then skipped and ``None`` returned when it does not).
    """
    assignments, values = set_clause(table, changes, updatable=updatable, first_parameter=2)
    condition = f" AND ({only_if})" if only_if else ""
    row = await conn.fetchrow(
        f"UPDATE {table} SET {assignments}updated_at = now() WHERE id = $1{condition} RETURNING *",
        row_id,
        *values,
    )
    if row is None and not only_if:
        raise LookupError(f"{table} row {row_id} does not exist")
    return row
