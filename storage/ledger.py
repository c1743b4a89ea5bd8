"""SQL for the double-entry ledger: accounts, postings, balances and history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from domain.ledger import AccountRef, LedgerPosting
from storage.reconcile import LEDGER_CHECKS, find_differences


async def ensure_accounts(conn: asyncpg.Connection, refs: list[AccountRef]) -> dict[AccountRef, int]:
    """Ids of the given accounts, opening any that do not exist yet."""
    unique = sorted(set(refs))
    codes = [ref.code for ref in unique]
    await conn.execute(
        """
        INSERT INTO ledger_accounts (code, kind, user_id, tracks_balance)
        SELECT code, kind, user_id, kind LIKE 'user_%'
          FROM unnest($1::text[], $2::text[], $3::text[]) AS a (code, kind, user_id)
        ON CONFLICT (code) DO NOTHING
        """,
        codes,
        [ref.kind.value for ref in unique],
        [ref.user_id for ref in unique],
    )
    rows = await conn.fetch("SELECT id, code FROM ledger_accounts WHERE code = ANY($1::text[])", codes)
    by_code = {row["code"]: row["id"] for row in rows}
    return {ref: by_code[ref.code] for ref in unique}


@dataclass(frozen=True)
class PostingResult:
    transaction_id: int
    created: bool  # False when the idempotency key had already been posted: nothing was written


async def post(conn: asyncpg.Connection, posting: LedgerPosting) -> PostingResult:
    """Write one balanced ledger transaction, or find the one already written for its key.

    Must run inside a transaction. Entries are inserted in account-id order, so concurrent
    postings lock balance rows in one global order and cannot deadlock each other.
    """
    tx_id = await conn.fetchval(
        """
        INSERT INTO ledger_transactions (idempotency_key, type, description)
        VALUES ($1, $2, $3)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
        """,
        posting.idempotency_key,
        posting.type.value,
        posting.description,
    )
    if tx_id is None:
        existing = await conn.fetchval(
            "SELECT id FROM ledger_transactions WHERE idempotency_key = $1", posting.idempotency_key
        )
        return PostingResult(existing, created=False)
    ids = await ensure_accounts(conn, [entry.account for entry in posting.entries])
    ordered = sorted(posting.entries, key=lambda entry: ids[entry.account])
    # Lock the balance rows first, in id order, so entry ids are drawn in the order balances move:
    # a user's history sorted by entry id then always chains through balance_after.
    await conn.execute(
        "SELECT 1 FROM ledger_accounts WHERE id = ANY($1::bigint[]) AND tracks_balance ORDER BY id FOR UPDATE",
        sorted(set(ids.values())),
    )
    await conn.execute(
        """
        INSERT INTO ledger_entries (transaction_id, account_id, amount)
        SELECT $1, account_id, amount
          FROM unnest($2::bigint[], $3::numeric[]) WITH ORDINALITY AS e (account_id, amount, n)
         ORDER BY n
        """,
        tx_id,
        [ids[entry.account] for entry in ordered],
        [entry.amount for entry in ordered],
    )
    return PostingResult(tx_id, created=True)


async def account_ids(conn: asyncpg.Connection, refs: list[AccountRef]) -> dict[AccountRef, int]:
    """Like ``ensure_accounts``, but reads first and inserts only the accounts that are missing."""
    unique = sorted(set(refs))
    codes = [ref.code for ref in unique]
    rows = await conn.fetch("SELECT id, code FROM ledger_accounts WHERE code = ANY($1::text[])", codes)
    by_code = {row["code"]: row["id"] for row in rows}
    found = {ref: by_code[ref.code] for ref in unique if ref.code in by_code}
    missing = [ref for ref in unique if ref not in found]
    return {**found, **await ensure_accounts(conn, missing)} if missing else found


async def post_many(conn: asyncpg.Connection, postings: list[LedgerPosting]) -> dict[str, PostingResult]:
    """Write many balanced ledger transactions with one statement per table; results by idempotency key.

    The set-based form of ``post`` (group commit): keys already posted write nothing. Must run inside a
    transaction, which then holds the balance rows of every account touched until it commits; they are
    locked in id order, like ``post`` does, so concurrent batches and single postings cannot deadlock.
    """
    results = await open_transactions(conn, postings)
    await add_entries(conn, postings, results)
    return results


async def open_transactions(conn: asyncpg.Connection, postings: list[LedgerPosting]) -> dict[str, PostingResult]:
    """First half of ``post_many``: the ledger transactions, without entries yet (they must follow before
    commit, through ``add_entries``, or the commit is refused). Splitting lets a caller write its own rows
    in between, before ``add_entries`` locks the balance rows it holds until commit."""
    if not postings:
        return {}
    by_key = {posting.idempotency_key: posting for posting in postings}
    if len(by_key) != len(postings):
        raise ValueError("a batch of postings must not repeat an idempotency key")
    keys = sorted(by_key)  # one insertion order for every writer
    rows = await conn.fetch(
        """
        INSERT INTO ledger_transactions (idempotency_key, type, description)
        SELECT key, type, description FROM unnest($1::text[], $2::text[], $3::text[]) AS t (key, type, description)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id, idempotency_key
        """,
        keys,
        [by_key[key].type.value for key in keys],
        [by_key[key].description for key in keys],
    )
    results = {row["idempotency_key"]: PostingResult(row["id"], created=True) for row in rows}
    existing = [key for key in keys if key not in results]
    if existing:
        found = await conn.fetch(
            "SELECT id, idempotency_key FROM ledger_transactions WHERE idempotency_key = ANY($1::text[])", existing
        )
        results.update({row["idempotency_key"]: PostingResult(row["id"], created=False) for row in found})
    return results


async def add_entries(
    conn: asyncpg.Connection, postings: list[LedgerPosting], results: dict[str, PostingResult]
) -> None:
    """Second half of ``post_many``: the entries of the postings ``open_transactions`` created."""
    created = sorted(
        (posting for posting in postings if results[posting.idempotency_key].created),
        key=lambda posting: posting.idempotency_key,
    )
    if created:
        await _insert_entries(conn, created, results)


async def _insert_entries(
    conn: asyncpg.Connection, postings: list[LedgerPosting], results: dict[str, PostingResult]
) -> None:
    ids = await account_ids(conn, [entry.account for posting in postings for entry in posting.entries])
    await conn.execute(
        "SELECT 1 FROM ledger_accounts WHERE id = ANY($1::bigint[]) AND tracks_balance ORDER BY id FOR UPDATE",
        sorted(set(ids.values())),
    )
    tx_ids: list[int] = []
    accounts: list[int] = []
    amounts: list[Decimal] = []
    for posting in postings:
        for entry in sorted(posting.entries, key=lambda entry: ids[entry.account]):
            tx_ids.append(results[posting.idempotency_key].transaction_id)
            accounts.append(ids[entry.account])
            amounts.append(entry.amount)
    # In ordinality order: entry ids are drawn in the order balances move, so history chains by entry id.
    await conn.execute(
        """
        INSERT INTO ledger_entries (transaction_id, account_id, amount)
        SELECT transaction_id, account_id, amount
          FROM unnest($1::bigint[], $2::bigint[], $3::numeric[])
               WITH ORDINALITY AS e (transaction_id, account_id, amount, n)
         ORDER BY n
        """,
        tx_ids,
        accounts,
        amounts,
    )


@dataclass(frozen=True)
class BalanceView:
    user_id: str
    balance_usd: Decimal
    held_usd: Decimal
    total_deposited: Decimal
    total_withdrawn: Decimal
    last_transaction_at: datetime | None


async def user_balance(conn: asyncpg.Connection, user_id: str) -> BalanceView:
    """The seed's read model: available and held balances, totals and last activity."""
    row = await conn.fetchrow(
        """
        SELECT
          coalesce(max(a.balance) FILTER (WHERE a.kind = 'user_available'), 0) AS available,
          coalesce(max(a.balance) FILTER (WHERE a.kind = 'user_held'), 0) AS held,
          max(a.last_entry_at) AS last_at,
          (SELECT coalesce(sum(e.amount), 0)
             FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
            WHERE e.account_id = (SELECT id FROM ledger_accounts WHERE code = $2) AND t.type = 'deposit'
          ) AS deposited,
          -- completed withdrawals are the ones whose hold left the held account as a withdrawal
          (SELECT coalesce(-sum(e.amount), 0)
             FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
            WHERE e.account_id = (SELECT id FROM ledger_accounts WHERE code = $3)
              AND t.type = 'withdrawal' AND e.amount < 0
          ) AS withdrawn
        FROM ledger_accounts a
        WHERE a.user_id = $1
        """,
        user_id,
        AccountRef.available(user_id).code,
        AccountRef.held(user_id).code,
    )
    return BalanceView(
        user_id=user_id,
        balance_usd=row["available"],
        held_usd=row["held"],
        total_deposited=row["deposited"],
        total_withdrawn=row["withdrawn"],
        last_transaction_at=row["last_at"],
    )


