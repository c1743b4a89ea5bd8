"""Ledger invariants against a real, freshly migrated Postgres (the `pool` fixture): no mocks."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

import asyncpg
import pytest

from domain.ledger import (
    FEES,
    GATEWAY_CLEARING,
    PAYOUTS,
    AccountRef,
    Entry,
    LedgerPosting,
    TransactionType,
    deposit_posting,
)
from storage.db import transaction
from storage.ledger import ensure_accounts, invariant_violations, post, user_balance, user_history

D = Decimal
IntegrityError = asyncpg.IntegrityConstraintViolationError


async def _deposit(pool, user_id: str, amount: str, payment_id: str, description: str = "deposit"):
    async with transaction(pool) as conn:
        return await post(
            conn,
            deposit_posting(payment_id=payment_id, user_id=user_id, amount_usd=D(amount), description=description),
        )


async def _snapshot(conn) -> dict:
    """Everything an attack on the ledger could change."""
    return {
        "transactions": [tuple(r) for r in await conn.fetch("SELECT * FROM ledger_transactions ORDER BY id")],
        "entries": [tuple(r) for r in await conn.fetch("SELECT * FROM ledger_entries ORDER BY id")],
        "accounts": [tuple(r) for r in await conn.fetch("SELECT * FROM ledger_accounts ORDER BY id")],
    }


async def _account_id(conn, ref: AccountRef) -> int:
    return (await ensure_accounts(conn, [ref]))[ref]


# --- posting and reading -----------------------------------------------------------------------------


async def test_deposit_moves_balance_and_history(pool):
    r1 = await _deposit(pool, "alice", "10.00", "PAY_1", "first")
    r2 = await _deposit(pool, "alice", "2.50", "PAY_2", "second")
    r3 = await _deposit(pool, "alice", "0.01", "PAY_3", "third")
    await _deposit(pool, "bob", "99.00", "PAY_B")
    assert r1.created and r2.created and r3.created
    assert len({r1.transaction_id, r2.transaction_id, r3.transaction_id}) == 3

    async with pool.acquire() as conn:
        view = await user_balance(conn, "alice")
        assert view.balance_usd == D("12.51")
        assert view.held_usd == D("0")
        assert view.total_deposited == D("12.51")
        assert view.total_withdrawn == D("0")
        assert view.last_transaction_at is not None

        history = await user_history(conn, "alice")
        assert [h.amount_usd for h in history] == [D("0.01"), D("2.50"), D("10.00")]  # newest first
        assert [h.balance_after for h in history] == [D("12.51"), D("12.50"), D("10.00")]
        assert [h.description for h in history] == ["third", "second", "first"]
        assert [h.reference for h in history] == ["deposit:PAY_3", "deposit:PAY_2", "deposit:PAY_1"]
        assert {h.type for h in history} == {"deposit"}
        assert [h.entry_id for h in history] == sorted((h.entry_id for h in history), reverse=True)

        # pagination
        page1 = await user_history(conn, "alice", limit=2)
        assert [h.entry_id for h in page1] == [h.entry_id for h in history[:2]]
        page2 = await user_history(conn, "alice", limit=2, before_entry_id=page1[-1].entry_id)
        assert [h.entry_id for h in page2] == [history[2].entry_id]
        page3 = await user_history(conn, "alice", limit=2, before_entry_id=page2[-1].entry_id)
        assert page3 == []

        # the other user is untouched by alice's postings and vice versa
        bob = await user_balance(conn, "bob")
        assert bob.balance_usd == D("99.00")
        assert [h.balance_after for h in await user_history(conn, "bob")] == [D("99.00")]

        # the platform side carries no running balance (no hot row), but its entries mirror the users'
        clearing = await conn.fetchrow(
            "SELECT a.balance, (SELECT sum(amount) FROM ledger_entries e WHERE e.account_id = a.id) AS total"
            " FROM ledger_accounts a WHERE code = $1",
            GATEWAY_CLEARING.code,
        )
        assert clearing["balance"] is None
        assert clearing["total"] == D("-111.51")
        assert await invariant_violations(conn) == []


async def test_unknown_user_has_an_empty_view(pool):
    async with pool.acquire() as conn:
        view = await user_balance(conn, "nobody")
        assert (view.balance_usd, view.held_usd, view.total_deposited, view.total_withdrawn) == (0, 0, 0, 0)
        assert view.last_transaction_at is None
        assert await user_history(conn, "nobody") == []


async def test_same_idempotency_key_twice_writes_once(pool):
    first = await _deposit(pool, "carol", "20.00", "PAY_C")
    async with pool.acquire() as conn:
        before = await _snapshot(conn)
    again = await _deposit(pool, "carol", "20.00", "PAY_C")
    # a replay with different content is still the same cause: nothing more is written
    different = await _deposit(pool, "carol", "999.00", "PAY_C")
    assert first.created is True
    assert again.created is False and different.created is False
    assert again.transaction_id == first.transaction_id == different.transaction_id
    async with pool.acquire() as conn:
        assert await _snapshot(conn) == before
        assert (await user_balance(conn, "carol")).balance_usd == D("20.00")


async def test_same_idempotency_key_twice_in_one_transaction_writes_once(pool):
    posting = deposit_posting(payment_id="PAY_D", user_id="dan", amount_usd=D("3.00"), description="")
    async with transaction(pool) as conn:
        first = await post(conn, posting)
        second = await post(conn, posting)
    assert first.created and not second.created
    assert first.transaction_id == second.transaction_id
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2
        assert (await user_balance(conn, "dan")).balance_usd == D("3.00")


async def test_invariant_violations_empty_after_valid_postings(pool):
    for i, (user, amount) in enumerate([("u1", "50.00"), ("u2", "7.25"), ("u1", "0.75")]):
        await _deposit(pool, user, amount, f"PAY_{i}")
    # a withdrawal in two phases: hold the funds, then pay them out with a fee
    async with transaction(pool) as conn:
        await post(
            conn,
            LedgerPosting(
                "withdrawal:WD_1:hold",
                TransactionType.WITHDRAWAL,
                "hold",
                (Entry(AccountRef.available("u1"), D("-30.00")), Entry(AccountRef.held("u1"), D("30.00"))),
            ),
        )
        await post(
            conn,
            LedgerPosting(
                "withdrawal:WD_1:complete",
                TransactionType.WITHDRAWAL,
                "sent",
                (Entry(AccountRef.held("u1"), D("-30.00")), Entry(PAYOUTS, D("28.50")), Entry(FEES, D("1.50"))),
            ),
        )
    async with pool.acquire() as conn:
        assert await invariant_violations(conn) == []
        view = await user_balance(conn, "u1")
        assert view.balance_usd == D("20.75")
        assert view.held_usd == D("0.00")
        assert view.total_deposited == D("50.75")
        assert await conn.fetchval("SELECT sum(amount) FROM ledger_entries") == 0
        held_after = await conn.fetch(
            "SELECT e.balance_after FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id"
            " WHERE a.code = $1 ORDER BY e.id",
            AccountRef.held("u1").code,
        )
        assert [r["balance_after"] for r in held_after] == [D("30.00"), D("0.00")]


# --- what Postgres refuses ---------------------------------------------------------------------------


async def _accounts_with_money(pool) -> tuple[int, int]:
    """A user with 5.00 available; returns (user account id, gateway clearing account id)."""
    await _deposit(pool, "eve", "5.00", "PAY_E")
    async with pool.acquire() as conn:
        return await _account_id(conn, AccountRef.available("eve")), await _account_id(conn, GATEWAY_CLEARING)


@pytest.mark.parametrize(
    "amounts",
    [
        pytest.param([], id="no-entries"),
        pytest.param([("user", "1.00")], id="one-entry"),
        pytest.param([("user", "10.00"), ("clearing", "-9.99")], id="two-entries-not-summing-to-zero"),
        pytest.param([("user", "1.00"), ("user", "1.00"), ("clearing", "-1.00")], id="three-entries"),
    ],
)
async def test_unbalanced_transaction_is_refused_at_commit(pool, amounts):
    user_acc, clearing_acc = await _accounts_with_money(pool)
    accounts = {"user": user_acc, "clearing": clearing_acc}
    async with pool.acquire() as conn:
        before = await _snapshot(conn)
        reached_commit = False
        with pytest.raises(IntegrityError, match="does not balance"):
            async with conn.transaction():
                tx_id = await conn.fetchval(
                    "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ('forged', 'adjustment')"
                    " RETURNING id"
                )
                for account, amount in amounts:
                    await conn.execute(
                        "INSERT INTO ledger_entries (transaction_id, account_id, amount) VALUES ($1, $2, $3)",
                        tx_id,
                        accounts[account],
                        D(amount),
                    )
                reached_commit = True  # every statement passed; only the deferred check can refuse
        assert reached_commit
        assert await _snapshot(conn) == before
        assert (await user_balance(conn, "eve")).balance_usd == D("5.00")
        assert await invariant_violations(conn) == []


async def test_balanced_direct_insert_is_accepted(pool):
    """The control for the test above: the same SQL, balanced, commits and moves the balance."""
    user_acc, clearing_acc = await _accounts_with_money(pool)
    async with pool.acquire() as conn, conn.transaction():
        tx_id = await conn.fetchval(
            "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ('bonus:1', 'bonus') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount) VALUES ($1, $2, 1.00), ($1, $3, -1.00)",
            tx_id,
            user_acc,
            clearing_acc,
        )
    async with pool.acquire() as conn:
        assert (await user_balance(conn, "eve")).balance_usd == D("6.00")
        assert await invariant_violations(conn) == []


async def test_overdraft_by_direct_sql_is_refused_by_check(pool):
    user_acc, clearing_acc = await _accounts_with_money(pool)
    async with pool.acquire() as conn:
        before = await _snapshot(conn)
        with pytest.raises(asyncpg.CheckViolationError, match="balance_not_negative"):
            async with conn.transaction():
                tx_id = await conn.fetchval(
                    "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ('steal', 'withdrawal')"
                    " RETURNING id"
                )
                await conn.execute(
                    "INSERT INTO ledger_entries (transaction_id, account_id, amount)"
                    " VALUES ($1, $2, 5.01), ($1, $3, -5.01)",
                    tx_id,
                    clearing_acc,
                    user_acc,
                )
        assert await _snapshot(conn) == before


async def test_overdraft_by_posting_is_refused_and_exactly_the_balance_is_allowed(pool):
    await _accounts_with_money(pool)

    def withdrawal(key: str, amount: str) -> LedgerPosting:
        return LedgerPosting(
            key,
            TransactionType.WITHDRAWAL,
            "",
            (Entry(AccountRef.available("eve"), -D(amount)), Entry(PAYOUTS, D(amount))),
        )

    async with pool.acquire() as conn:
        before = await _snapshot(conn)
    with pytest.raises(asyncpg.CheckViolationError):
        async with transaction(pool) as conn:
            await post(conn, withdrawal("withdrawal:too-much", "5.01"))
    async with pool.acquire() as conn:
        assert await _snapshot(conn) == before
    async with transaction(pool) as conn:
        assert (await post(conn, withdrawal("withdrawal:all", "5.00"))).created
    async with pool.acquire() as conn:
        assert (await user_balance(conn, "eve")).balance_usd == D("0.00")
        assert await invariant_violations(conn) == []


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE ledger_entries SET amount = 1000", id="update-entry-amount"),
        pytest.param("UPDATE ledger_entries SET balance_after = 1000", id="update-entry-balance-after"),
        pytest.param("DELETE FROM ledger_entries", id="delete-entries"),
        pytest.param("UPDATE ledger_transactions SET idempotency_key = 'x'", id="update-transaction-key"),
        pytest.param("UPDATE ledger_transactions SET description = 'x'", id="update-transaction-description"),
        pytest.param("DELETE FROM ledger_transactions", id="delete-transactions"),
        pytest.param("TRUNCATE ledger_entries", id="truncate-entries"),
        pytest.param("TRUNCATE ledger_transactions CASCADE", id="truncate-transactions-cascade"),
        pytest.param("TRUNCATE ledger_accounts CASCADE", id="truncate-accounts-cascade"),
        pytest.param("UPDATE ledger_accounts SET balance = 1000000 WHERE kind = 'user_available'", id="set-balance"),
        pytest.param("UPDATE ledger_accounts SET balance = balance + 1 WHERE tracks_balance", id="bump-balance"),
        pytest.param("UPDATE ledger_accounts SET code = code || ':x'", id="rename-account"),
        pytest.param("UPDATE ledger_accounts SET kind = 'fees' WHERE kind = 'user_available'", id="change-kind"),
        pytest.param("UPDATE ledger_accounts SET user_id = 'mallory' WHERE user_id = 'eve'", id="change-owner"),
        pytest.param("UPDATE ledger_accounts SET tracks_balance = false, balance = NULL", id="untrack-balance"),
        pytest.param("DELETE FROM ledger_accounts", id="delete-accounts"),
    ],
)
async def test_direct_changes_to_the_ledger_are_refused(pool, sql):
    await _accounts_with_money(pool)
    async with pool.acquire() as conn:
        before = await _snapshot(conn)
        assert before["entries"]  # there is something to tamper with
        with pytest.raises(IntegrityError):
            await conn.execute(sql)
        assert await _snapshot(conn) == before
        assert (await user_balance(conn, "eve")).balance_usd == D("5.00")


async def test_refusal_messages_name_the_rule(pool):
    user_acc, _ = await _accounts_with_money(pool)
    async with pool.acquire() as conn:
        with pytest.raises(IntegrityError, match="append-only: UPDATE refused"):
            await conn.execute("UPDATE ledger_entries SET amount = 1")
        with pytest.raises(IntegrityError, match="append-only: DELETE refused"):
            await conn.execute("DELETE FROM ledger_transactions")
        with pytest.raises(IntegrityError, match="append-only: TRUNCATE refused"):
            await conn.execute("TRUNCATE ledger_entries")
        with pytest.raises(IntegrityError, match="changes only through ledger entries"):
            await conn.execute("UPDATE ledger_accounts SET balance = 100 WHERE id = $1", user_acc)
        with pytest.raises(IntegrityError, match="cannot be redefined"):
            await conn.execute("UPDATE ledger_accounts SET kind = 'user_held' WHERE id = $1", user_acc)
        with pytest.raises(IntegrityError, match="cannot be deleted"):
            await conn.execute("DELETE FROM ledger_accounts WHERE id = $1", user_acc)


async def test_new_account_starts_empty_whatever_is_inserted(pool):
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO ledger_accounts (code, kind, user_id, tracks_balance, balance, last_entry_at)"
            " VALUES ('user:rich:available', 'user_available', 'rich', true, 1000000, now())"
        )
        await conn.execute(
            "INSERT INTO ledger_accounts (code, kind, tracks_balance, balance)"
            " VALUES ('platform:fees', 'fees', false, 500)"
        )
        row = await conn.fetchrow(
            "SELECT balance, last_entry_at FROM ledger_accounts WHERE code = 'user:rich:available'"
        )
        assert row["balance"] == D("0")
        assert row["last_entry_at"] is None
        assert await conn.fetchval("SELECT balance FROM ledger_accounts WHERE code = 'platform:fees'") is None
        assert (await user_balance(conn, "rich")).balance_usd == D("0")
        assert await invariant_violations(conn) == []


async def test_balance_after_cannot_be_forged_on_insert(pool):
    user_acc, clearing_acc = await _accounts_with_money(pool)
    async with pool.acquire() as conn, conn.transaction():
        tx_id = await conn.fetchval(
            "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ('bonus:2', 'bonus') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after)"
            " VALUES ($1, $2, 1.00, 1000000), ($1, $3, -1.00, 1000000)",
            tx_id,
            user_acc,
            clearing_acc,
        )
    async with pool.acquire() as conn:
        history = await user_history(conn, "eve")
        assert history[0].balance_after == D("6.00")
        clearing_after = await conn.fetchval(
            "SELECT balance_after FROM ledger_entries WHERE transaction_id = $1 AND account_id = $2",
            tx_id,
            clearing_acc,
        )
        assert clearing_after is None  # untracked platform accounts record no running balance


async def test_a_user_account_cannot_be_opened_without_a_tracked_balance(pool):
    async with pool.acquire() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                "INSERT INTO ledger_accounts (code, kind, user_id, tracks_balance)"
                " VALUES ('user:mallory:available', 'user_available', 'mallory', false)"
            )


# --- concurrency -------------------------------------------------------------------------------------


async def test_concurrent_deposits_for_one_user_all_land(pool):
    amounts = [D(f"{1 + i}.{i % 100:02d}") for i in range(50)]

    async def worker(task: int) -> list[bool]:
        created = []
        for j in range(5):
            n = task * 5 + j
            result = await _deposit(pool, "zoe", str(amounts[n]), f"PAY_Z{n:03d}")
            created.append(result.created)
        return created

    results = await asyncio.gather(*(worker(t) for t in range(10)))
    assert all(all(r) for r in results)

    async with pool.acquire() as conn:
        view = await user_balance(conn, "zoe")
        assert view.balance_usd == sum(amounts)
        assert view.total_deposited == sum(amounts)
        assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 50
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 100
        assert await conn.fetchval("SELECT sum(amount) FROM ledger_entries") == 0
        assert await invariant_violations(conn) == []
        # each balance_after is a distinct running total; in the order the row lock was taken they step by
        # exactly the deposited amounts
        history = await user_history(conn, "zoe", limit=100)
        afters = sorted(h.balance_after for h in history)
        assert afters[-1] == sum(amounts)
        steps = [b - a for a, b in zip([D(0), *afters], afters, strict=False)]
        assert sorted(steps) == sorted(amounts)


async def test_concurrent_replays_of_one_key_write_once(pool):
    results = await asyncio.gather(*(_deposit(pool, "yan", "4.00", "PAY_SAME") for _ in range(10)))
    assert sum(r.created for r in results) == 1
    assert len({r.transaction_id for r in results}) == 1
    async with pool.acquire() as conn:
        assert (await user_balance(conn, "yan")).balance_usd == D("4.00")
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2


async def _wait_until_blocked_on_lock(pool, pid: int) -> None:
    async with pool.acquire() as observer:
        for _ in range(500):
            if await observer.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the second posting never waited for the row lock")


async def test_history_chains_when_postings_interleave(pool):
    """A posting that has to wait for another open transaction on the same user still lands after it in history.

    (The wait happens in ensure_accounts' INSERT ... ON CONFLICT, before the waiting posting draws entry ids, so
    history order, which is entry-id order, matches the order balance_after was computed in.)
    """
    await _deposit(pool, "ivy", "10.00", "PAY_I0")
    async with pool.acquire() as holder, pool.acquire() as other:
        tx_hold = holder.transaction()
        await tx_hold.start()
        await post(holder, deposit_posting(payment_id="PAY_I1", user_id="ivy", amount_usd=D("1.00"), description=""))

        async def blocked_posting():
            async with other.transaction():
                await post(
                    other, deposit_posting(payment_id="PAY_I2", user_id="ivy", amount_usd=D("2.00"), description="")
                )

        task = asyncio.create_task(blocked_posting())
        await _wait_until_blocked_on_lock(pool, other.get_server_pid())
        # the first transaction goes on posting (as a batch of settlements in one commit would)
        await post(holder, deposit_posting(payment_id="PAY_I3", user_id="ivy", amount_usd=D("4.00"), description=""))
        await tx_hold.commit()
        await asyncio.wait_for(task, 10)

    async with pool.acquire() as conn:
        assert await invariant_violations(conn) == []
        view = await user_balance(conn, "ivy")
        assert view.balance_usd == D("17.00")  # the balance itself is right
        history = await user_history(conn, "ivy")
        assert len(history) == 4
        assert history[0].balance_after == view.balance_usd
        for newer, older in itertools.pairwise(history):
            assert newer.balance_after - newer.amount_usd == older.balance_after
