"""Prometheus text exposition of what an operator watches, read straight from the database."""

from __future__ import annotations

import asyncpg

_QUERIES = {
    "payments_by_status": "SELECT status, count(*) AS n FROM payments GROUP BY status",
    "due": "SELECT count(*) FROM payments WHERE next_poll_at IS NOT NULL AND next_poll_at <= now()",
    "held": "SELECT count(*) FROM payments WHERE hold_reason IS NOT NULL",
    "unsettled": "SELECT count(*) FROM payments WHERE credit_usd > 0 AND settled_at IS NULL AND hold_reason IS NULL",
    "ledger_transactions": "SELECT count(*) FROM ledger_transactions",
    "stuck_creation": "SELECT count(*) FROM payments WHERE provider_payment_id IS NULL AND status = 'pending'"
    " AND created_at < now() - interval '5 minutes'",
    "withdrawals_by_status": "SELECT status, count(*) AS n FROM withdrawals GROUP BY status",
    "withdrawals_review": "SELECT count(*) FROM withdrawals WHERE review_reason IS NOT NULL",
}


async def render_metrics(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        by_status = await conn.fetch(_QUERIES["payments_by_status"])
        due = await conn.fetchval(_QUERIES["due"])
        held = await conn.fetchval(_QUERIES["held"])
        unsettled = await conn.fetchval(_QUERIES["unsettled"])
        postings = await conn.fetchval(_QUERIES["ledger_transactions"])
        stuck = await conn.fetchval(_QUERIES["stuck_creation"])
        withdrawals_by_status = await conn.fetch(_QUERIES["withdrawals_by_status"])
        withdrawals_review = await conn.fetchval(_QUERIES["withdrawals_review"])
    lines = [
        "# HELP payments_total Deposit payments by status.",
        "# TYPE payments_total gauge",
        *(f'payments_total{{status="{row["status"]}"}} {row["n"]}' for row in by_status),
        "# HELP payments_due Payments whose next poll or settlement is due now.",
        "# TYPE payments_due gauge",
        f"payments_due {due}",
        "# HELP payments_held_for_review Payments an operator must look at before anything is credited.",
        "# TYPE payments_held_for_review gauge",
        f"payments_held_for_review {held}",
        "# HELP payments_awaiting_settlement Creditable payments not yet credited.",
        "# TYPE payments_awaiting_settlement gauge",
        f"payments_awaiting_settlement {unsettled}",
        "# HELP ledger_transactions_total Ledger transactions written.",
        "# TYPE ledger_transactions_total counter",
        f"ledger_transactions_total {postings}",
        "# HELP payments_creation_stuck Pending payments with no gateway payment after 5 minutes.",
        "# TYPE payments_creation_stuck gauge",
        f"payments_creation_stuck {stuck}",
        "# HELP withdrawals_total Withdrawals by status.",
        "# TYPE withdrawals_total gauge",
        *(f'withdrawals_total{{status="{row["status"]}"}} {row["n"]}' for row in withdrawals_by_status),
        "# HELP withdrawals_held_for_review Withdrawals an operator must decide (payout outcome unknown).",
        "# TYPE withdrawals_held_for_review gauge",
        f"withdrawals_held_for_review {withdrawals_review}",
    ]
    return "\n".join(lines) + "\n"
