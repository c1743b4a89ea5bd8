"""Group commit at the ledger: many postings in one statement per table, and the zero-sum check of
migration 0004 (once per database transaction, at commit). Real Postgres, direct SQL, no mocks."""

from __future__ import annotations

import itertools
from decimal import Decimal

import asyncpg
import pytest

from domain.ledger import GATEWAY_CLEARING, AccountRef, deposit_posting
from storage.db import transaction
from storage.ledger import ensure_accounts, invariant_violations, post, post_many, user_balance, user_history

D = Decimal
IntegrityError = asyncpg.IntegrityConstraintViolationError


def _deposits(user: str, amounts: list[str], prefix: str = "PAY") -> list:
    return [
        deposit_posting(payment_id=f"{prefix}_{i}", user_id=user, amount_usd=D(a), description=f"d{i}")
        for i, a in enumerate(amounts)
    ]


async def test_a_group_of_postings_for_many_users_and_one_hot_user(pool):
    hot = _deposits("hot", [f"{1 + i}.{i:02d}" for i in range(40)], "HOT")
    many = [
        deposit_posting(payment_id=f"MANY_{i}", user_id=f"u{i % 7}", amount_usd=D("2.50"), description="")
        for i in range(30)
    ]
    async with transaction(pool) as conn:
        results = await post_many(conn, [*hot, *many])
        writer = await conn.fetchval("SELECT txid_current()")
    assert len(results) == 70 and all(r.created for r in results.values())
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(DISTINCT written_by_xact) FROM ledger_transactions") == 1
        assert await conn.fetchval("SELECT min(written_by_xact) FROM ledger_transactions") == writer
        assert (await user_balance(conn, "hot")).balance_usd == sum(p.entries[0].amount for p in hot)
        assert (await user_balance(conn, "u3")).balance_usd == D("2.50") * 4
        history = await user_history(conn, "hot", limit=100)
        for newer, older in itertools.pairwise(history):  # balance_after chains in entry-id order
            assert newer.balance_after - newer.amount_usd == older.balance_after
        assert await invariant_violations(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM ledger_commit_checks") == 0


async def test_a_group_replays_keys_already_posted_without_writing(pool):
    first = _deposits("ann", ["1.00", "2.00"])
    async with transaction(pool) as conn:
        single = await post(conn, first[0])
    async with transaction(pool) as conn:
        results = await post_many(conn, [*first, *_deposits("ann", ["4.00"], "NEW")])
    assert results["deposit:PAY_0"].transaction_id == single.transaction_id
    assert [results[k].created for k in ("deposit:PAY_0", "deposit:PAY_1", "deposit:NEW_0")] == [False, True, True]
    async with pool.acquire() as conn:
        assert (await user_balance(conn, "ann")).balance_usd == D("7.00")
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 6
    with pytest.raises(ValueError, match="repeat"):
        async with transaction(pool) as conn:
            await post_many(conn, [first[0], first[0]])


async def _accounts(pool) -> tuple[int, int]:
    async with pool.acquire() as conn:
        ids = await ensure_accounts(conn, [AccountRef.available("eve"), GATEWAY_CLEARING])
    return ids[AccountRef.available("eve")], ids[GATEWAY_CLEARING]


async def _insert(conn, key: str, entries: list[tuple[int, str]]) -> int:
    tx_id = await conn.fetchval(
        "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ($1, 'adjustment') RETURNING id", key
    )
    for account, amount in entries:
        await conn.execute(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount) VALUES ($1, $2, $3)",
            tx_id,
            account,
            D(amount),
        )
    return tx_id


async def test_one_unbalanced_transaction_among_many_refuses_the_commit(pool):
    user, clearing = await _accounts(pool)
    async with pool.acquire() as conn:
        with pytest.raises(IntegrityError, match="does not balance"):
            async with conn.transaction():
                for i in range(20):
                    await _insert(conn, f"ok:{i}", [(user, "1.00"), (clearing, "-1.00")])
                await _insert(conn, "bad", [(user, "1.00"), (clearing, "-0.99")])
        assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0
        assert await conn.fetchval("SELECT count(*) FROM ledger_commit_checks") == 0


async def test_the_commit_check_cannot_be_removed_before_commit(pool):
    user, _ = await _accounts(pool)
    for sql in (
        "DELETE FROM ledger_commit_checks",
        "UPDATE ledger_commit_checks SET xact = 0",
        "TRUNCATE ledger_commit_checks",  # Postgres itself refuses: the check is a pending trigger event
    ):
        async with pool.acquire() as conn:
            with pytest.raises((IntegrityError, asyncpg.ObjectInUseError), match=r"refused|pending trigger events"):
                async with conn.transaction():
                    await _insert(conn, "unbalanced", [(user, "5.00")])
                    await conn.execute(sql)
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0


async def test_a_registration_rolled_back_with_a_savepoint_is_made_again(pool):
    user, clearing = await _accounts(pool)
    async with pool.acquire() as conn:
        with pytest.raises(IntegrityError, match="does not balance"):
            async with conn.transaction():
                savepoint = conn.transaction()
                await savepoint.start()
                await _insert(conn, "undone", [(user, "1.00"), (clearing, "-1.00")])
                await savepoint.rollback()
                await _insert(conn, "lopsided", [(user, "3.00")])
        assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0
        assert (await user_balance(conn, "eve")).balance_usd == D("0")
