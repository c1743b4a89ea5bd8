"""Everything about a deposit request that can be checked without the gateway, before it is queued.

``POST /v1/deposits`` asks `admit_deposit` first, so a request the worker would refuse is refused at
the door (a 4xx, nothing queued or written), and a replay is answered with what its request_id
already has. The worker applies the same checks (`validate_new_deposit`) when it records the request.
"""

from __future__ import annotations

import asyncpg

from domain.errors import InvalidRequest
from domain.money import format_usd
from domain.payments import Payment
from domain.rejections import RequestKind
from services.commands import CreatePaymentRequest
from services.context import StageContext
from services.errors import RequestIdReused, UnknownCurrency
from services.rejections import deposit_fingerprint, refuse_if_refused_before
from settings import Settings
from storage import currencies, payments


async def admit_deposit(ctx: StageContext, request: CreatePaymentRequest) -> Payment | None:
    """The payment already made for this request (a replay), or None when it may be queued.

    Raises `RequestIdReused` (the request_id answers other arguments), `RequestAlreadyRefused` (it was
    refused before), or `InvalidRequest` (amount out of bounds, currency unknown or switched off).
    """
    fingerprint = deposit_fingerprint(request)
    async with ctx.pool.acquire() as conn:
        existing = await payments.find_by_request_id(conn, request.request_id)
        if existing is not None:
            return same_request_or_refuse(existing, fingerprint)
        await refuse_if_refused_before(conn, RequestKind.DEPOSIT, request.request_id, fingerprint)
        await validate_new_deposit(conn, ctx.settings, request)
    return None


def same_request_or_refuse(existing: Payment, fingerprint: str) -> Payment:
    if existing.request_fingerprint != fingerprint:
        raise RequestIdReused(
            f"request_id {existing.request_id!r} was already used for payment {existing.id} with different arguments",
            field="request_id",
        )
    return existing


async def validate_new_deposit(conn: asyncpg.Connection, settings: Settings, request: CreatePaymentRequest) -> None:
    """Currency known and active; amount within the deposit limits and the coin's own minimum."""
    currency = await currencies.get_currency(conn, request.currency_code)
    if currency is None:
        raise UnknownCurrency(f"unknown currency {request.currency_code!r}", field="currency_code")
    if not currency.active:
        raise InvalidRequest(f"currency {request.currency_code!r} is not active", field="currency_code")
    minimum = max(settings.payments_min_deposit_usd, currency.min_amount_usd or settings.payments_min_deposit_usd)
    if request.amount_usd < minimum:
        raise InvalidRequest(
            f"{format_usd(request.amount_usd)} is below the minimum deposit of {format_usd(minimum)}",
            field="amount_usd",
        )
    if request.amount_usd > settings.payments_max_deposit_usd:
        raise InvalidRequest(
            f"{format_usd(request.amount_usd)} is above the maximum deposit of "
            f"{format_usd(settings.payments_max_deposit_usd)}",
            field="amount_usd",
        )
