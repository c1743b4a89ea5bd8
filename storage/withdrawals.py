"""SQL for withdrawal requests and their audit trail."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from domain.withdrawals import Withdrawal, WithdrawalQuote, WithdrawalStatus, WithdrawalUpdate
from storage.db import update_by_id
from storage.pages import Page, Position, fetch_page

# The columns an update may name are exactly WithdrawalUpdate's fields, each a column of withdrawals.
_UPDATABLE = frozenset(field.name for field in fields(WithdrawalUpdate))
assert _UPDATABLE <= set(Withdrawal.__dataclass_fields__)


def _from_row(row: asyncpg.Record) -> Withdrawal:
    values = dict(row)
    values["status"] = WithdrawalStatus(values["status"])
    return Withdrawal(**values)


async def insert_withdrawal(
    conn: asyncpg.Connection,
    *,
    withdrawal_id: str,
    request_id: str,
    fingerprint: str,
    user_id: str,
    currency_code: str,
    wallet_address: str,
    extra_id: str | None,
    quote: WithdrawalQuote,
) -> Withdrawal | None:
    """Record a new request; ``None`` if ``request_id`` is already taken."""
    row = await conn.fetchrow(
        """
        INSERT INTO withdrawals (id, request_id, request_fingerprint, user_id, amount_usd, currency_code,
                                 wallet_address, extra_id, network_fee_usd, service_fee_usd, total_fee_usd,
                                 final_amount_usd)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (request_id) DO NOTHING
        RETURNING *
        """,
        withdrawal_id,
        request_id,
        fingerprint,
        user_id,
        quote.amount_usd,
        currency_code,
        wallet_address,
        extra_id,
        quote.network_fee_usd,
        quote.service_fee_usd,
        quote.total_fee_usd,
        quote.final_amount_usd,
    )
    return _from_row(row) if row else None


async def find_by_request_id(conn: asyncpg.Connection, request_id: str) -> Withdrawal | None:
    row = await conn.fetchrow("SELECT * FROM withdrawals WHERE request_id = $1", request_id)
    return _from_row(row) if row else None


async def get_withdrawal(
    conn: asyncpg.Connection, withdrawal_id: str, *, for_update: bool = False
) -> Withdrawal | None:
    sql = "SELECT * FROM withdrawals WHERE id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, withdrawal_id)
    return _from_row(row) if row else None


async def get_by_provider_id(
    conn: asyncpg.Connection, provider_payout_id: str, *, for_update: bool = False
) -> Withdrawal | None:
    sql = "SELECT * FROM withdrawals WHERE provider_payout_id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, provider_payout_id)
    return _from_row(row) if row else None


async def update_withdrawal(conn: asyncpg.Connection, withdrawal_id: str, update: WithdrawalUpdate) -> Withdrawal:
    """Write the columns ``update`` sets and return the new row."""
    row = await update_by_id(conn, "withdrawals", withdrawal_id, update.changes(), updatable=_UPDATABLE)
    assert row is not None
    return _from_row(row)


async def update_unsent(conn: asyncpg.Connection, withdrawal_id: str, update: WithdrawalUpdate) -> Withdrawal | None:
    """Update only while the withdrawal is still approved with no payout recorded; ``None`` otherwise
    (an operator, an IPN or another attempt has moved it meanwhile, and this write no longer applies)."""
    row = await update_by_id(
        conn,
        "withdrawals",
        withdrawal_id,
        update.changes(),
        updatable=_UPDATABLE,
        only_if="status = 'approved' AND provider_payout_id IS NULL",
    )
    return _from_row(row) if row else None


async def claim_payout(conn: asyncpg.Connection, withdrawal_id: str, *, lease_seconds: float) -> Withdrawal | None:
    """Take the right to call the payout API for this approved withdrawal, for ``lease_seconds``.

    The stage marks the withdrawal as paid through the gateway just before it sends the payout; from
    then on only the gateway's answer decides it (or an operator, once it is held for review).
    """
    row = await conn.fetchrow(
        """
        UPDATE withdrawals
           SET payout_claimed_until = now() + make_interval(secs => $2),
               -- if this attempt dies, the scheduler comes back once the lease has run out
               next_check_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1 AND status = 'approved' AND provider_payout_id IS NULL AND review_reason IS NULL
           AND (payout_claimed_until IS NULL OR payout_claimed_until < now())
        RETURNING *
        """,
        withdrawal_id,
        lease_seconds,
    )
    return _from_row(row) if row else None


async def check_unsent_by(conn: asyncpg.Connection, withdrawal_id: str, *, at: datetime) -> None:
    """Make the scheduler look at this approved, not yet recorded withdrawal no later than ``at`` (an earlier
    check stays as it is): a message that finds another attempt's payout lease leaves it to that check."""
    await conn.execute(
        """
        UPDATE withdrawals SET next_check_at = LEAST(next_check_at, $2)
         WHERE id = $1 AND status = 'approved' AND provider_payout_id IS NULL
           AND next_check_at IS DISTINCT FROM LEAST(next_check_at, $2)
        """,
        withdrawal_id,
        at,
    )


