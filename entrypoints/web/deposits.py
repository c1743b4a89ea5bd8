"""Deposit requests: queue the creation of a payment, and find it by the caller's request id."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import json_body, json_response, path_id, stage_context
from entrypoints.web.presenters import payment_view
from services.commands import CreatePaymentRequest
from services.errors import PaymentNotFound
from storage import payments
from workers.enqueue import ActorEnqueuer


async def post_deposit(request: web.Request) -> web.Response:
    """Validate with the message's own model and enqueue create_payment: 202, or a 400 and nothing queued."""
    deposit = CreatePaymentRequest.from_body(await json_body(request))
    enqueue = stage_context(request).enqueue
    assert isinstance(enqueue, ActorEnqueuer)
    message = await enqueue.send("create_payment", **deposit.model_dump(mode="json"))
    return json_response({"request_id": deposit.request_id, "message_id": message.message_id, "status": "queued"}, 202)


async def get_deposit(request: web.Request) -> web.Response:
    async with stage_context(request).pool.acquire() as conn:
        payment = await payments.find_by_request_id(conn, path_id(request, "request_id"))
    if payment is None:
        raise PaymentNotFound("no payment for this request_id (yet)")
    return json_response(payment_view(payment))
