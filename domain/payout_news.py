"""What the gateway's news about a payout changes for its withdrawal: one pure decision.

The news comes from creating the payout, looking it up, a status check or a payout IPN. A payout for
a withdrawal handed to the gateway but not yet recorded (its answer was lost, or its IPN outran the
worker) is recorded first. News that contradicts a closed withdrawal is held for an operator, never
applied. The caller locks the withdrawal, makes the moves (each settles the hold at most once) and
writes the update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.updates import KEEP
from domain.withdrawals import Withdrawal, WithdrawalStatus, WithdrawalUpdate, map_payout_status

# How soon the scheduler checks again on a payout in flight.
PAYOUT_CHECK_SECONDS = 30.0
_RELEASED = frozenset({WithdrawalStatus.REJECTED, WithdrawalStatus.FAILED, WithdrawalStatus.CANCELLED})


@dataclass(frozen=True)
class PayoutNews:
    """What the gateway says about one payout; ``status`` is its raw word, upper case (e.g. "FINISHED")."""

    payout_id: str
    status: str
    amount: Decimal | None = None
    currency: str | None = None
    hash: str | None = None
    error: str | None = None


class PayoutReading(StrEnum):
    """How the news was read (the caller logs it)."""

    UNKNOWN_STATUS = "unknown_status"  # a status we do not know: ignored
    CONTRADICTS_CLOSED = "contradicts_closed"  # a closed withdrawal the gateway disagrees with: held for review
    CLOSED = "closed"  # a closed withdrawal, nothing new
    NOT_IN_GATEWAY = "not_in_gateway"  # never handed to the gateway: nothing of this payout applies
    APPLIES = "applies"


@dataclass(frozen=True)
class WithdrawalMove:
    """A status move for the caller to make with its ledger consequence, recorded with ``note`` and ``detail``."""

    target: WithdrawalStatus
    note: str
    update: WithdrawalUpdate
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class PayoutPlan:
    reading: PayoutReading
    moves: tuple[WithdrawalMove, ...] = ()  # made in order, before the update
    update: WithdrawalUpdate = field(default_factory=WithdrawalUpdate)  # written without a status change
    review_reason: str | None = None  # set when the news contradicts a closed withdrawal


def plan_payout_news(withdrawal: Withdrawal, news: PayoutNews, *, source: str, now: datetime) -> PayoutPlan:
    """What ``news`` changes about ``withdrawal`` (as stored, locked by the caller) at ``now``.

    ``source`` names where the news came from ("create", "poll", "lookup", "ipn").
    """
    target = map_payout_status(news.status)
    if target is None:
        return PayoutPlan(PayoutReading.UNKNOWN_STATUS)
    if withdrawal.is_terminal:
        reason = contradiction(withdrawal, target)
        if reason and withdrawal.review_reason != reason:
            return PayoutPlan(
                PayoutReading.CONTRADICTS_CLOSED, update=WithdrawalUpdate(review_reason=reason), review_reason=reason
            )
        return PayoutPlan(PayoutReading.CLOSED)
    check_again = now + timedelta(seconds=PAYOUT_CHECK_SECONDS)
    moves: tuple[WithdrawalMove, ...] = ()
    payout_status = withdrawal.payout_status
    if _sent_but_unrecorded(withdrawal):
        moves = (_record_payout(news, source=source, check_again=check_again),)
        payout_status = news.status
    elif withdrawal.status is not WithdrawalStatus.PROCESSING:
        return PayoutPlan(PayoutReading.NOT_IN_GATEWAY)
    update = WithdrawalUpdate(payout_status=news.status, transaction_hash=news.hash or KEEP)
    if target is WithdrawalStatus.PROCESSING:
        if news.status == payout_status:
            return PayoutPlan(PayoutReading.APPLIES, moves)
        return PayoutPlan(PayoutReading.APPLIES, moves, replace(update, next_check_at=check_again))
    if target is WithdrawalStatus.FAILED:
        update = replace(
            update, error_code=f"PAYOUT_{news.status.upper()}", error_message=(news.error or "")[:500] or None
        )
    detail = {"payout_id": news.payout_id, "hash": news.hash, "error": news.error}
    final = WithdrawalMove(target, f"payout {news.status.lower()} ({source})", update, detail)
    return PayoutPlan(PayoutReading.APPLIES, (*moves, final))


def contradiction(withdrawal: Withdrawal, target: WithdrawalStatus) -> str | None:
    """Why a closed withdrawal disagrees with what the gateway now reports, or None."""
    if withdrawal.status in _RELEASED and target in (WithdrawalStatus.PROCESSING, WithdrawalStatus.COMPLETED):
        return f"the hold was released ({withdrawal.status.value}) but the gateway reports the payout as {target.value}"
    if withdrawal.status is WithdrawalStatus.COMPLETED and target is WithdrawalStatus.FAILED:
        return "completed here, but the gateway reports the payout as failed"
    return None


def _sent_but_unrecorded(withdrawal: Withdrawal) -> bool:
    return (
        withdrawal.status is WithdrawalStatus.APPROVED
        and withdrawal.provider_payout_id is None
        and withdrawal.payout_mode == "gateway"
    )


def _record_payout(news: PayoutNews, *, source: str, check_again: datetime) -> WithdrawalMove:
    return WithdrawalMove(
        WithdrawalStatus.PROCESSING,
        "payout created" if source == "create" else f"payout found ({source})",
        WithdrawalUpdate(
            provider_payout_id=news.payout_id,
            payout_status=news.status,
            payout_claimed_until=None,
            review_reason=None,
            next_check_at=check_again,
        ),
        {"payout_id": news.payout_id, "amount": news.amount, "currency": news.currency},
    )
