"""Migration 0003 against a real Postgres: a committed ledger transaction is sealed, and its
created_at is the database's own clock, whatever an INSERT says. Direct SQL, no mocks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from domain.ledger import GATEWAY_CLEARING, AccountRef, deposit_posting
from storage.db import transaction
from storage.ledger import ensure_accounts, invariant_violations, post, user_balance

D = Decimal
FORGED = datetime(2001, 1, 1, tzinfo=UTC)


async def _everything(conn: asyncpg.Connection) -> dict:
    return {
        "transactions": [tuple(r) for r in await conn.fetch("SELECT * FROM ledger_transactions ORDER BY id")],
        "entries": [tuple(r) for r in await conn.fetch("SELECT * FROM ledger_entries ORDER BY id")],
        "accounts": [tuple(r) for r in await conn.fetch("SELECT * FROM ledger_accounts ORDER BY id")],
    }


async def _insert_entry(conn: asyncpg.Connection, tx_id: int, account_id: int, amount: str) -> None:
    await conn.execute(
        "INSERT INTO ledger_entries (transaction_id, account_id, amount, created_at) VALUES ($1, $2, $3, $4)",
        tx_id,
        account_id,
        D(amount),
        FORGED,
    )


async def test_balanced_entries_cannot_be_appended_to_a_committed_ledger_transaction(pool):
    async with transaction(pool) as conn:
        posted = await post(
            conn, deposit_posting(payment_id="PAY_1", user_id="alice", amount_usd=D("10.00"), description="d")
        )
    assert posted.created
    async with pool.acquire() as conn:
        before = await _everything(conn)
        ids = await ensure_accounts(conn, [AccountRef.available("alice"), GATEWAY_CLEARING])

    # Two entries that balance each other, so only the seal can refuse them.
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="sealed"):
        async with transaction(pool) as conn:
            await _insert_entry(conn, posted.transaction_id, ids[AccountRef.available("alice")], "5.00")
            await _insert_entry(conn, posted.transaction_id, ids[GATEWAY_CLEARING], "-5.00")

    async with pool.acquire() as conn:
        assert await _everything(conn) == before
        assert (await user_balance(conn, "alice")).balance_usd == D("10.00")
        assert await invariant_violations(conn) == []


async def test_ledger_transaction_created_at_is_forced_to_now(pool):
    async with transaction(pool) as conn:
        ids = await ensure_accounts(conn, [AccountRef.available("bob"), GATEWAY_CLEARING])
    async with transaction(pool) as conn:
        row = await conn.fetchrow(
            "INSERT INTO ledger_transactions (idempotency_key, type, description, created_at)"
            " VALUES ('manual:backdated', 'adjustment', 'backdated by hand', $1) RETURNING id, created_at",
            FORGED,
        )
        now = await conn.fetchval("SELECT now()")
        assert row["created_at"] == now != FORGED
        # Created in this database transaction, so it still takes its entries (stamped now() as well).
        await _insert_entry(conn, row["id"], ids[AccountRef.available("bob")], "3.00")
        await _insert_entry(conn, row["id"], ids[GATEWAY_CLEARING], "-3.00")

    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT created_at FROM ledger_transactions WHERE id = $1", row["id"])
        entry_times = {
            r[0] for r in await conn.fetch("SELECT created_at FROM ledger_entries WHERE transaction_id = $1", row["id"])
        }
        assert stored == now and entry_times == {now}
        assert (await user_balance(conn, "bob")).balance_usd == D("3.00")
        assert await invariant_violations(conn) == []
