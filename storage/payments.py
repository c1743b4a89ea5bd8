"""SQL for deposit payments and their status events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import asyncpg

from domain.notifications import NewEvent as Announcement
from domain.payments import Payment, PaymentStatus, PaymentUpdate
from storage.db import dump_json, set_clause, update_by_id
from storage.pages import Page, Position, fetch_page

# The columns an update may name are exactly PaymentUpdate's fields, each a column of payments.
_UPDATABLE = frozenset(field.name for field in fields(PaymentUpdate))
assert _UPDATABLE <= set(Payment.__dataclass_fields__)


def _from_row(row: asyncpg.Record) -> Payment:
    values = dict(row)
    values["status"] = PaymentStatus(values["status"])
    return Payment(**values)


async def find_by_request_id(conn: asyncpg.Connection, request_id: str) -> Payment | None:
    row = await conn.fetchrow("SELECT * FROM payments WHERE request_id = $1", request_id)
    return _from_row(row) if row else None


async def insert_payment(
    conn: asyncpg.Connection,
    *,
    payment_id: str,
    request_id: str,
    fingerprint: str,
    user_id: str,
    amount_usd: Decimal,
    currency_code: str,
    description: str,
    look_again_in: float | None = None,
    claim_seconds: float | None = None,
) -> Payment | None:
    """Record a new payment request; ``None`` if ``request_id`` is already taken.

    It is due for the scheduler ``look_again_in`` seconds from now (None: not due), so that a creation
    whose message was lost is resumed by a poll (the creation itself sets the first real poll).
    With ``claim_seconds`` the new row is born with its creation lease taken for that long (as
    `claim_creation` would take it) and its gateway attempt noted (as `mark_gateway_attempt` would note
    it), so the recorder may call the gateway without another transaction.
    """
    row = await conn.fetchrow(
        """
        INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code, description,
                              next_poll_at, create_claimed_until, gateway_attempted_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8),
                now() + make_interval(secs => $9::float8), CASE WHEN $9::float8 IS NOT NULL THEN now() END)
        ON CONFLICT (request_id) DO NOTHING
        RETURNING *
        """,
        payment_id,
        request_id,
        fingerprint,
        user_id,
        amount_usd,
        currency_code,
        description,
        look_again_in,
        claim_seconds,
    )
    return _from_row(row) if row else None


async def record_creation(conn: asyncpg.Connection, payment_id: str, update: PaymentUpdate) -> Payment | None:
    """Write what the gateway opened for a payment not yet created there; ``None`` (nothing written) if it is."""
    row = await update_by_id(
        conn, "payments", payment_id, update.changes(), updatable=_UPDATABLE, only_if="provider_payment_id IS NULL"
    )
    return _from_row(row) if row else None


async def get_payment(conn: asyncpg.Connection, payment_id: str, *, for_update: bool = False) -> Payment | None:
    sql = "SELECT * FROM payments WHERE id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, payment_id)
    return _from_row(row) if row else None


async def get_by_provider_id(
    conn: asyncpg.Connection, provider_payment_id: str, *, for_update: bool = False
) -> Payment | None:
    sql = "SELECT * FROM payments WHERE provider_payment_id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, provider_payment_id)
    return _from_row(row) if row else None


class Locked(NamedTuple):
    payment: Payment
    precision: int | None  # of the payment's coin, when the catalogue knows it
    now: datetime  # the transaction's now(): what ``updated_at = now()`` writes in it


async def lock_by_provider_id(conn: asyncpg.Connection, provider_payment_id: str) -> Locked | None:
    """The payment with this gateway id, locked (FOR UPDATE), with its coin's precision, in one round trip."""
    row = await conn.fetchrow(
        """
        SELECT p.*, c.precision AS coin_precision, now() AS transaction_now
          FROM payments p LEFT JOIN currencies c ON c.code = p.currency_code
         WHERE p.provider_payment_id = $1
           FOR UPDATE OF p
        """,
        provider_payment_id,
    )
    if row is None:
        return None
    values = dict(row)
    precision, now = values.pop("coin_precision"), values.pop("transaction_now")
    values["status"] = PaymentStatus(values["status"])
    return Locked(Payment(**values), precision, now)


async def claim_creation(conn: asyncpg.Connection, payment_id: str, *, lease_seconds: float) -> Payment | None:
    """Take the right to call the gateway for this payment, for ``lease_seconds``.

    Only one holder at a time; a crashed holder's lease simply runs out.
    """
    row = await conn.fetchrow(
        """
        UPDATE payments
           SET create_claimed_until = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1 AND provider_payment_id IS NULL AND status = 'pending'
           AND (create_claimed_until IS NULL OR create_claimed_until < now())
        RETURNING *
        """,
        payment_id,
        lease_seconds,
    )
    return _from_row(row) if row else None


