"""An operator releases a deposit held for review: it is credited, once, with who and why recorded.

Held deposits are variances under a `hold_for_review` policy, funds reported on a payment that had
already failed or expired, and funds that arrived after the payment was settled. The operator
credits what arrived (or less, never more).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import structlog

from domain.errors import InvalidRequest
from domain.ledger import GATEWAY_CLEARING, AccountRef, Entry, LedgerPosting, TransactionType
from domain.money import ZERO, format_usd
from domain.payment_news import UNDONE_PREFIX
from domain.payments import MAX_CREDIT_USD, Payment, PaymentStatus, PaymentUpdate, received_value_usd
from services import announce
from storage import ledger, payments
from storage.db import transaction

log = structlog.get_logger(__name__)


def _received_value(payment: Payment) -> Decimal:
    if payment.pay_amount is None or payment.actually_paid is None:
        return payment.amount_usd if payment.status.value == "completed" else ZERO
    return received_value_usd(
        price_amount=payment.amount_usd, pay_amount=payment.pay_amount, actually_paid=payment.actually_paid
    )


def _amount_to_release(payment: Payment, already: Decimal, credit_usd: Decimal | None) -> Decimal:
    """What arrived beyond what was credited (``already``), or the smaller amount the operator names."""
    available = _received_value(payment) - already
    amount = available if credit_usd is None else credit_usd
    if amount <= ZERO:
        raise InvalidRequest(f"nothing to credit: {format_usd(available)} arrived beyond what was credited")
    if amount > available:
        raise InvalidRequest(
            f"{format_usd(amount)} is more than the {format_usd(available)} that arrived", field="credit_usd"
        )
    if already + amount > MAX_CREDIT_USD:
        raise InvalidRequest(
            f"a credit beyond {format_usd(MAX_CREDIT_USD)} for one deposit is never made: name a smaller credit_usd",
            field="credit_usd",
        )
    return amount


def _check_decision(operator: str, note: str, what: str) -> None:
    if not operator.strip():
        raise InvalidRequest("operator (who decides) is required", field="operator")
    if not note.strip():
        raise InvalidRequest(f"{what} needs a note saying why", field="note")


async def _locked_held_payment(conn: asyncpg.Connection, payment_id: str) -> Payment:
    payment = await payments.get_payment(conn, payment_id, for_update=True)
    if payment is None:
        raise InvalidRequest(f"no payment {payment_id!r}", field="payment_id")
    if payment.hold_reason is None:
        raise InvalidRequest(f"payment {payment_id} is not held for review", field="payment_id")
    return payment


async def release_held_deposit(
    pool: asyncpg.Pool, payment_id: str, *, operator: str, note: str, credit_usd: Decimal | None = None
) -> Payment:
    """Credit a held deposit: the received value by default, or a smaller amount the operator names."""
    _check_decision(operator, note, "a release")
    async with transaction(pool) as conn:
        payment = await _locked_held_payment(conn, payment_id)
        assert payment.hold_reason is not None
        if payment.status is PaymentStatus.REFUNDED or payment.hold_reason.startswith(UNDONE_PREFIX):
            raise InvalidRequest(
                f"payment {payment_id} was refunded or failed at the gateway: nothing may be credited for it;"
                " reverse any credit by hand, then dismiss the hold",
                field="payment_id",
            )
        already = payment.credit_usd if payment.settled_at is not None and payment.credit_usd else ZERO
        amount = _amount_to_release(payment, already, credit_usd)
        # First credit: the payment's own deposit key. Later releases (funds after settlement) are keyed by
        # the cumulative credit they bring the payment to, so each distinct release posts exactly once.
        key = f"deposit:{payment.id}" if payment.settled_at is None else f"deposit:{payment.id}:to:{already + amount}"
        posting = LedgerPosting(
            idempotency_key=key,
            type=TransactionType.DEPOSIT,
            description=f"Deposit released by operator - {payment.id}",
            entries=(Entry(AccountRef.available(payment.user_id), amount), Entry(GATEWAY_CLEARING, -amount)),
        )
        result = await ledger.post(conn, posting)
        if not result.created:
            raise InvalidRequest(f"payment {payment_id} was already released", field="payment_id")
        updated = await payments.update_payment(
            conn,
            payment.id,
            PaymentUpdate(
                settled_at=payment.settled_at or datetime.now(UTC),
                ledger_transaction_id=payment.ledger_transaction_id or result.transaction_id,
                credit_usd=already + amount,
                hold_reason=None,
                next_poll_at=None,
            ),
        )
        await payments.add_event(
            conn,
            payment.id,
            source="operator",
            from_status=payment.status.value,
            to_status=payment.status.value,
            detail={
                "operator": operator,
                "note": note,
                "released_usd": amount,
                "hold_reason": payment.hold_reason,
                "ledger_transaction_id": result.transaction_id,
            },
        )
        await announce.payment_released(conn, updated, result.transaction_id)
    log.info("held_deposit_released", payment_id=payment.id, operator=operator, credit_usd=format_usd(amount))
    return updated


async def dismiss_deposit_hold(pool: asyncpg.Pool, payment_id: str, *, operator: str, note: str) -> Payment:
    """Close an operator question about a deposit without crediting anything (e.g. after reversing a
    refunded credit by hand, or deciding that reported late funds were not ours). Recorded with who and why."""
    _check_decision(operator, note, "dismissing a hold")
    async with transaction(pool) as conn:
        payment = await _locked_held_payment(conn, payment_id)
        updated = await payments.update_payment(conn, payment.id, PaymentUpdate(hold_reason=None, next_poll_at=None))
        await payments.add_event(
            conn,
            payment.id,
            source="operator",
            from_status=payment.status.value,
            to_status=payment.status.value,
            detail={"operator": operator, "note": note, "dismissed_hold": payment.hold_reason},
        )
        await announce.payment_dismissed(conn, updated, payment.hold_reason)
    log.info("deposit_hold_dismissed", payment_id=payment.id, operator=operator)
    return updated
