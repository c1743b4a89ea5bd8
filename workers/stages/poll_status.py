"""Stage 2, poll-status: ask the gateway where a payment stands and apply the answer."""

from __future__ import annotations

import structlog

from domain.errors import InvalidRequest
from storage import payments
from workers.context import StageContext
from workers.stages.apply_status import ApplyResult, apply_gateway_status

log = structlog.get_logger(__name__)


async def poll_status(ctx: StageContext, payment_id: str) -> ApplyResult | None:
    """Fetch and apply the gateway's view; ``None`` when there is nothing to ask about yet."""
    async with ctx.pool.acquire() as conn:
        payment = await payments.get_payment(conn, payment_id)
    if payment is None:
        raise InvalidRequest(f"no payment {payment_id!r}", field="payment_id")
    if payment.provider_payment_id is None:
        log.info("poll_before_creation", payment_id=payment_id)
        return None
    if payment.is_terminal and payment.settled_at is None and payment.credit_usd:
        await ctx.enqueue.settle_deposit(payment.id)  # settlement lost before: send it again
        return None
    if payment.is_terminal:
        return None
    snapshot = await ctx.gateway.get_payment(payment.provider_payment_id)
    return await apply_gateway_status(ctx, snapshot, source="poll", polled=True)
