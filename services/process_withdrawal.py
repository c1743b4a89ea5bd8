"""Stage 4, process-withdrawal: pay out an approved withdrawal and settle its hold exactly once.

With payouts configured, the payout goes through NOWPayments with ``unique_external_id`` = our id.
Before creating a payout we look it up by that id, so a worker that died between the payout call
and recording its answer never pays twice: the retry finds the first payout and records it.
An attempt holds a lease; its ``payout_claimed_until`` is its token, and every write it makes after
talking to the gateway checks that token or that the withdrawal is still unsent, so a stale attempt
can never undo what a newer one, an IPN or an operator did.
Without payouts, approved withdrawals wait for an operator (`payments withdrawals complete`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from domain.payout_news import PAYOUT_CHECK_SECONDS, PayoutNews, PayoutPlan, PayoutReading, plan_payout_news
from domain.withdrawals import Withdrawal, WithdrawalStatus, WithdrawalUpdate
from gateway.errors import DUPLICATE_EXTERNAL_ID, GatewayProtocolError, GatewayRejected
from gateway.models import GatewayPayout
from services import announce
from services.context import StageContext
from services.errors import PayoutInProgress, UnknownPayout, WithdrawalNotFound
from services.withdrawal_transitions import move_withdrawal
from storage import withdrawals
from storage.db import transaction

log = structlog.get_logger(__name__)

PAYOUT_LEASE_SECONDS = 120.0
AMBIGUOUS_PAYOUT_WAIT_SECONDS = 10.0
REVIEW_CHECK_SECONDS = 300.0
GATEWAY_ACTOR = "gateway:nowpayments"
# Refusals that say something about our credentials, not about this withdrawal: never fail it for them.
_NOT_ABOUT_THE_WITHDRAWAL = frozenset({401, 403})


def _check_again(seconds: float = PAYOUT_CHECK_SECONDS) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def process_withdrawal(ctx: StageContext, withdrawal_id: str) -> Withdrawal:
    withdrawal = await _current(ctx, withdrawal_id)
    if withdrawal.is_terminal or withdrawal.status is WithdrawalStatus.PENDING:
        return withdrawal  # nothing to pay: decided already, or not approved yet
    if not ctx.settings.payouts_enabled:
        if withdrawal.status is WithdrawalStatus.APPROVED:
            log.info("withdrawal_awaits_manual_payout", withdrawal_id=withdrawal.id)
        return withdrawal
    if withdrawal.provider_payout_id is not None:
        return await _check_recorded_payout(ctx, withdrawal)
    if withdrawal.review_reason is not None:
        return await _look_for_lost_payout(ctx, withdrawal)
    return await _send_payout(ctx, withdrawal)


async def _current(ctx: StageContext, withdrawal_id: str) -> Withdrawal:
    async with ctx.pool.acquire() as conn:
        current = await withdrawals.get_withdrawal(conn, withdrawal_id)
    if current is None:
        raise WithdrawalNotFound(f"no withdrawal {withdrawal_id!r}", field="withdrawal_id")
    return current


async def _check_recorded_payout(ctx: StageContext, withdrawal: Withdrawal) -> Withdrawal:
    assert withdrawal.provider_payout_id is not None
    try:
        payout = await ctx.gateway.get_payout(withdrawal.provider_payout_id)
    except GatewayRejected as exc:
        # Retrying this message cannot help (credentials, an unknown id); the scheduler asks again later.
        log.warning("payout_check_refused", withdrawal_id=withdrawal.id, code=exc.code, http_status=exc.http_status)
        async with transaction(ctx.pool) as conn:
            await withdrawals.update_withdrawal(conn, withdrawal.id, WithdrawalUpdate(next_check_at=_check_again()))
        return withdrawal
    return await apply_payout_status(ctx, payout, source="poll")


async def _send_payout(ctx: StageContext, withdrawal: Withdrawal) -> Withdrawal:
    async with transaction(ctx.pool) as conn:
        claimed = await withdrawals.claim_payout(conn, withdrawal.id, lease_seconds=PAYOUT_LEASE_SECONDS)
    if claimed is None:
        return await _lease_held(ctx, withdrawal.id)
    assert claimed.payout_claimed_until is not None
    lease = claimed.payout_claimed_until
    try:
        payout = await _find_or_create_payout(ctx, claimed, lease)
    except BaseException:
        # The next attempt looks the payout up by our id before creating one. Give the gateway a short
        # while to register a payout whose answer we lost, then let the retry (or the scheduler) go.
        async with transaction(ctx.pool) as conn:
            await withdrawals.end_payout_attempt(
                conn, withdrawal.id, lease=lease, retry_at=_check_again(AMBIGUOUS_PAYOUT_WAIT_SECONDS)
            )
        raise
    if payout is None:
        return await _current(ctx, withdrawal.id)
    return await apply_payout_status(ctx, payout, source="create", withdrawal_id=withdrawal.id)


async def _lease_held(ctx: StageContext, withdrawal_id: str) -> Withdrawal:
    """The payout could not be claimed: the withdrawal moved on (returned as it is now), or another attempt
    holds a live lease (`PayoutInProgress`). That attempt may die with it, so the scheduler's check is made
    due when the lease ends at the latest; this message has nothing left to do and need not be retried."""
    async with transaction(ctx.pool) as conn:
        current = await withdrawals.get_withdrawal(conn, withdrawal_id)
        assert current is not None
        until = current.payout_claimed_until
        unsent = current.status is WithdrawalStatus.APPROVED and current.provider_payout_id is None
        if not unsent or current.review_reason is not None or until is None or until <= datetime.now(UTC):
            return current  # decided, recorded, held for review, or free again (its check is due already)
        await withdrawals.check_unsent_by(conn, withdrawal_id, at=until)
    raise PayoutInProgress(f"withdrawal {withdrawal_id} is being paid out by another attempt", until=until)


async def _find_or_create_payout(ctx: StageContext, withdrawal: Withdrawal, lease: datetime) -> GatewayPayout | None:
    """The payout for this withdrawal: found by our id if an earlier attempt sent it, else created now.

    ``None`` when nothing more can be done now: the gateway refused it for good (the withdrawal is
    failed and released), refused a retry after an attempt whose outcome we never learned (the
    withdrawal is held for an operator: the first payout may exist, so releasing could pay twice), or
    someone else moved the withdrawal meanwhile.
    """
    outcome_unknown = withdrawal.payout_attempted_at is not None
    try:
        payout = await ctx.gateway.find_payout_by_external_id(withdrawal.id)
        if payout is not None:
            return payout
        amount = withdrawal.payout_amount or await ctx.gateway.estimate(
            withdrawal.final_amount_usd, "usd", withdrawal.currency_code
        )
    except GatewayRejected as exc:  # nothing was sent in this attempt
        if exc.http_status in _NOT_ABOUT_THE_WITHDRAWAL:
            raise
        return await _refused(ctx, withdrawal.id, exc, lease=lease, outcome_unknown=outcome_unknown)
    async with transaction(ctx.pool) as conn:
        # From here on a payout may exist: the amount never changes again, the gateway owns the outcome,
        # and no refusal of a later attempt can prove that nothing was paid.
        sending = await withdrawals.mark_payout_sending(conn, withdrawal.id, amount=amount, lease=lease)
    if sending is None:
        log.info("payout_not_sent_withdrawal_moved_meanwhile", withdrawal_id=withdrawal.id)
        return None
    try:
        return await ctx.gateway.create_payout(
            address=withdrawal.wallet_address,
            currency=withdrawal.currency_code,
            amount=amount,
            extra_id=withdrawal.extra_id,
            ipn_callback_url=ctx.settings.payout_ipn_callback_url,
            unique_external_id=withdrawal.id,
        )
    except GatewayRejected as exc:
        if exc.code == DUPLICATE_EXTERNAL_ID:
            payout = await ctx.gateway.find_payout_by_external_id(withdrawal.id)
            if payout is not None:
                return payout
            # The gateway has a payout under our id that it will not show us: only a person can sort it out.
            return await _refused(ctx, withdrawal.id, exc, lease=lease, outcome_unknown=True)
        return await _refused(ctx, withdrawal.id, exc, lease=lease, outcome_unknown=outcome_unknown)


async def _refused(
    ctx: StageContext, withdrawal_id: str, exc: GatewayRejected, *, lease: datetime, outcome_unknown: bool
) -> None:
    """A refusal proves nothing was paid only for a first attempt (no request ever sent before it) that
    still holds its lease; otherwise the withdrawal is held for an operator."""
    async with transaction(ctx.pool) as conn:
        withdrawal = await withdrawals.get_withdrawal(conn, withdrawal_id, for_update=True)
        assert withdrawal is not None
        if withdrawal.status is not WithdrawalStatus.APPROVED or withdrawal.provider_payout_id is not None:
            return None  # moved on meanwhile (recorded by an IPN, decided by an operator): that stands
        if withdrawal.payout_claimed_until != lease:
            return None  # our lease ran out and another attempt owns the withdrawal now: it decides
        if not outcome_unknown:
            log.warning("payout_refused_by_gateway", withdrawal_id=withdrawal_id, code=exc.code)
            await move_withdrawal(
                conn,
                withdrawal,
                WithdrawalStatus.FAILED,
                actor=GATEWAY_ACTOR,
                note=f"payout refused: {exc.code}",
                changes=WithdrawalUpdate(error_code=exc.code, error_message=exc.message[:500]),
            )
            return None
        reason = (
            f"payout refused ({exc.code}) after an attempt whose outcome is unknown: check the gateway for"
            f" unique_external_id {withdrawal_id}, then complete (with its hash) or reject"
        )
        held = await withdrawals.update_withdrawal(
            conn,
            withdrawal_id,
            WithdrawalUpdate(
                review_reason=reason,
                error_code=exc.code,
                error_message=exc.message[:500],
                payout_claimed_until=None,
                # keep looking it up: if the first payout shows up, it is recorded and settled normally
                next_check_at=_check_again(),
            ),
        )
        await announce.withdrawal_held(conn, held)
    log.error("withdrawal_needs_review", withdrawal_id=withdrawal_id, code=exc.code)
    return None


async def _look_for_lost_payout(ctx: StageContext, withdrawal: Withdrawal) -> Withdrawal:
    """A withdrawal held for review after an attempt with unknown outcome: keep looking the payout up by
    our id. If it shows up it is recorded and settled normally; otherwise check again later."""
    try:
        payout = await ctx.gateway.find_payout_by_external_id(withdrawal.id)
    except (GatewayRejected, GatewayProtocolError) as exc:
        log.error("lost_payout_lookup_failed", withdrawal_id=withdrawal.id, error=type(exc).__name__, detail=str(exc))
        payout = None
    if payout is not None:
        return await apply_payout_status(ctx, payout, source="lookup", withdrawal_id=withdrawal.id)
    async with transaction(ctx.pool) as conn:
        moved = await withdrawals.update_unsent(
            conn, withdrawal.id, WithdrawalUpdate(next_check_at=_check_again(REVIEW_CHECK_SECONDS))
        )
    return moved or await _current(ctx, withdrawal.id)


async def apply_payout_status(
    ctx: StageContext, payout: GatewayPayout, *, source: str, withdrawal_id: str | None = None
) -> Withdrawal:
    """Apply the gateway's view of a payout (create, poll, lookup or payout IPN); settles the hold once.

    The decision is `domain.payout_news.plan_payout_news`. ``withdrawal_id`` names the withdrawal when the
    caller knows it; otherwise it is found by payout id or by the payout's ``unique_external_id``.
    """
    async with transaction(ctx.pool) as conn:
        withdrawal = await _locked_withdrawal_of(conn, payout, withdrawal_id)
        plan = plan_payout_news(withdrawal, news_from(payout), source=source, now=datetime.now(UTC))
        _log_reading(withdrawal, payout, plan, source)
        for move in plan.moves:
            withdrawal = await move_withdrawal(
                conn,
                withdrawal,
                move.target,
                actor=GATEWAY_ACTOR,
                note=move.note,
                changes=move.update,
                detail=dict(move.detail),
            )
        if not plan.update.is_empty:
            withdrawal = await withdrawals.update_withdrawal(conn, withdrawal.id, plan.update)
        return withdrawal


def news_from(payout: GatewayPayout) -> PayoutNews:
    """The domain's view of what the gateway said."""
    return PayoutNews(
        payout_id=payout.payout_id,
        status=payout.status,
        amount=payout.amount,
        currency=payout.currency,
        hash=payout.hash,
        error=payout.error,
    )


