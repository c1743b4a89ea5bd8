"""The web process: NOWPayments IPN endpoint, JSON API, health and metrics (aiohttp on $PORT)."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from domain.errors import InvalidRequest, InvalidTransition
from domain.qr import qr_svg
from domain.withdrawals import Withdrawal
from entrypoints.web.metrics import render_metrics
from entrypoints.web.presenters import (
    balance_view,
    history_item_view,
    payment_uri_for,
    payment_view,
    withdrawal_event_view,
    withdrawal_view,
)
from gateway.errors import GatewayProtocolError, GatewayTransientError, InvalidSignature
from gateway.models import GatewayPayment, GatewayPayout
from gateway.signature import verify_ipn
from services.apply_status import UnknownPayment, apply_gateway_status
from services.commands import CreatePaymentRequest, WithdrawalRequest
from services.context import StageContext, gateway_from_settings
from services.decide_withdrawal import (
    WithdrawalNotFound,
    approve_withdrawal,
    cancel_withdrawal,
    complete_withdrawal_manually,
    reject_withdrawal,
)
from services.process_withdrawal import apply_payout_status
from services.request_withdrawal import InsufficientFunds, request_withdrawal
from settings import IPN_PATH, PAYOUT_IPN_PATH, Settings
from storage import ledger, payments, withdrawals
from storage.db import create_pool
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.enqueue import ActorEnqueuer

log = structlog.get_logger(__name__)


@dataclass
class WebRuntime:
    """Filled at startup on the server's loop (pool, gateway client, broker), or given by a test."""

    ctx: StageContext | None = None
    health_checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = field(default_factory=list)


RUNTIME = web.AppKey("runtime", WebRuntime)

MAX_IPN_BODY = 64 * 1024
MAX_PAGE = 100


def _ctx(request: web.Request) -> StageContext:
    ctx = request.app[RUNTIME].ctx
    assert ctx is not None, "web runtime not started"
    return ctx


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": code, "message": message}, status=status)


OPERATOR_PREFIX = "/v1/operator/"


def _bearer_matches(request: web.Request, token: SecretStr | None) -> bool:
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").encode() if header.startswith("Bearer ") else b""
    return token is not None and hmac.compare_digest(given, token.get_secret_value().encode())


