"""NOWPayments' callbacks (IPN): verify the signature, then apply through the same path as the polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web

from entrypoints.web.http import RUNTIME, json_response, read_body, stage_context
from gateway.errors import (
    CallbacksDisabled,
    GatewayProtocolError,
    InvalidSignature,
    MalformedCallback,
)
from gateway.models import GatewayPayment, GatewayPayout
from gateway.signature import verify_ipn
from services.answers import PaymentIpnAccepted, PayoutIpnAccepted
from services.apply_status import apply_gateway_status
from services.errors import UnknownPayment, UnknownPayout
from services.process_withdrawal import apply_payout_status

log = structlog.get_logger(__name__)

MAX_IPN_BODY = 64 * 1024
T = TypeVar("T")


async def _verified_body(request: web.Request) -> dict[str, Any]:
    """The IPN body once its signature checks out; raises a `CallbackRefused` otherwise."""
    secret = stage_context(request).settings.nowpayments_ipn_secret
    raw = await read_body(request, limit=MAX_IPN_BODY)
    if secret is None:
        raise CallbacksDisabled("no IPN secret is configured")
    try:
        return verify_ipn(raw, request.headers.get("x-nowpayments-sig"), secret)
    except InvalidSignature as exc:
        held_back = request.app[RUNTIME].ipn_rejection_log.spend()
        if held_back is not None:
            log.warning(
                "ipn_rejected", path=request.path, reason=exc.reason, remote=request.remote, held_back=held_back
            )
        raise


async def _verified_news(request: web.Request, parse: Callable[[dict[str, Any]], T], what: str) -> T:
    """The verified body read as ``what`` (a payment or payout status), or a `MalformedCallback`."""
    body = await _verified_body(request)
    try:
        return parse(body)
    except (GatewayProtocolError, ValueError, TypeError) as exc:
        log.warning("ipn_malformed", what=what, path=request.path, detail=str(exc)[:200])
        raise MalformedCallback(f"IPN body is not a {what}") from None


async def ipn_payment(request: web.Request) -> web.Response:
    """Payment IPN: verify, then apply the status through the same path as poll-status."""
    snapshot = await _verified_news(request, GatewayPayment.from_wire, "payment status")
    try:
        result = await apply_gateway_status(stage_context(request), snapshot, source="ipn")
    except UnknownPayment:
        log.warning("ipn_unknown_payment", provider_payment_id=snapshot.payment_id, order_id=snapshot.order_id)
        raise
    return json_response(
        PaymentIpnAccepted(status="ok", payment_status=result.payment.status).model_dump(mode="json")
    )


async def ipn_payout(request: web.Request) -> web.Response:
    """Payout IPN: verify, then apply through the same path as the payout status poll."""
    payout = await _verified_news(request, GatewayPayout.from_wire, "payout status")
    try:
        withdrawal = await apply_payout_status(stage_context(request), payout, source="ipn")
    except UnknownPayout:
        log.warning("payout_ipn_unknown", payout_id=payout.payout_id)
        raise
    return json_response(
        PayoutIpnAccepted(status="ok", withdrawal_status=withdrawal.status).model_dump(mode="json")
    )