async def look_again_by(conn: asyncpg.Connection, payment_id: str, *, at: datetime) -> None:
    """Make the scheduler look at this payment, not yet created at the gateway, no later than ``at`` (an
    earlier look stays as it is): a message that finds another worker's creation lease leaves it to that look."""
    await conn.execute(
        """
        UPDATE payments SET next_poll_at = LEAST(next_poll_at, $2)
         WHERE id = $1 AND provider_payment_id IS NULL AND status = 'pending'
           AND next_poll_at IS DISTINCT FROM LEAST(next_poll_at, $2)
        """,
        payment_id,
        at,
    )


async def mark_gateway_attempt(conn: asyncpg.Connection, payment_id: str) -> None:
    """Note, before POST /v1/payment is sent, that the gateway is being asked to create this payment."""
    await conn.execute(
        "UPDATE payments SET gateway_attempted_at = now(), updated_at = now()"
        " WHERE id = $1 AND provider_payment_id IS NULL",
        payment_id,
    )


async def release_creation_claim(conn: asyncpg.Connection, payment_id: str) -> None:
    await conn.execute(
        "UPDATE payments SET create_claimed_until = NULL, updated_at = now()"
        " WHERE id = $1 AND provider_payment_id IS NULL",
        payment_id,
    )


async def update_payment(conn: asyncpg.Connection, payment_id: str, update: PaymentUpdate) -> Payment:
    """Write the columns ``update`` sets and return the new row."""
    row = await update_by_id(conn, "payments", payment_id, update.changes(), updatable=_UPDATABLE)
    assert row is not None
    return _from_row(row)


async def add_event(
    conn: asyncpg.Connection,
    payment_id: str,
    *,
    source: str,
    from_status: str | None,
    to_status: str | None,
    gateway_status: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO payment_events (payment_id, source, from_status, to_status, gateway_status, detail)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        payment_id,
        source,
        from_status,
        to_status,
        gateway_status,
        detail,
    )


class NewEvent(NamedTuple):
    """A ``payment_events`` row to write with an update (not an announcement: that is an outbox event)."""

    source: str
    from_status: str | None
    to_status: str | None
    gateway_status: str | None
    detail: dict[str, Any] | None


async def update_with_events(
    conn: asyncpg.Connection,
    payment_id: str,
    update: PaymentUpdate,
    events: Sequence[NewEvent],
    announcements: Sequence[tuple[Announcement, str]] = (),
) -> Payment:
    """`update_payment`, `add_event` for each of ``events`` and `outbox.add_event` for each (event, dedupe key)
    of ``announcements``, in order, in one statement; the new row."""
    assignments, values = set_clause("payments", update.changes(), updatable=_UPDATABLE, first_parameter=13)
    announced = [event for event, _ in announcements]
    row = await conn.fetchrow(
        f"""
        WITH moved AS (
            UPDATE payments SET {assignments}updated_at = now() WHERE id = $1 RETURNING *
        ), logged AS (
            INSERT INTO payment_events (payment_id, source, from_status, to_status, gateway_status, detail)
            SELECT moved.id, e.source, e.from_status, e.to_status, e.gateway_status, e.detail::jsonb
              FROM moved, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                          WITH ORDINALITY AS e (source, from_status, to_status, gateway_status, detail, n)
             ORDER BY e.n
        ), announced AS (
            INSERT INTO outbox_events (id, type, subject_id, dedupe_key, payload, created_at)
            SELECT a.id, a.type, a.subject_id, a.dedupe_key, a.payload, a.created_at
              FROM moved, unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])
                          WITH ORDINALITY AS a (id, type, subject_id, dedupe_key, payload, created_at, n)
             ORDER BY a.n
            ON CONFLICT (dedupe_key) DO NOTHING
        )
        SELECT * FROM moved
        """,
        payment_id,
        [event.source for event in events],
        [event.from_status for event in events],
        [event.to_status for event in events],
        [event.gateway_status for event in events],
        [None if event.detail is None else dump_json(event.detail) for event in events],
        [event.id for event in announced],
        [event.type.value for event in announced],
        [event.subject_id for event in announced],
        [key for _, key in announcements],
        [event.payload for event in announced],
        [event.created_at for event in announced],
        *values,
    )
    if row is None:
        raise LookupError(f"payments row {payment_id} does not exist")
    return _from_row(row)


async def list_events(conn: asyncpg.Connection, payment_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT source, from_status, to_status, gateway_status, detail, created_at"
        " FROM payment_events WHERE payment_id = $1 ORDER BY id",
        payment_id,
    )
    return [dict(row) for row in rows]