@web.middleware
async def require_api_token(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Bearer tokens, compared in constant time: OPERATOR_TOKEN for /v1/operator/, API_TOKEN for the rest of /v1/."""
    if request.path.startswith("/v1/"):
        settings = _ctx(request).settings
        token = settings.operator_token if request.path.startswith(OPERATOR_PREFIX) else settings.api_token
        if not _bearer_matches(request, token):
            return _error(401, "unauthorized", "missing or invalid bearer token")
    try:
        return await handler(request)
    except InvalidTransition as exc:
        return _error(409, "invalid_transition", str(exc))
    except InsufficientFunds as exc:
        return _error(409, "insufficient_funds", str(exc))
    except WithdrawalNotFound as exc:
        return _error(404, "not_found", str(exc))
    except InvalidRequest as exc:
        return _error(400, "invalid_request", str(exc))
    except GatewayTransientError:
        return _error(503, "gateway_unavailable", "NOWPayments did not answer; nothing was changed, try again")


async def _verified_ipn_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The IPN body once its signature checks out, or the 4xx answer to send instead."""
    secret = _ctx(request).settings.nowpayments_ipn_secret
    if request.content_length is not None and request.content_length > MAX_IPN_BODY:
        return _error(413, "too_large", "IPN body too large")
    raw = await request.content.read(MAX_IPN_BODY + 1)
    if len(raw) > MAX_IPN_BODY:
        return _error(413, "too_large", "IPN body too large")
    if secret is None:
        return _error(503, "ipn_disabled", "no IPN secret is configured")
    try:
        return verify_ipn(raw, request.headers.get("x-nowpayments-sig"), secret)
    except InvalidSignature as exc:
        log.warning("ipn_rejected", path=request.path, reason=exc.reason, remote=request.remote)
        return _error(401, "invalid_signature", exc.reason)


async def ipn_nowpayments(request: web.Request) -> web.Response:
    """Verify the signature, then apply the status through the same path as poll-status."""
    ctx = _ctx(request)
    body = await _verified_ipn_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        snapshot = GatewayPayment.from_wire(body)
    except (GatewayProtocolError, ValueError, TypeError) as exc:
        log.warning("ipn_malformed", detail=str(exc)[:200])
        return _error(400, "malformed", "IPN body is not a payment status")
    try:
        result = await apply_gateway_status(ctx, snapshot, source="ipn")
    except UnknownPayment as exc:
        log.warning("ipn_unknown_payment", provider_payment_id=snapshot.payment_id, order_id=snapshot.order_id)
        return _error(404, "unknown_payment", exc.reason)
    return _json({"status": "ok", "payment_status": result.payment.status.value})


async def ipn_nowpayments_payout(request: web.Request) -> web.Response:
    """Payout IPN: verify, then apply through the same path as the payout status poll."""
    body = await _verified_ipn_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        payout = GatewayPayout.from_wire(body)
    except (GatewayProtocolError, ValueError, TypeError) as exc:
        log.warning("payout_ipn_malformed", detail=str(exc)[:200])
        return _error(400, "malformed", "IPN body is not a payout status")
    try:
        withdrawal = await apply_payout_status(_ctx(request), payout, source="ipn")
    except InvalidRequest as exc:
        log.warning("payout_ipn_unknown", payout_id=payout.payout_id)
        return _error(404, "unknown_payout", exc.reason)
    return _json({"status": "ok", "withdrawal_status": withdrawal.status.value})


async def healthz(request: web.Request) -> web.Response:
    failures = {}
    for name, check in request.app[RUNTIME].health_checks:
        try:
            await check()
        except Exception as exc:  # a health check reports every failure, whatever its kind
            failures[name] = type(exc).__name__
    if failures:
        return _json({"status": "unhealthy", "failures": failures}, status=503)
    return _json({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    text = await render_metrics(_ctx(request).pool)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def get_payment(request: web.Request) -> web.Response:
    async with _ctx(request).pool.acquire() as conn:
        payment = await payments.get_payment(conn, request.match_info["payment_id"])
    if payment is None:
        return _error(404, "not_found", "no such payment")
    return _json(payment_view(payment))


async def get_payment_qr(request: web.Request) -> web.Response:
    async with _ctx(request).pool.acquire() as conn:
        payment = await payments.get_payment(conn, request.match_info["payment_id"])
    uri = payment_uri_for(payment) if payment else None
    if uri is None:
        return _error(404, "not_found", "no deposit address for this payment yet")
    return web.Response(body=qr_svg(uri), content_type="image/svg+xml")


async def get_deposit(request: web.Request) -> web.Response:
    async with _ctx(request).pool.acquire() as conn:
        payment = await payments.find_by_request_id(conn, request.match_info["request_id"])
    if payment is None:
        return _error(404, "not_found", "no payment for this request_id (yet)")
    return _json(payment_view(payment))


async def post_deposit(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "invalid_request", "body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "invalid_request", "body must be a JSON object")
    try:
        deposit = CreatePaymentRequest.from_message((), body)
    except InvalidRequest as exc:
        return _error(400, "invalid_request", str(exc))
    enqueue = _ctx(request).enqueue
    assert isinstance(enqueue, ActorEnqueuer)
    message = await enqueue.send(
        "create_payment",
        request_id=deposit.request_id,
        user_id=deposit.user_id,
        amount_usd=format(deposit.amount_usd, "f"),
        currency_code=deposit.currency_code,
        description=deposit.description,
    )
    return _json({"request_id": deposit.request_id, "message_id": message.message_id, "status": "queued"}, 202)


async def get_balance(request: web.Request) -> web.Response:
    async with _ctx(request).pool.acquire() as conn:
        balance = await ledger.user_balance(conn, request.match_info["user_id"])
    return _json(balance_view(balance))


async def get_transactions(request: web.Request) -> web.Response:
    try:
        limit = min(MAX_PAGE, max(1, int(request.query.get("limit", "20"))))
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        return _error(400, "invalid_request", "limit and before must be integers")
    async with _ctx(request).pool.acquire() as conn:
        items = await ledger.user_history(conn, request.match_info["user_id"], limit=limit, before_entry_id=before)
    page = [history_item_view(item) for item in items]
    next_before = items[-1].entry_id if len(items) == limit else None
    return _json({"items": page, "next_before": next_before})


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    return body


async def _withdrawal_answer(request: web.Request, withdrawal: Withdrawal, status: int = 200) -> web.Response:
    async with _ctx(request).pool.acquire() as conn:
        events = await withdrawals.list_events(conn, withdrawal.id)
    return _json({**withdrawal_view(withdrawal), "events": [withdrawal_event_view(e) for e in events]}, status)


async def post_withdrawal(request: web.Request) -> web.Response:
    """Validate, quote and hold at once: 201 with the withdrawal, or a clear 4xx and nothing held."""
    result = await request_withdrawal(_ctx(request), WithdrawalRequest.from_message((), await _json_object(request)))
    return await _withdrawal_answer(request, result.withdrawal, 201 if result.created else 200)


async def get_withdrawal(request: web.Request) -> web.Response:
    async with _ctx(request).pool.acquire() as conn:
        withdrawal = await withdrawals.get_withdrawal(conn, request.match_info["withdrawal_id"])
    if withdrawal is None:
        return _error(404, "not_found", "no such withdrawal")
    return await _withdrawal_answer(request, withdrawal)


async def post_withdrawal_cancel(request: web.Request) -> web.Response:
    body = await _json_object(request) if request.can_read_body else {}
    user_id = body.get("user_id")
    withdrawal = await cancel_withdrawal(
        _ctx(request),
        request.match_info["withdrawal_id"],
        user_id=str(user_id) if user_id is not None else None,
        note=str(body.get("note") or ""),
    )
    return await _withdrawal_answer(request, withdrawal)


async def post_operator_decision(request: web.Request) -> web.Response:
    body = await _json_object(request)
    operator = str(body.get("operator") or "").strip()
    if not operator:
        raise InvalidRequest("operator (who decides) is required", field="operator")
    withdrawal_id, action, note = request.match_info["withdrawal_id"], request.match_info["action"], body.get("note")
    ctx = _ctx(request)
    if action == "approve":
        withdrawal = await approve_withdrawal(ctx, withdrawal_id, operator=operator, note=str(note or ""))
    elif action == "reject":
        withdrawal = await reject_withdrawal(ctx, withdrawal_id, operator=operator, note=str(note or ""))
    elif action == "complete":
        withdrawal = await complete_withdrawal_manually(
            ctx, withdrawal_id, tx_hash=str(body.get("tx_hash") or ""), operator=operator, note=str(note or "")
        )
    else:
        return _error(404, "not_found", f"no operator action {action!r}")
    return await _withdrawal_answer(request, withdrawal)


def create_web_app(runtime: WebRuntime) -> web.Application:
    app = web.Application(middlewares=[require_api_token], client_max_size=256 * 1024)
    app[RUNTIME] = runtime
    app.router.add_post(IPN_PATH, ipn_nowpayments)
    app.router.add_post(PAYOUT_IPN_PATH, ipn_nowpayments_payout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/payments/{payment_id}", get_payment)
    app.router.add_get("/v1/payments/{payment_id}/qr.svg", get_payment_qr)
    app.router.add_post("/v1/deposits", post_deposit)
    app.router.add_get("/v1/deposits/{request_id}", get_deposit)
    app.router.add_get("/v1/users/{user_id}/balance", get_balance)
    app.router.add_get("/v1/users/{user_id}/transactions", get_transactions)
    app.router.add_post("/v1/withdrawals", post_withdrawal)
    app.router.add_get("/v1/withdrawals/{withdrawal_id}", get_withdrawal)
    app.router.add_post("/v1/withdrawals/{withdrawal_id}/cancel", post_withdrawal_cancel)
    app.router.add_post(OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/{action}", post_operator_decision)
    return app


def create_process_app(settings: Settings) -> web.Application:
    """The app `payments web` serves: its resources open on the server's own event loop."""
    runtime = WebRuntime()
    app = create_web_app(runtime)

    async def resources(_: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url.get_secret_value(), min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        broker = build_broker(settings)
        declare_actors(broker)
        gateway = gateway_from_settings(settings)
        runtime.ctx = StageContext(pool=pool, gateway=gateway, settings=settings, enqueue=ActorEnqueuer(broker))

        async def database() -> None:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

        async def redis() -> None:
            await asyncio.to_thread(broker.client.ping)

        runtime.health_checks[:] = [("postgres", database), ("redis", redis)]
        try:
            yield
        finally:
            await gateway.close()
            await pool.close()
            broker.close()

    app.cleanup_ctx.append(resources)
    return app


def serve(settings: Settings) -> None:
    settings.require("api_token", "nowpayments_ipn_secret")
    web.run_app(
        create_process_app(settings),
        host="0.0.0.0",  # noqa: S104 - the platform routes $PORT to us; it must listen on all interfaces
        port=settings.port,
        shutdown_timeout=20,
        print=None,
        access_log=None,
    )
