"""SQL of the gateway orphans table (`payments reconcile --gateway`, `/metrics`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from domain.orphans import Orphan


@dataclass(frozen=True)
class OrphanRecord:
    provider_payment_id: str
    payment_id: str
    gateway_status: str
    pay_currency: str | None
    pay_amount: Decimal | None
    actually_paid: Decimal | None
    funds_received: bool
    found_at: datetime
    updated_at: datetime


async def stored_provider_ids(conn: asyncpg.Connection, payment_ids: Sequence[str]) -> dict[str, str | None]:
    """Our payments among ``payment_ids``, each with the provider id we recorded (or None)."""
    rows = await conn.fetch(
        "SELECT id, provider_payment_id FROM payments WHERE id = ANY($1::text[])", list(payment_ids)
    )
    return {row["id"]: row["provider_payment_id"] for row in rows}


async def record(conn: asyncpg.Connection, orphans: Iterable[Orphan]) -> None:
    """Insert new orphans; refresh what the gateway now says about known ones (a resolution stays)."""
    await conn.executemany(
        """
        INSERT INTO gateway_orphans
            (provider_payment_id, payment_id, gateway_status, pay_currency, pay_amount, actually_paid, funds_received)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (provider_payment_id) DO UPDATE
           SET gateway_status = EXCLUDED.gateway_status, actually_paid = EXCLUDED.actually_paid,
               funds_received = gateway_orphans.funds_received OR EXCLUDED.funds_received, updated_at = now()
        """,
        [
            (o.provider_payment_id, o.payment_id, o.gateway_status, o.pay_currency, o.pay_amount, o.actually_paid,
             o.funds_received)
            for o in orphans
        ],
    )


async def unresolved(conn: asyncpg.Connection) -> list[OrphanRecord]:
    rows = await conn.fetch(
        "SELECT provider_payment_id, payment_id, gateway_status, pay_currency, pay_amount, actually_paid,"
        " funds_received, found_at, updated_at FROM gateway_orphans WHERE resolved_at IS NULL ORDER BY found_at"
    )
    return [OrphanRecord(**dict(row)) for row in rows]


async def count_unresolved(conn: asyncpg.Connection) -> dict[bool, int]:
    """Unresolved orphans by whether funds were received."""
    rows = await conn.fetch(
        "SELECT funds_received, count(*) AS n FROM gateway_orphans WHERE resolved_at IS NULL GROUP BY funds_received"
    )
    counts = {True: 0, False: 0}
    counts.update({row["funds_received"]: row["n"] for row in rows})
    return counts
