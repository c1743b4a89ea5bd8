"""Read-only checks that the ledger and the records it pays for agree (`payments reconcile`).

The database refuses writes that would break these rules while its triggers are in place; these
queries look for the damage anyway (a restore, a hand edit by the table owner, a bug in a migration).
Each check selects one row per difference as ``subject`` (what is wrong) and ``detail`` (how).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

# Payment and withdrawal ids never contain ':', so the second part of a posting key is the record's id.
_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "unbalanced_transaction",
        """
        SELECT t.idempotency_key AS subject,
               format('%s entries summing to %s', count(e.id), coalesce(sum(e.amount), 0)) AS detail
          FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
         GROUP BY t.id HAVING count(e.id) < 2 OR coalesce(sum(e.amount), 0) <> 0
         ORDER BY t.id
        """,
    ),
    (
        "balance_differs_from_entries",
        """
        SELECT a.code AS subject,
               format('balance %s, entries sum to %s', a.balance, coalesce(sum(e.amount), 0)) AS detail
          FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
         WHERE a.tracks_balance
         GROUP BY a.id HAVING a.balance IS DISTINCT FROM coalesce(sum(e.amount), 0)
         ORDER BY a.id
        """,
    ),
    (
        "ledger_does_not_sum_to_zero",
        "SELECT 'all entries' AS subject, format('sum to %s', sum(amount)) AS detail FROM ledger_entries"
        " HAVING sum(amount) <> 0",
    ),
    (
        "negative_balance",
        "SELECT code AS subject, format('balance %s', balance) AS detail FROM ledger_accounts"
        " WHERE balance < 0 ORDER BY id",
    ),
    (
        "settled_payment_without_deposit_posting",
        """
        SELECT p.id AS subject,
               format('%s, credited %s, no ledger transaction deposit:%s', p.status, p.credit_usd, p.id) AS detail
          FROM payments p
         WHERE p.settled_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = 'deposit:' || p.id)
         ORDER BY p.id
        """,
    ),
    (
        "deposit_posting_without_settled_payment",
        """
        SELECT t.idempotency_key AS subject,
               CASE WHEN p.id IS NULL THEN 'no such payment'
                    WHEN t.type <> 'deposit' THEN format('posted as %s, not deposit', t.type)
                    ELSE format('payment %s is %s and not settled', p.id, p.status) END AS detail
          FROM ledger_transactions t LEFT JOIN payments p ON p.id = split_part(t.idempotency_key, ':', 2)
         WHERE (t.idempotency_key LIKE 'deposit:%' OR t.type = 'deposit')
           AND (p.id IS NULL OR p.settled_at IS NULL OR t.type <> 'deposit'
                OR t.idempotency_key NOT LIKE 'deposit:%')
         ORDER BY t.id
        """,
    ),
    (
        "deposit_credit_differs",
        """
        SELECT p.id AS subject,
               format('payment says %s credited, its deposit postings credit %s',
                      p.credit_usd, coalesce(sum(e.amount), 0)) AS detail
          FROM payments p
          JOIN ledger_transactions t ON t.idempotency_key = 'deposit:' || p.id
                                     OR t.idempotency_key LIKE 'deposit:' || p.id || ':to:%'
          LEFT JOIN ledger_entries e ON e.transaction_id = t.id
               AND e.account_id = (SELECT a.id FROM ledger_accounts a
                                    WHERE a.kind = 'user_available' AND a.user_id = p.user_id)
         WHERE p.settled_at IS NOT NULL
         GROUP BY p.id HAVING coalesce(sum(e.amount), 0) IS DISTINCT FROM p.credit_usd
         ORDER BY p.id
        """,
    ),
    (
        "withdrawal_hold_differs",
        """
        SELECT w.id AS subject,
               format('%s of %s requested, its hold posting holds %s',
                      w.status, w.amount_usd, coalesce(sum(e.amount), 0)) AS detail
          FROM withdrawals w
          LEFT JOIN ledger_transactions t ON t.idempotency_key = 'withdrawal:' || w.id || ':hold'
          LEFT JOIN ledger_entries e ON e.transaction_id = t.id
               AND e.account_id = (SELECT a.id FROM ledger_accounts a
                                    WHERE a.kind = 'user_held' AND a.user_id = w.user_id)
         GROUP BY w.id HAVING coalesce(sum(e.amount), 0) <> w.amount_usd
         ORDER BY w.id
        """,
    ),
    (
        "withdrawal_settlement_differs",
        """
        SELECT w.id AS subject,
               CASE WHEN t.id IS NULL THEN format('%s but its hold was never posted or released', w.status)
                    WHEN w.status IN ('pending', 'approved', 'processing')
                        THEN format('still %s but its hold was settled (%s)', w.status, t.type)
                    ELSE format('%s but its hold was settled as %s', w.status, t.type) END AS detail
          FROM withdrawals w
          LEFT JOIN ledger_transactions t ON t.idempotency_key = 'withdrawal:' || w.id || ':settle'
         WHERE CASE w.status WHEN 'completed' THEN t.type IS DISTINCT FROM 'withdrawal'
                             WHEN 'rejected' THEN t.type IS DISTINCT FROM 'refund'
                             WHEN 'cancelled' THEN t.type IS DISTINCT FROM 'refund'
                             WHEN 'failed' THEN t.type IS DISTINCT FROM 'refund'
                             ELSE t.id IS NOT NULL END
         ORDER BY w.id
        """,
    ),
    (
        "withdrawal_settlement_amount_differs",
        """
        SELECT w.id AS subject,
               format('%s of %s, its settlement takes %s from held',
                      w.status, w.amount_usd, -coalesce(sum(e.amount), 0)) AS detail
          FROM withdrawals w
          JOIN ledger_transactions t ON t.idempotency_key = 'withdrawal:' || w.id || ':settle'
          LEFT JOIN ledger_entries e ON e.transaction_id = t.id
               AND e.account_id = (SELECT a.id FROM ledger_accounts a
                                    WHERE a.kind = 'user_held' AND a.user_id = w.user_id)
         GROUP BY w.id HAVING -coalesce(sum(e.amount), 0) <> w.amount_usd
         ORDER BY w.id
        """,
    ),
    (
        "withdrawal_posting_without_withdrawal",
        """
        SELECT t.idempotency_key AS subject, 'no such withdrawal' AS detail
          FROM ledger_transactions t LEFT JOIN withdrawals w ON w.id = split_part(t.idempotency_key, ':', 2)
         WHERE t.idempotency_key LIKE 'withdrawal:%' AND w.id IS NULL
         ORDER BY t.id
        """,
    ),
)

CHECK_NAMES = tuple(name for name, _ in _CHECKS)
# The rules the schema itself enforces on the ledger, without looking at payments or withdrawals.
LEDGER_CHECKS = (
    "unbalanced_transaction",
    "balance_differs_from_entries",
    "ledger_does_not_sum_to_zero",
    "negative_balance",
)


@dataclass(frozen=True)
class Difference:
    check: str
    subject: str
    detail: str


async def find_differences(conn: asyncpg.Connection, checks: tuple[str, ...] = CHECK_NAMES) -> list[Difference]:
    """Every difference the named checks find, read in one snapshot (REPEATABLE READ, read only).

    Inside a transaction the caller already holds, the checks read that transaction's view instead.
    """
    if conn.is_in_transaction():
        return await _run_checks(conn, checks)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _run_checks(conn, checks)


async def _run_checks(conn: asyncpg.Connection, checks: tuple[str, ...]) -> list[Difference]:
    differences: list[Difference] = []
    for name, sql in _CHECKS:
        if name in checks:
            differences.extend(Difference(name, row["subject"], row["detail"]) for row in await conn.fetch(sql))
    return differences