async def claim_due(
    conn: asyncpg.Connection, *, limit: int, lease_seconds: float, now: datetime | None = None
) -> list[Payment]:
    """Payments whose next look is due, pushed ``lease_seconds`` out so no other scheduler takes them.

    Uses the partial index on ``next_poll_at``; SKIP LOCKED lets two schedulers split the work.
    """
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM payments
             WHERE next_poll_at IS NOT NULL AND next_poll_at <= coalesce($3, now())
             ORDER BY next_poll_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
        )
        UPDATE payments p
           SET next_poll_at = coalesce($3, now()) + make_interval(secs => $2)
          FROM due WHERE p.id = due.id
        RETURNING p.*
        """,
        limit,
        lease_seconds,
        now,
    )
    return [_from_row(row) for row in rows]


async def release_claims(conn: asyncpg.Connection, claimed: Sequence[Payment]) -> int:
    """Make claimed payments due now again, unless something moved their next look since `claim_due`.

    For claims whose follow-up was never sent: the next tick takes them instead of waiting out the lease.
    """
    result = await conn.execute(
        """
        UPDATE payments p SET next_poll_at = now()
          FROM unnest($1::text[], $2::timestamptz[]) AS c (id, leased_until)
         WHERE p.id = c.id AND p.next_poll_at = c.leased_until
        """,
        [payment.id for payment in claimed],
        [payment.next_poll_at for payment in claimed],
    )
    return int(result.split()[-1])


async def list_held(conn: asyncpg.Connection, *, limit: int = 100) -> list[Payment]:
    """Payments an operator must look at: held for review, oldest first."""
    rows = await conn.fetch("SELECT * FROM payments WHERE hold_reason IS NOT NULL ORDER BY updated_at LIMIT $1", limit)
    return [_from_row(row) for row in rows]


async def lock_batch(conn: asyncpg.Connection, payment_ids: list[str]) -> list[Payment]:
    """Lock the given payments for settlement in one statement, in id order.

    Rows another transaction holds are skipped (SKIP LOCKED), not waited for: a batch never stalls
    behind one busy payment. The caller settles whatever is missing from the answer on its own.
    """
    rows = await conn.fetch(
        "SELECT * FROM payments WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE SKIP LOCKED", payment_ids
    )
    return [_from_row(row) for row in rows]


async def mark_settled_batch(conn: asyncpg.Connection, settled: list[tuple[Payment, int, Decimal]]) -> list[Payment]:
    """For each (payment, ledger transaction id, credit): the settled mark and its ``settle`` event.

    One UPDATE and one INSERT for the whole batch; the rows must be locked by this transaction.
    Returns the payments as written, in the order given.
    """
    if not settled:
        return []
    ids = [payment.id for payment, _, _ in settled]
    tx_ids = [tx_id for _, tx_id, _ in settled]
    credits = [credit for _, _, credit in settled]
    rows = await conn.fetch(
        """
        UPDATE payments p
           SET settled_at = now(), ledger_transaction_id = s.tx_id, credit_usd = s.credit,
               next_poll_at = NULL, updated_at = now()
          FROM unnest($1::text[], $2::bigint[], $3::numeric[]) AS s (id, tx_id, credit)
         WHERE p.id = s.id
        RETURNING p.*
        """,
        ids,
        tx_ids,
        credits,
    )
    await conn.execute(
        """
        INSERT INTO payment_events (payment_id, source, from_status, to_status, detail)
        SELECT s.id, 'settle', s.status, s.status,
               jsonb_build_object('credit_usd', s.credit::text, 'ledger_transaction_id', s.tx_id)
          FROM unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[])
               WITH ORDINALITY AS s (id, status, tx_id, credit, n)
         ORDER BY n
        """,
        ids,
        [payment.status.value for payment, _, _ in settled],
        tx_ids,
        credits,
    )
    written = {row["id"]: _from_row(row) for row in rows}
    return [written[payment_id] for payment_id in ids]


async def list_for_user(
    conn: asyncpg.Connection, user_id: str, *, status: str | None, limit: int, after: Position | None
) -> Page[Payment]:
    """A user's payments, newest first, optionally of one status."""
    where, params = "user_id = $1", [user_id]
    if status is not None:
        where, params = where + " AND status = $2", [user_id, status]
    return await fetch_page(
        conn, "SELECT * FROM payments", where, params, after=after, limit=limit, newest_first=True, from_row=_from_row
    )


async def list_held_page(conn: asyncpg.Connection, *, limit: int, after: Position | None) -> Page[Payment]:
    """Payments held for an operator, oldest first (a work queue)."""
    return await fetch_page(
        conn,
        "SELECT * FROM payments",
        "hold_reason IS NOT NULL",
        [],
        after=after,
        limit=limit,
        newest_first=False,
        from_row=_from_row,
    )
