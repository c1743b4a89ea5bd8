"""Stage 3, settle-deposit: credit the user exactly once, in one database transaction."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from domain.errors import InvalidRequest
from domain.ledger import deposit_posting
from domain.money import format_usd
from domain.payments import CreditDecision, Payment, PaymentUpdate, decide_credit
from services import announce
from services.context import StageContext
from settings import Settings
from storage import ledger, payments
from storage.db import transaction

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SettleResult:
    payment: Payment
    credited: bool  # True only for the one run that wrote the ledger transaction


def credit_decision(payment: Payment, settings: Settings) -> CreditDecision:
    """What settling this payment now credits (one rule for the single and the grouped settlement)."""
    return decide_credit(
        status=payment.status,
        amount_usd=payment.amount_usd,
        pay_amount=payment.pay_amount,
        actually_paid=payment.actually_paid,
        past_expiry=payment.final_at is not None,
        underpaid_policy=settings.payments_underpaid_policy,
        overpaid_policy=settings.payments_overpaid_policy,
    )


async def settle_deposit(ctx: StageContext, payment_id: str) -> SettleResult:
    """Ledger transaction, entries, balance and the payment's settled mark commit together or not at all."""
    settings = ctx.settings
    async with transaction(ctx.pool) as conn:
        payment = await payments.get_payment(conn, payment_id, for_update=True)
        if payment is None:
            raise InvalidRequest(f"no payment {payment_id!r}", field="payment_id")
        if payment.settled_at is not None:
            return SettleResult(payment, credited=False)
        decision = credit_decision(payment, settings)
        if not decision.creditable:
            log.info("settle_not_creditable", payment_id=payment_id, status=payment.status.value)
            return SettleResult(payment, credited=False)
        posting = deposit_posting(
            payment_id=payment.id,
            user_id=payment.user_id,
            amount_usd=decision.credit_usd,
            description=f"Deposit completed - {payment.id}",
        )
        result = await ledger.post(conn, posting)
        updated = await payments.update_payment(
            conn,
            payment.id,
            PaymentUpdate(
                settled_at=payment.updated_at.__class__.now(payment.updated_at.tzinfo),
                ledger_transaction_id=result.transaction_id,
                credit_usd=decision.credit_usd,
                next_poll_at=None,
            ),
        )
        await payments.add_event(
            conn,
            payment.id,
            source="settle",
            from_status=payment.status.value,
            to_status=payment.status.value,
            detail={"credit_usd": decision.credit_usd, "ledger_transaction_id": result.transaction_id},
        )
        await announce.payment_credited(conn, updated, result.transaction_id)
    log.info(
        "deposit_settled",
        payment_id=payment.id,
        user_id=payment.user_id,
        credit_usd=format_usd(decision.credit_usd),
        new_posting=result.created,
    )
    return SettleResult(updated, credited=result.created)
