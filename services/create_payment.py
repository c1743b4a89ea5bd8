"""Stage 1, create-payment: record the request, open the payment at the gateway, schedule the first poll."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import structlog

from domain.ids import new_payment_id
from domain.lost_creation import seconds_until_trusted
from domain.money import format_usd
from domain.payments import Payment, PaymentStatus, PaymentUpdate
from domain.rejections import RequestKind
from gateway.errors import GatewayProtocolError, GatewayRejected, GatewayTransientError
from gateway.models import GatewayPayment
from services import announce
from services.admit_deposit import same_request_or_refuse, validate_new_deposit
from services.commands import CreatePaymentRequest
from services.context import StageContext
from services.errors import CreationInProgress, CreationOutcomePending, UnknownCurrency
from services.find_lost_creation import LookupInconclusive, find_lost_creation
from services.rejections import deposit_fingerprint, refuse_if_refused_before
from storage import payments, rejections
from storage.db import transaction

log = structlog.get_logger(__name__)

# Long enough for one gateway call with its timeout and retries; a crashed holder's lease runs out.
CREATION_LEASE_SECONDS = 60.0
# A payment list too full to read to the end is asked again this much later (and logged as an error).
INCONCLUSIVE_RETRY_SECONDS = 60.0


async def create_payment(ctx: StageContext, request: CreatePaymentRequest) -> Payment:
    """Idempotent on ``request.request_id``: a replay returns the same payment, a mismatched replay is refused."""
    payment, claimed = await _record_request(ctx, request)
    if payment.created_at_gateway or payment.status is not PaymentStatus.PENDING:
        return payment

    created = await _create_at_gateway(ctx, payment, claimed=claimed)
    if created is not None:
        return created
    current, until = await _look_when_the_lease_ends(ctx, payment.id)
    if until is None:
        return current
    raise CreationInProgress(f"payment {payment.id} is being created by another worker", until=until)


async def _look_when_the_lease_ends(ctx: StageContext, payment_id: str) -> tuple[Payment, datetime | None]:
    """Another holder has the creation lease. It may die with it: the scheduler's look (poll-status resumes
    the creation) is made due when the lease ends at the latest, so the caller has nothing left to do.
    Answers the payment and that time (None when the payment was created meanwhile)."""
    async with transaction(ctx.pool) as conn:
        current = await payments.get_payment(conn, payment_id)
        assert current is not None
        if current.created_at_gateway or current.status is not PaymentStatus.PENDING:
            return current, None
        until = current.create_claimed_until or datetime.now(UTC)
        await payments.look_again_by(conn, payment_id, at=until)
    return current, until


async def resume_creation(ctx: StageContext, payment: Payment) -> Payment | None:
    """Open at the gateway a recorded payment whose create-payment message was lost (its retry could not
    be enqueued while Redis was away), if nobody holds its creation lease; None when someone does, or when
    an earlier attempt's gateway payment may still appear."""
    if payment.created_at_gateway or payment.status is not PaymentStatus.PENDING:
        return payment
    try:
        created = await _create_at_gateway(ctx, payment)
    except CreationOutcomePending:
        return None  # an earlier attempt's payment may still appear on the gateway's list: the scheduler comes back
    if created is not None:
        log.warning("payment_creation_resumed", payment_id=payment.id, provider_payment_id=created.provider_payment_id)
        return created
    current, until = await _look_when_the_lease_ends(ctx, payment.id)
    if until is not None:
        log.info("creation_lease_held", payment_id=payment.id, until=until.isoformat())
        return None
    return current


