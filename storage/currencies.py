"""SQL for the currencies table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

from domain.currencies import Currency

_COLUMNS = (
    "code, name, network, ticker, precision, wallet_regex, extra_id_required, extra_id_regex,"
    " min_amount_usd, gateway_enabled, operator_active"
)


def _from_row(row: asyncpg.Record) -> Currency:
    return Currency(**dict(row))


async def upsert_from_gateway(conn: asyncpg.Connection, currencies: Iterable[Currency]) -> int:
    """Insert or refresh currencies from the gateway. ``operator_active`` is never overwritten."""
    rows = [
        (
            c.code,
            c.name,
            c.network,
            c.ticker,
            c.precision,
            c.wallet_regex,
            c.extra_id_required,
            c.extra_id_regex,
            c.min_amount_usd,
            c.gateway_enabled,
        )
        for c in currencies
    ]
    await conn.executemany(
        """
        INSERT INTO currencies (code, name, network, ticker, precision, wallet_regex, extra_id_required,
                                extra_id_regex, min_amount_usd, gateway_enabled, synced_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
        ON CONFLICT (code) DO UPDATE SET
            name = EXCLUDED.name, network = EXCLUDED.network, ticker = EXCLUDED.ticker,
            precision = EXCLUDED.precision, wallet_regex = EXCLUDED.wallet_regex,
            extra_id_required = EXCLUDED.extra_id_required, extra_id_regex = EXCLUDED.extra_id_regex,
            min_amount_usd = coalesce(EXCLUDED.min_amount_usd, currencies.min_amount_usd),
            gateway_enabled = EXCLUDED.gateway_enabled, synced_at = now()
        """,
        rows,
    )
    return len(rows)


async def get_currency(conn: asyncpg.Connection, code: str) -> Currency | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM currencies WHERE code = $1", code)
    return _from_row(row) if row else None


async def last_synced_at(conn: asyncpg.Connection) -> datetime | None:
    """When the catalogue was last refreshed from the gateway (None: never, the table is empty)."""
    return await conn.fetchval("SELECT max(synced_at) FROM currencies")


async def list_currencies(conn: asyncpg.Connection, *, active_only: bool = False) -> list[Currency]:
    where = "WHERE gateway_enabled AND operator_active" if active_only else ""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM currencies {where} ORDER BY code")
    return [_from_row(row) for row in rows]


async def set_operator_active(conn: asyncpg.Connection, code: str, active: bool) -> bool:
    """Switch a currency on or off for deposits; returns False if no such currency."""
    status = await conn.execute("UPDATE currencies SET operator_active = $2 WHERE code = $1", code, active)
    return status.endswith(" 1")
