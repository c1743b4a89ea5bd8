"""Stage 2, poll-status: ask the gateway where a payment stands and apply the answer."""

from __future__ import annotations

import structlog

from domain.errors import InvalidRequest
from domain.payments import PaymentUpdate
from gateway.errors import GatewayRejected
from services.apply_status import ApplyResult, apply_gateway_status, next_poll_at
from services.context import StageContext
from services.create_payment import resume_creation
from storage import payments
from storage.db import transaction

log = structlog.get_logger(__name__)


async def poll_status(ctx: StageContext, payment_id: str) -> ApplyResult | None:
    """Fetch and apply the gateway's view; ``None`` when there is nothing to ask about yet."""
    async with ctx.pool.acquire() as conn:
        payment = await payments.get_payment(conn, payment_id)
    if payment is None:
        raise InvalidRequest(f"no payment {payment_id!r}", field="payment_id")
    if payment.provider_payment_id is None:
        # Not created at the gateway yet: still being created, or its create-payment message was lost.
        log.info("poll_before_creation", payment_id=payment_id)
        await resume_creation(ctx, payment)
        return None
    if payment.is_terminal and payment.settled_at is None and payment.credit_usd:
        await ctx.enqueue.settle_deposit(payment.id)  # settlement lost before: send it again
        return None
    if payment.is_terminal:
        return None
    try:
        snapshot = await ctx.gateway.get_payment(payment.provider_payment_id)
    except GatewayRejected as exc:
        # The gateway refuses to tell us (unknown payment, bad key): retrying this message will not
        # help, but the payment must not be forgotten either. Back off and let the scheduler ask again.
        attempts = payment.poll_attempts + 1
        async with transaction(ctx.pool) as conn:
            await payments.update_payment(
                conn,
                payment.id,
                PaymentUpdate(poll_attempts=attempts, next_poll_at=next_poll_at(ctx.settings, attempts)),
            )
        log.warning("poll_refused_by_gateway", payment_id=payment.id, code=exc.code, http_status=exc.http_status)
        return None
    return await apply_gateway_status(ctx, snapshot, source="poll", polled=True)
