"""SQL for the notification outbox: writing events, reading them in a stable order, delivery claims.

Stable order: an event is visible to readers and to delivery only once its writing transaction is
older than every transaction still running (``xact_id < pg_snapshot_xmin(pg_current_snapshot())``),
and events are ordered by ``(xact_id, seq)``. Any event not yet visible belongs to a transaction that
is still running or has not started, so its ``xact_id`` is at least that horizon and it sorts after
everything already returned: a cursor never moves past an event that commits later.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from domain.errors import InvalidRequest
from domain.notifications import EventType, build_event

MAX_PAGE = 1000
_STABLE = "xact_id < pg_snapshot_xmin(pg_current_snapshot())"
_PENDING = "delivered_at IS NULL AND given_up_at IS NULL"


@dataclass(frozen=True)
class OutboxEvent:
    id: str
    type: str
    subject_id: str
    payload: str
    created_at: datetime
    attempts: int
    first_attempt_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    given_up_at: datetime | None

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.payload)


_COLUMNS = ", ".join(OutboxEvent.__dataclass_fields__)


def _event(row: asyncpg.Record) -> OutboxEvent:
    return OutboxEvent(**{name: row[name] for name in OutboxEvent.__dataclass_fields__})


async def add_event(
    conn: asyncpg.Connection,
    event_type: EventType | str,
    view: dict[str, Any],
    *,
    now: datetime,
    dedupe_key: str | None = None,
) -> str | None:
    """Record an event in the caller's open transaction; it is announced only if that transaction commits.

    ``dedupe_key`` names the fact (e.g. ``"PAY_…:credited"``): recording it again is a no-op and
    returns ``None``; otherwise the new event's id is returned.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("add_event needs the caller's open transaction (the event must commit with the change)")
    event = build_event(event_type, view, now=now)
    return await conn.fetchval(
        """
        INSERT INTO outbox_events (id, type, subject_id, dedupe_key, payload, created_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id
        """,
        event.id,
        event.type.value,
        event.subject_id,
        dedupe_key,
        event.payload,
        event.created_at,
    )


async def add_events(
    conn: asyncpg.Connection,
    events: Sequence[tuple[EventType | str, dict[str, Any], str]],
    *,
    now: datetime,
) -> None:
    """`add_event` for many (type, view, dedupe key) at once, in one statement (group commit)."""
    if not events:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("add_events needs the caller's open transaction (events must commit with the change)")
    built = [(build_event(kind, view, now=now), key) for kind, view, key in events]
    await conn.execute(
        """
        INSERT INTO outbox_events (id, type, subject_id, dedupe_key, payload, created_at)
        SELECT e.id, e.type, e.subject_id, e.dedupe_key, e.payload, $6
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
               WITH ORDINALITY AS e (id, type, subject_id, dedupe_key, payload, n)
         ORDER BY e.n
        ON CONFLICT (dedupe_key) DO NOTHING
        """,
        [event.id for event, _ in built],
        [event.type.value for event, _ in built],
        [event.subject_id for event, _ in built],
        [key for _, key in built],
        [event.payload for event, _ in built],
        now,
    )


async def get_event(conn: asyncpg.Connection, event_id: str) -> OutboxEvent | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM outbox_events WHERE id = $1", event_id)
    return _event(row) if row else None


async def _position(conn: asyncpg.Connection, event_id: str, *, field: str) -> asyncpg.Record:
    """An event's place in the read order; an unknown id is refused (never read as "from the start")."""
    row = await conn.fetchrow("SELECT xact_id::text AS xact_id, seq FROM outbox_events WHERE id = $1", event_id)
    if row is None:
        raise InvalidRequest(f"no event {event_id!r}", field=field)
    return row


async def list_events_after(conn: asyncpg.Connection, after: str | None, limit: int) -> list[OutboxEvent]:
    """Committed events after the event ``after`` (from the start when ``None``), oldest first.

    Page on with the last returned id; an empty page means nothing more for now, never that an
    event was skipped. An unknown ``after`` is refused rather than read as "from the start".
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"must be between 1 and {MAX_PAGE}", field="limit")
    if after is None:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM outbox_events WHERE {_STABLE} ORDER BY xact_id, seq LIMIT $1", limit
        )
        return [_event(row) for row in rows]
    cursor = await _position(conn, after, field="after")
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM outbox_events
         WHERE {_STABLE} AND (xact_id, seq) > ($1::text::xid8, $2::bigint)
         ORDER BY xact_id, seq LIMIT $3
        """,
        cursor["xact_id"],
        cursor["seq"],
        limit,
    )
    return [_event(row) for row in rows]


@dataclass(frozen=True)
class Claim:
    """The delivery stage's view of a subject's oldest pending event."""

    outcome: str  # "claimed", "none" (nothing pending), "busy" (another worker's lease), "waiting" (not due yet)
    event: OutboxEvent | None = None
    token: uuid.UUID | None = None
    now: datetime | None = None