async def _create_at_gateway(ctx: StageContext, payment: Payment, *, claimed: bool = False) -> Payment | None:
    """Under the creation lease, adopt the gateway payment an earlier attempt made, or call the gateway
    and record its answer; None if the lease is held.

    ``claimed``: the caller recorded the payment just now with the lease already taken (a first delivery:
    no earlier attempt can have been sent)."""
    if not claimed:
        async with transaction(ctx.pool) as conn:
            lease = await payments.claim_creation(conn, payment.id, lease_seconds=CREATION_LEASE_SECONDS)
        if lease is None:
            return None
        try:
            earlier = await _made_by_an_earlier_attempt(ctx, lease)
        except BaseException:
            await _release_claim(ctx, payment.id)
            raise
        if earlier is not None:
            return await _record_creation(ctx, payment, earlier, adopted=True)
        async with transaction(ctx.pool) as conn:
            await payments.mark_gateway_attempt(conn, payment.id)  # committed before the request leaves
    # (a first delivery's row was recorded with its attempt noted: an attempt never sent only costs a lookup)
    # The gateway is called outside any database transaction.
    try:
        answer = await ctx.gateway.create_payment(
            price_amount=payment.amount_usd,
            price_currency="usd",
            pay_currency=payment.currency_code,
            order_id=payment.id,
            order_description=payment.description or None,
            ipn_callback_url=ctx.settings.ipn_callback_url,
        )
    except GatewayRejected as exc:
        return await _record_rejection(ctx, payment, exc)
    except (GatewayTransientError, GatewayProtocolError, asyncio.CancelledError):
        # Cancelled = a worker stopping with the call in flight: as ambiguous as a timeout, and its message
        # is requeued for another worker, which should not have to wait for the lease to run out.
        await _release_claim(ctx, payment.id)
        raise
    return await _record_creation(ctx, payment, answer)


async def _release_claim(ctx: StageContext, payment_id: str) -> None:
    async with transaction(ctx.pool) as conn:
        await payments.release_creation_claim(conn, payment_id)


async def _made_by_an_earlier_attempt(ctx: StageContext, payment: Payment) -> GatewayPayment | None:
    """The gateway payment an earlier attempt whose answer was lost made, if any; None also when no attempt
    was sent, and when the payment list cannot be read (no payout login: a second payment is then possible).

    Raises GatewayTransientError when the list does not answer, and CreationOutcomePending when "not listed"
    cannot be trusted yet: in both cases nothing may be created now.
    """
    last_attempt = payment.gateway_attempted_at
    if last_attempt is None:
        return None
    if not ctx.settings.payouts_enabled:
        log.warning(
            "gateway_lookup_unavailable",
            payment_id=payment.id,
            detail="no payout login (NOWPAYMENTS_EMAIL/NOWPAYMENTS_PASSWORD) to read the gateway's payment list:"
            " creating again; payments reconcile --gateway finds a second gateway payment",
        )
        return None
    now = datetime.now(UTC)
    try:
        found = await find_lost_creation(
            ctx.gateway, payment, now, settle_seconds=ctx.settings.nowpayments_lookup_settle_seconds
        )
    except LookupInconclusive as exc:
        log.error("gateway_lookup_inconclusive", payment_id=payment.id, detail=str(exc))
        await _outcome_pending(ctx, payment.id, str(exc), now + timedelta(seconds=INCONCLUSIVE_RETRY_SECONDS))
    if found is not None:
        log.warning("payment_adopted_from_gateway", payment_id=payment.id, provider_payment_id=found.payment_id)
        return found
    wait = seconds_until_trusted(last_attempt, now, ctx.settings.nowpayments_lookup_settle_seconds)
    if wait > 0:
        log.info("gateway_lookup_not_yet_trusted", payment_id=payment.id, retry_in_seconds=round(wait, 1))
        message = f"payment {payment.id}: an earlier attempt may still appear on the gateway"
        await _outcome_pending(ctx, payment.id, message, now + timedelta(seconds=wait))
    log.info("gateway_lookup_negative", payment_id=payment.id)
    return None


async def _outcome_pending(ctx: StageContext, payment_id: str, message: str, until: datetime) -> NoReturn:
    """Nothing may be created before ``until``: the scheduler's look (poll-status resumes the creation) is
    made due then, and the message that got here has nothing left to do."""
    async with transaction(ctx.pool) as conn:
        await payments.look_again_by(conn, payment_id, at=until)
    raise CreationOutcomePending(message, until=until)


