"""settle-deposit for a group of payments at once: many credits in one database transaction (group commit).

The rule is the single stage's (services/settle_deposit.py), written set-based: one statement per table
for the whole group. A payment the group does not take (its row locked by another transaction, an
unknown id, data the rule refuses) is handed back to the caller, which settles it alone; if anything
fails at the database, the whole group is handed back. One bad payment never holds back or rolls back
the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import structlog

from domain.ledger import LedgerPosting, deposit_posting
from domain.payments import Payment
from services import announce
from services.context import StageContext
from services.settle_deposit import credit_decision
from settings import Settings
from storage import ledger, payments
from storage.db import transaction

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class GroupOutcome:
    finished: frozenset[str]  # credited now, settled before, or nothing to credit: as the single stage ends
    left: frozenset[str]  # not settled here: settle each of these alone
    credited: int = 0  # ledger transactions written by this group


@dataclass(frozen=True)
class _Sorted:
    finished: list[str]
    to_credit: list[tuple[Payment, LedgerPosting, Decimal]]
    refused: list[str]


def _sort_out(locked: list[Payment], settings: Settings) -> _Sorted:
    """Which locked payments are done already, which to credit, and which the rule refuses here."""
    out = _Sorted([], [], [])
    for payment in locked:
        if payment.settled_at is not None:
            out.finished.append(payment.id)
            continue
        try:
            decision = credit_decision(payment, settings)
            if not decision.creditable:
                log.info("settle_not_creditable", payment_id=payment.id, status=payment.status.value)
                out.finished.append(payment.id)
                continue
            posting = deposit_posting(
                payment_id=payment.id,
                user_id=payment.user_id,
                amount_usd=decision.credit_usd,
                description=f"Deposit completed - {payment.id}",
            )
        except (ValueError, ArithmeticError):  # the single stage reports it with its own error
            out.refused.append(payment.id)
            continue
        out.to_credit.append((payment, posting, decision.credit_usd))
    return out


async def settle_group(ctx: StageContext, payment_ids: Sequence[str]) -> GroupOutcome:
    """Settle every payment of ``payment_ids`` that can be settled right now, in one transaction."""
    wanted = sorted(set(payment_ids))
    try:
        async with transaction(ctx.pool) as conn:
            locked = await payments.lock_batch(conn, wanted)
            sorted_out = _sort_out(locked, ctx.settings)
            postings = [posting for _, posting, _ in sorted_out.to_credit]
            results = await ledger.open_transactions(conn, postings)
            settled = [
                (payment, results[posting.idempotency_key].transaction_id, credit)
                for payment, posting, credit in sorted_out.to_credit
            ]
            written = await payments.mark_settled_batch(conn, settled)
            await announce.payments_credited(conn, [(p, tx) for p, (_, tx, _) in zip(written, settled, strict=True)])
            # Last, so the users' balance rows (one hot row for a busy user) are held only until commit.
            await ledger.add_entries(conn, postings, results)
    except Exception as exc:  # the group is all or nothing: every payment of it goes on alone
        log.warning("settle_group_failed", size=len(wanted), error=type(exc).__name__, detail=str(exc)[:300])
        return GroupOutcome(finished=frozenset(), left=frozenset(wanted))
    settled_ids = {payment.id for payment, _, _ in sorted_out.to_credit}
    finished = frozenset(sorted_out.finished) | settled_ids
    credited = sum(result.created for result in results.values())
    log.info(
        "deposits_settled_in_group",
        size=len(wanted),
        credited=credited,
        total_usd=str(sum((credit for _, _, credit in sorted_out.to_credit), Decimal(0))),
        left=len(wanted) - len(finished),
    )
    return GroupOutcome(finished=finished, left=frozenset(wanted) - finished, credited=credited)
