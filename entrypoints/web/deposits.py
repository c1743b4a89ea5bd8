"""Deposit requests: checked at the door and queued, and found again by the caller's request id."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.payments import Payment
from domain.rejections import RequestKind
from entrypoints.web.http import json_body, json_response, path_id, qr_link_for, stage_context
from services.admit_deposit import admit_deposit
from services.answers import DepositQueued
from services.commands import CreatePaymentRequest
from services.errors import PaymentNotFound, RequestAlreadyRefused
from services.views import payment_view, refused_replay_view, rejection_view
from storage import payments, rejections
from workers.enqueue import ActorEnqueuer


async def post_deposit(request: web.Request) -> web.Response:
    """Everything checkable without the gateway is checked first: a refusal is a 4xx and nothing is queued.

    A replay is answered with what the request_id already has (200, nothing queued): its payment, or
    the worker's refusal. A new request is queued: 202.
    """
    deposit = CreatePaymentRequest.from_body(await json_body(request))
    ctx = stage_context(request)
    try:
        existing = await admit_deposit(ctx, deposit)
    except RequestAlreadyRefused as exc:
        return json_response(rejection_view(exc.rejection))
    if existing is not None:
        return json_response(await _payment_answer(request, existing))
    enqueue = ctx.enqueue
    assert isinstance(enqueue, ActorEnqueuer)
    message = await enqueue.send("create_payment", **deposit.model_dump(mode="json"))
    queued = DepositQueued(request_id=deposit.request_id, message_id=message.message_id, status="queued")
    return json_response(queued.model_dump(mode="json"), 202)


async def get_deposit(request: web.Request) -> web.Response:
    """The payment made for this request_id, or the refusal recorded for it, or 404 while it is still queued."""
    request_id = path_id(request, "request_id")
    async with stage_context(request).pool.acquire() as conn:
        payment = await payments.find_by_request_id(conn, request_id)
        rejection = None if payment else await rejections.find_rejection(conn, RequestKind.DEPOSIT, request_id)
    if payment is not None:
        return json_response(await _payment_answer(request, payment))
    if rejection is not None:
        return json_response(rejection_view(rejection))
    raise PaymentNotFound("no payment for this request_id (yet)")


async def _payment_answer(request: web.Request, payment: Payment) -> dict[str, Any]:
    """The payment's view; if a request under its request_id with other arguments was refused, that is said too."""
    async with stage_context(request).pool.acquire() as conn:
        rejection = await rejections.find_rejection(conn, RequestKind.DEPOSIT, payment.request_id)
    replay = refused_replay_view(rejection) if rejection is not None else None
    return payment_view(payment, qr_code_url=qr_link_for(request, payment.id), refused_replay=replay)
