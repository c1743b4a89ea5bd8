"""Moving a withdrawal between statuses, with its ledger consequence, in the caller's transaction.

The one place that enforces the withdrawal state machine and settles the hold exactly once:
completion posts it, rejection, cancellation and failure release it. Every move is recorded
with who made it and why.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from domain.errors import InvalidTransition
from domain.ledger import LedgerPosting, withdrawal_complete_posting, withdrawal_release_posting
from domain.updates import KEEP
from domain.withdrawals import TERMINAL, Withdrawal, WithdrawalStatus, WithdrawalUpdate, hold_outcome, transition
from services import announce
from storage import ledger, withdrawals

log = structlog.get_logger(__name__)

_RELEASE_WORDS = {
    WithdrawalStatus.REJECTED: "rejected",
    WithdrawalStatus.CANCELLED: "cancelled",
    WithdrawalStatus.FAILED: "failed",
}


async def _post_once(conn: asyncpg.Connection, posting: LedgerPosting, withdrawal: Withdrawal) -> None:
    """Completion and release share one ledger key: if either is already there, the hold is settled."""
    result = await ledger.post(conn, posting)
    if not result.created:
        raise InvalidTransition(f"the hold of withdrawal {withdrawal.id} has already been settled in the ledger")


async def move_withdrawal(
    conn: asyncpg.Connection,
    withdrawal: Withdrawal,
    target: WithdrawalStatus,
    *,
    actor: str,
    note: str = "",
    changes: WithdrawalUpdate | None = None,
    detail: dict[str, Any] | None = None,
) -> Withdrawal:
    """Apply ``withdrawal.status → target`` (raises InvalidTransition if not allowed).

    ``withdrawal`` must have been read ``FOR UPDATE`` in this transaction.
    """
    transition(withdrawal.status, target)
    update = replace(changes or WithdrawalUpdate(), status=target)
    outcome = hold_outcome(target)
    if outcome == "post":
        posting = withdrawal_complete_posting(
            withdrawal_id=withdrawal.id,
            user_id=withdrawal.user_id,
            amount_usd=withdrawal.amount_usd,
            final_amount_usd=withdrawal.final_amount_usd,
            total_fee_usd=withdrawal.total_fee_usd,
        )
        await _post_once(conn, posting, withdrawal)
        update = replace(update, completed_at=datetime.now(UTC))
    elif outcome == "release":
        posting = withdrawal_release_posting(
            withdrawal_id=withdrawal.id,
            user_id=withdrawal.user_id,
            amount_usd=withdrawal.amount_usd,
            why=_RELEASE_WORDS[target],
        )
        await _post_once(conn, posting, withdrawal)
    if target in TERMINAL:
        # decided: nothing is left for an operator to look at, unless the caller says otherwise
        review_reason = None if update.review_reason is KEEP else update.review_reason
        update = replace(update, next_check_at=None, payout_claimed_until=None, review_reason=review_reason)
    updated = await withdrawals.update_withdrawal(conn, withdrawal.id, update)
    await withdrawals.add_event(
        conn,
        withdrawal.id,
        from_status=withdrawal.status.value,
        to_status=target.value,
        actor=actor,
        note=note,
        detail=detail,
    )
    await announce.withdrawal_moved(conn, updated)
    log.info(
        "withdrawal_status_changed",
        withdrawal_id=withdrawal.id,
        from_status=withdrawal.status.value,
        to_status=target.value,
        actor=actor,
    )
    return updated