async def _record_creation(
    ctx: StageContext, payment: Payment, answer: GatewayPayment, *, adopted: bool = False
) -> Payment:
    """Store what the gateway opened for this payment (in answer to us, or found on its list: ``adopted``)
    and schedule its first poll."""
    first_poll = datetime.now(UTC) + timedelta(seconds=ctx.settings.payments_poll_first_delay)
    async with transaction(ctx.pool) as conn:
        updated = await payments.record_creation(
            conn,
            payment.id,
            PaymentUpdate(
                provider_payment_id=answer.payment_id,
                gateway_status=answer.status,
                pay_address=answer.pay_address,
                payin_extra_id=answer.payin_extra_id,
                pay_amount=answer.pay_amount,
                pay_currency=answer.pay_currency,
                network=answer.network,
                expires_at=answer.expiration_estimate_date,
                gateway_updated_at=answer.updated_at,
                create_claimed_until=None,
                next_poll_at=first_poll,
            ),
        )
        if updated is None:  # created already: cannot happen while we held the lease; never overwrite
            current = await payments.get_payment(conn, payment.id)
            assert current is not None
            log.error("payment_created_twice", payment_id=payment.id, orphan=answer.payment_id)
            return current
        await payments.add_event(
            conn,
            payment.id,
            source="create",
            from_status=None,
            to_status=updated.status.value,
            gateway_status=answer.status,
            detail={"provider_payment_id": answer.payment_id, "pay_amount": answer.pay_amount, "adopted": adopted},
        )
        await announce.payment_status(conn, updated)
    log.info(
        "payment_created",
        payment_id=payment.id,
        provider_payment_id=answer.payment_id,
        amount_usd=format_usd(payment.amount_usd),
        currency=payment.currency_code,
        adopted=adopted,
    )
    return updated


async def _record_request(ctx: StageContext, request: CreatePaymentRequest) -> tuple[Payment, bool]:
    """The request's payment, and whether it was recorded just now with its creation lease taken."""
    try:
        return await _record_request_once(ctx, request)
    except UnknownCurrency:
        # A fresh deploy or a coin switched on since the last sync: refresh once (bounded), then look again.
        await ctx.catalogue.refresh_for(ctx.pool, ctx.gateway, request.currency_code)
    return await _record_request_once(ctx, request)


async def _record_request_once(ctx: StageContext, request: CreatePaymentRequest) -> tuple[Payment, bool]:
    """The payment for this request_id: found (a replay) or recorded now, after the checks the door also makes.

    A payment recorded now is born with its creation lease taken by this caller (True); a replay's is not."""
    fingerprint = deposit_fingerprint(request)
    async with transaction(ctx.pool) as conn:
        await rejections.lock_request_id(conn, RequestKind.DEPOSIT, request.request_id)
        existing = await payments.find_by_request_id(conn, request.request_id)
        if existing is None:
            await refuse_if_refused_before(conn, RequestKind.DEPOSIT, request.request_id, fingerprint)
            await validate_new_deposit(conn, ctx.settings, request)
            existing = await payments.insert_payment(
                conn,
                payment_id=new_payment_id(),
                request_id=request.request_id,
                fingerprint=fingerprint,
                user_id=request.user_id,
                amount_usd=request.amount_usd,
                currency_code=request.currency_code,
                description=request.description,
                look_again_in=CREATION_LEASE_SECONDS,
                claim_seconds=CREATION_LEASE_SECONDS,
            )
            assert existing is not None  # the lock is held: nobody else can have inserted it meanwhile
            return existing, True
    return same_request_or_refuse(existing, fingerprint), False


async def _record_rejection(ctx: StageContext, payment: Payment, exc: GatewayRejected) -> Payment:
    async with transaction(ctx.pool) as conn:
        current = await payments.get_payment(conn, payment.id, for_update=True)
        assert current is not None
        if current.created_at_gateway or current.status is not PaymentStatus.PENDING:
            # Our lease ran out and another attempt succeeded meanwhile: its payment stands.
            log.warning("late_gateway_rejection_ignored", payment_id=payment.id, code=exc.code)
            return current
        updated = await payments.update_payment(
            conn,
            payment.id,
            PaymentUpdate(
                status=PaymentStatus.FAILED,
                error_code=exc.code,
                error_message=exc.message[:500],
                create_claimed_until=None,
                next_poll_at=None,
            ),
        )
        await payments.add_event(
            conn,
            payment.id,
            source="create",
            from_status=payment.status.value,
            to_status=PaymentStatus.FAILED.value,
            detail={"code": exc.code, "message": exc.message[:500], "http_status": exc.http_status},
        )
        await announce.payment_status(conn, updated)
    log.warning("payment_rejected_by_gateway", payment_id=payment.id, code=exc.code, message=exc.message[:200])
    return updated