async def mark_payout_sending(
    conn: asyncpg.Connection, withdrawal_id: str, *, amount: Decimal, lease: datetime
) -> Withdrawal | None:
    """Just before the payout request: fix the amount and hand the withdrawal to the gateway.

    Only while it is still approved and this attempt still holds its lease (``lease`` is the
    ``payout_claimed_until`` it was granted); ``None`` means someone else has moved it and nothing may be sent.
    """
    row = await conn.fetchrow(
        """
        UPDATE withdrawals
           SET payout_amount = $2, payout_mode = 'gateway', payout_attempted_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'approved' AND provider_payout_id IS NULL
           AND payout_claimed_until = $3 AND payout_claimed_until > now()
        RETURNING *
        """,
        withdrawal_id,
        amount,
        lease,
    )
    return _from_row(row) if row else None


async def end_payout_attempt(
    conn: asyncpg.Connection, withdrawal_id: str, *, lease: datetime, retry_at: datetime
) -> None:
    """A payout attempt ends without an answer: shorten its own lease (never another attempt's)."""
    await conn.execute(
        """
        UPDATE withdrawals SET payout_claimed_until = $3, next_check_at = $3, updated_at = now()
         WHERE id = $1 AND status = 'approved' AND provider_payout_id IS NULL AND payout_claimed_until = $2
        """,
        withdrawal_id,
        lease,
        retry_at,
    )


async def add_event(
    conn: asyncpg.Connection,
    withdrawal_id: str,
    *,
    from_status: str | None,
    to_status: str,
    actor: str,
    note: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO withdrawal_events (withdrawal_id, from_status, to_status, actor, note, detail)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        withdrawal_id,
        from_status,
        to_status,
        actor,
        note,
        detail,
    )


async def list_events(conn: asyncpg.Connection, withdrawal_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT from_status, to_status, actor, note, detail, created_at"
        " FROM withdrawal_events WHERE withdrawal_id = $1 ORDER BY id",
        withdrawal_id,
    )
    return [dict(row) for row in rows]


async def list_withdrawals(conn: asyncpg.Connection, *, status: str | None = None, limit: int = 50) -> list[Withdrawal]:
    rows = await conn.fetch(
        "SELECT * FROM withdrawals WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at DESC LIMIT $2",
        status,
        limit,
    )
    return [_from_row(row) for row in rows]


async def claim_due(
    conn: asyncpg.Connection, *, limit: int, lease_seconds: float, now: datetime | None = None
) -> list[Withdrawal]:
    """Withdrawals whose payout should be checked now, pushed out so no other scheduler takes them."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM withdrawals
             WHERE next_check_at IS NOT NULL AND next_check_at <= coalesce($3, now())
               AND status IN ('approved', 'processing')
             ORDER BY next_check_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
        )
        UPDATE withdrawals w
           SET next_check_at = coalesce($3, now()) + make_interval(secs => $2)
          FROM due WHERE w.id = due.id
        RETURNING w.*
        """,
        limit,
        lease_seconds,
        now,
    )
    return [_from_row(row) for row in rows]


async def list_page(
    conn: asyncpg.Connection, *, user_id: str | None, status: str | None, limit: int, after: Position | None
) -> Page[Withdrawal]:
    """Withdrawals newest first: one user's (``user_id``) or everyone's, optionally of one status."""
    conditions: list[str] = []
    params: list[str] = []
    for column, value in (("user_id", user_id), ("status", status)):
        if value is not None:
            params.append(value)
            conditions.append(f"{column} = ${len(params)}")
    return await fetch_page(
        conn,
        "SELECT * FROM withdrawals",
        " AND ".join(conditions) or "TRUE",
        params,
        after=after,
        limit=limit,
        newest_first=True,
        from_row=_from_row,
    )