@dataclass(frozen=True)
class HistoryItem:
    entry_id: int
    type: str
    amount_usd: Decimal  # signed
    balance_after: Decimal
    description: str
    reference: str
    created_at: datetime


async def user_history(
    conn: asyncpg.Connection, user_id: str, *, limit: int = 20, before_entry_id: int | None = None
) -> list[HistoryItem]:
    """Entries of the user's available balance, newest first; page on with ``before_entry_id``."""
    rows = await conn.fetch(
        """
        SELECT e.id, t.type, e.amount, e.balance_after, t.description, t.idempotency_key, e.created_at
          FROM ledger_entries e
          JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE e.account_id = (SELECT id FROM ledger_accounts WHERE code = $1)
           AND ($2::bigint IS NULL OR e.id < $2)
         ORDER BY e.id DESC
         LIMIT $3
        """,
        AccountRef.available(user_id).code,
        before_entry_id,
        limit,
    )
    return [
        HistoryItem(
            entry_id=row["id"],
            type=row["type"],
            amount_usd=row["amount"],
            balance_after=row["balance_after"],
            description=row["description"],
            reference=row["idempotency_key"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


async def invariant_violations(conn: asyncpg.Connection) -> list[str]:
    """Audit for tests: every rule the schema enforces on the ledger, checked from scratch, one line each.

    `payments reconcile` runs these and also matches postings against payments and withdrawals.
    """
    return [f"{d.check}: {d.subject}: {d.detail}" for d in await find_differences(conn, LEDGER_CHECKS)]
