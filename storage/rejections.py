"""SQL for refused requests (`request_rejections`), and the per-request_id lock that orders them with creation."""

from __future__ import annotations

import asyncpg

from domain.rejections import Rejection, RequestKind, bounded_reason


def _from_row(row: asyncpg.Record) -> Rejection:
    values = dict(row)
    values["kind"] = RequestKind(values["kind"])
    return Rejection(**values)


async def lock_request_id(conn: asyncpg.Connection, kind: RequestKind, request_id: str) -> None:
    """Serialise, until this transaction ends, every decision about ``request_id`` (accept it or refuse it)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"request:{kind.value}:{request_id}")


async def find_rejection(conn: asyncpg.Connection, kind: RequestKind, request_id: str) -> Rejection | None:
    row = await conn.fetchrow(
        "SELECT * FROM request_rejections WHERE kind = $1 AND request_id = $2", kind.value, request_id
    )
    return _from_row(row) if row else None


async def record_rejection(
    conn: asyncpg.Connection,
    *,
    kind: RequestKind,
    request_id: str,
    fingerprint: str | None,
    error: str,
    reason: str,
    field: str | None,
) -> Rejection:
    """Record a refusal once; the first one recorded for ``request_id`` stays the answer and is returned."""
    await conn.execute(
        """
        INSERT INTO request_rejections (kind, request_id, request_fingerprint, error, reason, field)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (kind, request_id) DO NOTHING
        """,
        kind.value,
        request_id,
        fingerprint,
        error[:64],
        bounded_reason(reason),
        field[:64] if field else None,
    )
    found = await find_rejection(conn, kind, request_id)
    assert found is not None
    return found
