"""What the gateway's news about a payout changes for its withdrawal: one pure decision.

The news comes from creating the payout, looking it up, a status check or a payout IPN. A payout for
a withdrawal handed to the gateway but not yet recorded (its answer was lost, or its IPN outran the
worker) is recorded first. News that contradicts a closed withdrawal is held for an operator, never
applied. The caller locks the withdrawal, makes the moves (each settles the hold at most once) and
writes the update.

Stale news is read from the status order, which the news itself carries: a payout only moves forward
(CREATING, WAITING, PROCESSING, SENDING, then one of FINISHED/FAILED/REJECTED), so news of an earlier
stage than the one we recorded is an old IPN or answer overtaken by a later one (IPNs are retried,
duplicated and reordered). It changes nothing, as a stale payment snapshot does (`domain.payment_news`).
A final status other than the one we closed on, or an amount or hash other than the one we hold, is a
real contradiction and goes to an operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.money import same_crypto_amount
from domain.updates import KEEP
from domain.withdrawals import Withdrawal, WithdrawalStatus, WithdrawalUpdate, map_payout_status

# How soon the scheduler checks again on a payout in flight.
PAYOUT_CHECK_SECONDS = 30.0
_RELEASED = frozenset({WithdrawalStatus.REJECTED, WithdrawalStatus.FAILED, WithdrawalStatus.CANCELLED})
# Where each payout status stands in a payout's life: a payout never goes back to an earlier stage.
PAYOUT_STAGE: Mapping[str, int] = {
    "CREATING": 0,
    "WAITING": 1,
    "PROCESSING": 2,
    "SENDING": 3,
    "FINISHED": 4,
    "FAILED": 4,
    "REJECTED": 4,
}


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
    STALE = "stale"  # an earlier stage of the payout than the one we recorded: ignored
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
        reason = contradiction(withdrawal, news)
        if reason and withdrawal.review_reason != reason:
            return PayoutPlan(
                PayoutReading.CONTRADICTS_CLOSED, update=WithdrawalUpdate(review_reason=reason), review_reason=reason
            )
        if reason is None and is_earlier_stage(news.status, than=withdrawal.payout_status):
            return PayoutPlan(PayoutReading.STALE)
        return PayoutPlan(PayoutReading.CLOSED)
    check_again = now + timedelta(seconds=PAYOUT_CHECK_SECONDS)
    moves: tuple[WithdrawalMove, ...] = ()
    payout_status = withdrawal.payout_status
    if _sent_but_unrecorded(withdrawal):
        moves = (_record_payout(news, source=source, check_again=check_again),)
        payout_status = news.status
    elif withdrawal.status is not WithdrawalStatus.PROCESSING:
        return PayoutPlan(PayoutReading.NOT_IN_GATEWAY)
    elif is_earlier_stage(news.status, than=payout_status):
        return PayoutPlan(PayoutReading.STALE)
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


def is_earlier_stage(reported: str, *, than: str | None) -> bool:
    """Whether payout status ``reported`` is an earlier stage of a payout's life than the recorded ``than``."""
    held = PAYOUT_STAGE.get((than or "").strip().upper())
    news = PAYOUT_STAGE.get(reported.strip().upper())
    return held is not None and news is not None and news < held


def contradiction(withdrawal: Withdrawal, news: PayoutNews) -> str | None:
    """Why a closed withdrawal disagrees with what the gateway now reports, or None.

    Another amount or hash than the ones we hold always disagrees; a status disagrees unless it is an
    earlier stage than the one we closed on (stale news, see `is_earlier_stage`).
    """
    sent, hash_held = withdrawal.payout_amount, withdrawal.transaction_hash
    if sent is not None and news.amount is not None and not same_crypto_amount(sent, news.amount, precision=None):
        return f"{sent} {withdrawal.currency_code} was sent but the gateway reports the payout as {news.amount}"
    if hash_held and news.hash and hash_held.strip().casefold() != news.hash.strip().casefold():
        return f"recorded with transaction hash {hash_held} but the gateway reports hash {news.hash}"
    if is_earlier_stage(news.status, than=withdrawal.payout_status):
        return None
    target = map_payout_status(news.status)
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