async def claim_next(conn: asyncpg.Connection, subject_id: str, *, lease_seconds: float) -> Claim:
    """Lease the subject's oldest pending event for one delivery attempt (inside the caller's transaction).

    Only the oldest pending event is ever claimed, so a subject's later events wait until it is
    delivered or given up. The attempt is counted here, before sending: a worker killed mid-send
    still used an attempt, and the event is claimable again once the lease runs out.
    """
    row = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS}, leased_until, now() AS db_now FROM outbox_events
         WHERE subject_id = $1 AND {_PENDING} AND {_STABLE}
         ORDER BY xact_id, seq LIMIT 1
         FOR UPDATE
        """,
        subject_id,
    )
    if row is None:
        return Claim("none")
    now = row["db_now"]
    if row["leased_until"] is not None and row["leased_until"] > now:
        return Claim("busy", _event(row), now=now)
    if row["next_attempt_at"] > now:
        return Claim("waiting", _event(row), now=now)
    token = uuid.uuid4()
    claimed = await conn.fetchrow(
        f"""
        UPDATE outbox_events
           SET lease_token = $2, leased_until = now() + make_interval(secs => $3), attempts = attempts + 1,
               first_attempt_at = coalesce(first_attempt_at, now()), queued_until = NULL
         WHERE id = $1
        RETURNING {_COLUMNS}
        """,
        row["id"],
        token,
        lease_seconds,
    )
    return Claim("claimed", _event(claimed), token=token, now=now)


async def record_delivered(conn: asyncpg.Connection, event_id: str, token: uuid.UUID) -> bool:
    """Mark delivered; ``False`` when the lease was lost (another worker took the event over)."""
    status = await conn.execute(
        """
        UPDATE outbox_events
           SET delivered_at = now(), lease_token = NULL, leased_until = NULL, last_error = NULL
         WHERE id = $1 AND lease_token = $2
        """,
        event_id,
        token,
    )
    return status.endswith(" 1")


async def record_failure(
    conn: asyncpg.Connection, event_id: str, token: uuid.UUID, *, error: str, retry_in: float | None
) -> bool:
    """Schedule the next attempt in ``retry_in`` seconds, or give up when it is ``None``; ``False`` if the
    lease was lost."""
    status = await conn.execute(
        """
        UPDATE outbox_events
           SET lease_token = NULL, leased_until = NULL, queued_until = NULL, last_error = $3,
               next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at
                                      ELSE now() + make_interval(secs => $4::float8) END,
               given_up_at = CASE WHEN $4::float8 IS NULL THEN now() END
         WHERE id = $1 AND lease_token = $2
        """,
        event_id,
        token,
        error[:500],
        retry_in,
    )
    return status.endswith(" 1")


async def claim_due_subjects(conn: asyncpg.Connection, *, limit: int, requeue_after: float) -> list[str]:
    """Subjects whose oldest pending event is due (new, retry time reached, or its lease expired), marked so
    no scheduler enqueues them again for ``requeue_after`` seconds. SKIP LOCKED lets schedulers split them."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT e.seq FROM outbox_events e
             WHERE e.delivered_at IS NULL AND e.given_up_at IS NULL
               AND e.next_attempt_at <= now()
               AND (e.leased_until IS NULL OR e.leased_until <= now())
               AND (e.queued_until IS NULL OR e.queued_until <= now())
               AND e.xact_id < pg_snapshot_xmin(pg_current_snapshot())
               AND NOT EXISTS (
                   SELECT 1 FROM outbox_events p
                    WHERE p.subject_id = e.subject_id AND p.delivered_at IS NULL AND p.given_up_at IS NULL
                      AND (p.xact_id, p.seq) < (e.xact_id, e.seq))
             ORDER BY e.next_attempt_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
        )
        UPDATE outbox_events o SET queued_until = now() + make_interval(secs => $2)
          FROM due WHERE o.seq = due.seq
        RETURNING o.subject_id
        """,
        limit,
        requeue_after,
    )
    return [row["subject_id"] for row in rows]


async def mark_for_redelivery(
    conn: asyncpg.Connection, *, since_event: str | None = None, since_time: datetime | None = None
) -> list[str]:
    """Make committed events from ``since_event`` (inclusive, in read order) or ``since_time`` on pending again,
    with fresh attempts. Events being sent right now are left to that send. Returns each event's subject."""
    if (since_event is None) == (since_time is None):
        raise ValueError("give exactly one of since_event and since_time")
    if since_event is not None:
        cursor = await _position(conn, since_event, field="since")
        where, args = "(xact_id, seq) >= ($1::text::xid8, $2::bigint)", [cursor["xact_id"], cursor["seq"]]
    else:
        where, args = "created_at >= $1", [since_time]
    rows = await conn.fetch(
        f"""
        UPDATE outbox_events
           SET delivered_at = NULL, given_up_at = NULL, attempts = 0, first_attempt_at = NULL,
               next_attempt_at = now(), last_error = NULL, queued_until = NULL
         WHERE {where} AND {_STABLE} AND NOT coalesce(leased_until > now(), false)
        RETURNING subject_id
        """,
        *args,
    )
    return [row["subject_id"] for row in rows]