async def _locked_withdrawal_of(
    conn: asyncpg.Connection, payout: GatewayPayout, withdrawal_id: str | None
) -> Withdrawal:
    withdrawal = await withdrawals.get_by_provider_id(conn, payout.payout_id, for_update=True)
    own_id = withdrawal_id or payout.unique_external_id
    if withdrawal is None and own_id:
        withdrawal = await withdrawals.get_withdrawal(conn, own_id, for_update=True)
    if (
        withdrawal is None
        or withdrawal.provider_payout_id not in (None, payout.payout_id)
        or (payout.unique_external_id not in (None, withdrawal.id))
    ):
        raise UnknownPayout(f"no withdrawal for payout {payout.payout_id!r}", field="payout_id")
    return withdrawal


def _log_reading(withdrawal: Withdrawal, payout: GatewayPayout, plan: PayoutPlan, source: str) -> None:
    if plan.reading is PayoutReading.UNKNOWN_STATUS:
        log.warning("payout_status_unknown", withdrawal_id=withdrawal.id, status=payout.status)
    elif plan.reading is PayoutReading.STALE:
        log.info(
            "payout_news_stale",
            withdrawal_id=withdrawal.id,
            reported=payout.status,
            recorded=withdrawal.payout_status,
            withdrawal_status=withdrawal.status.value,
            source=source,
        )
    elif plan.reading is PayoutReading.CONTRADICTS_CLOSED:
        log.error("payout_contradicts_closed_withdrawal", withdrawal_id=withdrawal.id, reason=plan.review_reason)
