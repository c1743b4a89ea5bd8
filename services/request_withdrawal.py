"""A user asks to withdraw: validate, quote fees, and hold the funds at once, or refuse and hold nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

import asyncpg
import structlog

from domain.currencies import Currency
from domain.errors import InvalidRequest
from domain.ids import new_withdrawal_id
from domain.ledger import withdrawal_hold_posting
from domain.money import format_usd
from domain.rejections import RequestKind
from domain.withdrawals import (
    FeeSchedule,
    Withdrawal,
    WithdrawalQuote,
    WithdrawalStatus,
    network_fee_in_usd,
    quote_withdrawal,
    validate_destination,
    withdrawal_fingerprint,
)
from gateway.errors import GatewayRejected
from services import announce
from services.commands import WithdrawalRequest
from services.context import StageContext
from services.errors import InsufficientFunds, RequestIdReused
from services.rejections import refuse_if_refused_before, withdrawal_request_fingerprint
from settings import Settings
from storage import currencies, ledger, rejections, withdrawals
from storage.db import transaction

log = structlog.get_logger(__name__)

_KIND = RequestKind.WITHDRAWAL


def fee_schedule(settings: Settings, currency_code: str) -> FeeSchedule:
    network_fee = settings.payments_withdrawal_network_fees.get(
        currency_code, settings.payments_withdrawal_network_fee_usd
    )
    return FeeSchedule(
        network_fee_usd=network_fee,
        service_fee_fixed_usd=settings.payments_withdrawal_service_fee_usd,
        service_fee_percent=settings.payments_withdrawal_service_fee_percent,
        min_amount_usd=settings.payments_withdrawal_min_usd,
        max_amount_usd=settings.payments_withdrawal_max_usd,
    )


async def gateway_network_fee_usd(ctx: StageContext, currency_code: str, amount_usd: Decimal) -> Decimal:
    """NOWPayments' payout fee for sending ``amount_usd`` worth of the coin, converted to USD."""
    try:
        amount_crypto = await ctx.gateway.estimate(amount_usd, "usd", currency_code)
        fee_crypto = await ctx.gateway.payout_fee(currency_code, amount_crypto)
    except GatewayRejected as exc:
        raise InvalidRequest(
            f"payouts in {currency_code!r} are not available: {exc.message[:200]}", field="currency_code"
        ) from None
    return network_fee_in_usd(fee_crypto=fee_crypto, amount_crypto=amount_crypto, amount_usd=amount_usd)


@dataclass(frozen=True)
class RequestResult:
    withdrawal: Withdrawal
    created: bool  # False for a replay of the same request_id


async def request_withdrawal(ctx: StageContext, request: WithdrawalRequest) -> RequestResult:
    """Idempotent on ``request.request_id``. The hold commits with the request or not at all.

    With payouts on, the network fee is the gateway's own payout fee for this amount, in USD.
    """
    async with ctx.pool.acquire() as conn:
        currency = await currencies.get_currency(conn, request.currency_code)
        existing = await withdrawals.find_by_request_id(conn, request.request_id)
        if existing is None:
            await refuse_if_refused_before(conn, _KIND, request.request_id, withdrawal_request_fingerprint(request))
    if currency is None:
        raise InvalidRequest(f"unknown currency {request.currency_code!r}", field="currency_code")
    destination = _destination(request, currency)
    if existing is not None:
        return _replay(existing, destination.fingerprint)
    if not currency.active:
        raise InvalidRequest(f"currency {currency.code!r} is not active", field="currency_code")
    fees = fee_schedule(ctx.settings, currency.code)
    if ctx.settings.payouts_enabled:
        fees = replace(fees, network_fee_usd=await gateway_network_fee_usd(ctx, currency.code, request.amount_usd))
    result = await _record_and_hold(ctx, request, destination, quote_withdrawal(request.amount_usd, fees))
    if result.created:
        log.info(
            "withdrawal_requested",
            withdrawal_id=result.withdrawal.id,
            user_id=request.user_id,
            amount_usd=format_usd(result.withdrawal.amount_usd),
            currency=currency.code,
        )
    return result


@dataclass(frozen=True)
class _Destination:
    currency_code: str
    address: str
    extra_id: str | None
    fingerprint: str


def _destination(request: WithdrawalRequest, currency: Currency) -> _Destination:
    """The checked address and memo, and the fingerprint a replay of this request must match."""
    address, extra_id = validate_destination(
        request.wallet_address,
        request.extra_id,
        wallet_regex=currency.wallet_regex,
        extra_id_required=currency.extra_id_required,
        extra_id_regex=currency.extra_id_regex,
        currency=currency.code,
    )
    fingerprint = withdrawal_fingerprint(
        user_id=request.user_id,
        amount_usd=request.amount_usd,
        currency_code=currency.code,
        wallet_address=address,
        extra_id=extra_id,
    )
    return _Destination(currency.code, address, extra_id, fingerprint)


async def _record_and_hold(
    ctx: StageContext, request: WithdrawalRequest, destination: _Destination, quote: WithdrawalQuote
) -> RequestResult:
    """Insert the withdrawal and hold its amount in one transaction (or find the concurrent twin's)."""
    async with transaction(ctx.pool) as conn:
        await rejections.lock_request_id(conn, _KIND, request.request_id)  # against a worker recording a refusal
        await refuse_if_refused_before(conn, _KIND, request.request_id, withdrawal_request_fingerprint(request))
        created = await withdrawals.insert_withdrawal(
            conn,
            withdrawal_id=new_withdrawal_id(),
            request_id=request.request_id,
            fingerprint=destination.fingerprint,
            user_id=request.user_id,
            currency_code=destination.currency_code,
            wallet_address=destination.address,
            extra_id=destination.extra_id,
            quote=quote,
        )
        if created is None:  # a concurrent twin inserted it first
            existing = await withdrawals.find_by_request_id(conn, request.request_id)
            assert existing is not None
            return _replay(existing, destination.fingerprint)
        await _hold(conn, created.id, request.user_id, quote.amount_usd)
        await withdrawals.add_event(
            conn,
            created.id,
            from_status=None,
            to_status=WithdrawalStatus.PENDING.value,
            actor=f"user:{request.user_id}",
            note="requested",
            detail={"total_fee_usd": quote.total_fee_usd, "final_amount_usd": quote.final_amount_usd},
        )
        await announce.withdrawal_moved(conn, created)
    return RequestResult(created, created=True)


async def _hold(conn: asyncpg.Connection, withdrawal_id: str, user_id: str, amount_usd: Decimal) -> None:
    try:
        async with conn.transaction():  # savepoint: a refused hold must not look like a crash
            await ledger.post(
                conn, withdrawal_hold_posting(withdrawal_id=withdrawal_id, user_id=user_id, amount_usd=amount_usd)
            )
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name != "balance_not_negative":
            raise
        raise InsufficientFunds(
            f"insufficient funds: the available balance does not cover {format_usd(amount_usd)}",
            field="amount_usd",
        ) from None


def _replay(existing: Withdrawal, fingerprint: str) -> RequestResult:
    if existing.request_fingerprint != fingerprint:
        raise RequestIdReused(
            f"request_id {existing.request_id!r} was already used for withdrawal {existing.id}"
            " with different arguments",
            field="request_id",
        )
    return RequestResult(existing, created=False)
