"""Requests refused for good: the earlier refusal is the answer to a replay, and a worker's refusal is recorded.

A refusal at the HTTP door writes nothing (the caller has its answer). A refusal by a worker (a raw
message, or a currency switched off after the door let the request through) is recorded under the
message's request_id before the message is dead-lettered, so ``GET /v1/deposits/{request_id}`` and
``GET /v1/withdrawals/by-request/{request_id}`` can answer ``rejected``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from pydantic import TypeAdapter, ValidationError

from domain.errors import InvalidRequest
from domain.payments import request_fingerprint
from domain.rejections import Rejection, RequestKind
from domain.withdrawals import withdrawal_fingerprint
from services import announce
from services.commands import CreatePaymentRequest, WithdrawalRequest
from services.context import StageContext
from services.errors import RequestAlreadyRefused, RequestIdReused
from services.validation import Reference
from storage import payments, rejections, withdrawals
from storage.db import transaction

log = structlog.get_logger(__name__)

_REFERENCE: TypeAdapter[str] = TypeAdapter(Reference)


def deposit_fingerprint(request: CreatePaymentRequest) -> str:
    return request_fingerprint(
        user_id=request.user_id,
        amount_usd=request.amount_usd,
        currency_code=request.currency_code,
        description=request.description,
    )


def withdrawal_request_fingerprint(request: WithdrawalRequest) -> str:
    """As the withdrawal's own fingerprint, over the address and memo as sent (stripped), before any checks."""
    return withdrawal_fingerprint(
        user_id=request.user_id,
        amount_usd=request.amount_usd,
        currency_code=request.currency_code,
        wallet_address=request.wallet_address.strip(),
        extra_id=(request.extra_id or "").strip() or None,
    )


async def refuse_if_refused_before(
    conn: asyncpg.Connection, kind: RequestKind, request_id: str, fingerprint: str
) -> None:
    """Raise the earlier refusal of ``request_id`` again (or `RequestIdReused` if it was for other arguments)."""
    rejection = await rejections.find_rejection(conn, kind, request_id)
    if rejection is None:
        return
    if rejection.matches(fingerprint):
        raise RequestAlreadyRefused(rejection)
    raise RequestIdReused(
        f"request_id {request_id!r} was already used for a request with different arguments, refused at "
        f"{rejection.rejected_at.isoformat()}: {rejection.reason}",
        field="request_id",
    )


def readable_request_id(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """The message's request_id if it is one we could have stored (by name, or first positional), else None."""
    value = kwargs.get("request_id") if isinstance(kwargs, Mapping) else None
    if value is None and isinstance(args, Sequence) and args:
        value = args[0]
    try:
        return _REFERENCE.validate_python(value, strict=True)
    except ValidationError:
        return None


def _message_fingerprint(kind: RequestKind, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    try:
        if kind is RequestKind.DEPOSIT:
            return deposit_fingerprint(CreatePaymentRequest.from_message(args, kwargs))
        return withdrawal_request_fingerprint(WithdrawalRequest.from_message(args, kwargs))
    except InvalidRequest:
        return None


async def _answered_with(conn: asyncpg.Connection, kind: RequestKind, request_id: str) -> str | None:
    """The fingerprint of the payment or withdrawal already made for ``request_id``, if any."""
    if kind is RequestKind.DEPOSIT:
        payment = await payments.find_by_request_id(conn, request_id)
        return payment.request_fingerprint if payment else None
    withdrawal = await withdrawals.find_by_request_id(conn, request_id)
    return withdrawal.request_fingerprint if withdrawal else None


def error_code(exc: InvalidRequest) -> str:
    """``RequestIdReused`` → ``request_id_reused``: the code the error table gives the same class."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


async def record_refusal(
    ctx: StageContext, kind: RequestKind, args: Sequence[Any], kwargs: Mapping[str, Any], exc: InvalidRequest
) -> Rejection | None:
    """Record a worker's refusal of a request message (idempotent: the first refusal stays the answer).

    Nothing is recorded when the message has no readable request_id, or when the same arguments were
    already accepted under it (a duplicate delivery refused only because things changed since).
    """
    request_id = readable_request_id(args, kwargs)
    if request_id is None:
        return None
    fingerprint = _message_fingerprint(kind, args, kwargs)
    async with transaction(ctx.pool) as conn:
        await rejections.lock_request_id(conn, kind, request_id)
        answered = await _answered_with(conn, kind, request_id)
        if answered is not None and answered == fingerprint:
            return None
        rejection = await rejections.record_rejection(
            conn,
            kind=kind,
            request_id=request_id,
            fingerprint=fingerprint,
            error=error_code(exc),
            reason=str(exc),
            field=exc.field,
        )
        await announce.request_refused(conn, rejection, withdrawal=kind is RequestKind.WITHDRAWAL)
    log.info("request_rejected", kind=kind.value, request_id=request_id, error=rejection.error, reason=rejection.reason)
    return rejection
