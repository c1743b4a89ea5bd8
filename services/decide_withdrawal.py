"""People deciding about a withdrawal: the user cancels, an operator approves, rejects or completes."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from domain.errors import InvalidRequest, InvalidTransition
from domain.withdrawals import Withdrawal, WithdrawalStatus, WithdrawalUpdate
from services.context import StageContext
from services.errors import WithdrawalNotFound
from services.withdrawal_transitions import move_withdrawal
from storage import withdrawals
from storage.db import transaction

MAX_NOTE_LENGTH = 1000
APPROVED_CHECK_SECONDS = 60.0
_TX_HASH = re.compile(r"^[A-Za-z0-9:_-]{8,200}$")


def _note(note: str | None) -> str:
    text = (note or "").strip()
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidRequest(f"note must be at most {MAX_NOTE_LENGTH} characters", field="note")
    return text


async def _decide(
    ctx: StageContext,
    withdrawal_id: str,
    target: WithdrawalStatus,
    *,
    actor: str,
    note: str | None,
    user_id: str | None = None,
    changes: WithdrawalUpdate | None = None,
    not_in_gateway: bool = False,
) -> Withdrawal:
    async with transaction(ctx.pool) as conn:
        withdrawal = await withdrawals.get_withdrawal(conn, withdrawal_id, for_update=True)
        if withdrawal is None or (user_id is not None and withdrawal.user_id != user_id):
            raise WithdrawalNotFound(f"no withdrawal {withdrawal_id!r}", field="withdrawal_id")
        if withdrawal.status is target:
            return withdrawal  # repeating a decision already taken is a no-op
        if not_in_gateway and _in_gateway(withdrawal):
            raise _in_gateway_hands(withdrawal_id)
        if withdrawal.review_reason is not None:
            changes = replace(changes or WithdrawalUpdate(), review_reason=None, payout_claimed_until=None)
        return await move_withdrawal(conn, withdrawal, target, actor=actor, note=_note(note), changes=changes)


async def cancel_withdrawal(ctx: StageContext, withdrawal_id: str, *, user_id: str, note: str = "") -> Withdrawal:
    """The user (through the calling system) withdraws a pending request; the hold is released.

    Only the owner may: someone else's withdrawal is not found (it is not theirs to see either).
    """
    if not user_id:
        raise InvalidRequest("the owner's user_id is required to cancel", field="user_id")
    actor = f"user:{user_id}"
    return await _decide(ctx, withdrawal_id, WithdrawalStatus.CANCELLED, actor=actor, note=note, user_id=user_id)


async def approve_withdrawal(ctx: StageContext, withdrawal_id: str, *, operator: str, note: str) -> Withdrawal:
    """Approve a pending request and enqueue its payout."""
    # With payouts on, the scheduler also looks at it shortly, in case the message below is lost.
    check_later = (
        WithdrawalUpdate(next_check_at=datetime.now(UTC) + timedelta(seconds=APPROVED_CHECK_SECONDS))
        if ctx.settings.payouts_enabled
        else None
    )
    approved = await _decide(
        ctx, withdrawal_id, WithdrawalStatus.APPROVED, actor=f"operator:{operator}", note=note, changes=check_later
    )
    if approved.status is WithdrawalStatus.APPROVED:
        await ctx.enqueue.process_withdrawal(approved.id)
    return approved


async def reject_withdrawal(ctx: StageContext, withdrawal_id: str, *, operator: str, note: str) -> Withdrawal:
    if not _note(note):
        raise InvalidRequest("a rejection needs a note saying why", field="note")
    return await _decide(
        ctx, withdrawal_id, WithdrawalStatus.REJECTED, actor=f"operator:{operator}", note=note, not_in_gateway=True
    )


def _in_gateway(withdrawal: Withdrawal) -> bool:
    """Only the gateway's answer may settle it: a payout is recorded, or one may exist and nobody has
    asked an operator to look (a withdrawal held for review is the operator's to decide)."""
    if withdrawal.provider_payout_id is not None:
        return True
    if withdrawal.payout_claimed_until is not None and withdrawal.payout_claimed_until > datetime.now(UTC):
        return True  # a payout attempt is under way right now
    return withdrawal.payout_mode == "gateway" and withdrawal.review_reason is None


def _in_gateway_hands(withdrawal_id: str) -> InvalidTransition:
    return InvalidTransition(
        f"withdrawal {withdrawal_id} has been handed to the payout gateway (or a payout attempt is under way);"
        " only its answer can settle it now"
    )


async def complete_withdrawal_manually(
    ctx: StageContext, withdrawal_id: str, *, tx_hash: str, operator: str, note: str = ""
) -> Withdrawal:
    """Manual mode: the operator paid off-platform; record the transaction hash and post the hold."""
    tx_hash = (tx_hash or "").strip()
    if not _TX_HASH.match(tx_hash):
        raise InvalidRequest(
            "a transaction hash of 8-200 letters, digits, ':', '_' or '-' is required", field="tx_hash"
        )
    async with transaction(ctx.pool) as conn:
        withdrawal = await withdrawals.get_withdrawal(conn, withdrawal_id, for_update=True)
        if withdrawal is None:
            raise WithdrawalNotFound(f"no withdrawal {withdrawal_id!r}", field="withdrawal_id")
        if _in_gateway(withdrawal):
            raise _in_gateway_hands(withdrawal_id)
        if withdrawal.status is WithdrawalStatus.COMPLETED and withdrawal.transaction_hash == tx_hash:
            return withdrawal
        return await move_withdrawal(
            conn,
            withdrawal,
            WithdrawalStatus.COMPLETED,
            actor=f"operator:{operator}",
            note=_note(note),
            changes=WithdrawalUpdate(transaction_hash=tx_hash, payout_mode="manual", review_reason=None),
        )
