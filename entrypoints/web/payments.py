"""A payment as the API shows it, and its deposit address as a QR code."""

from __future__ import annotations

from aiohttp import web

from domain.payments import Payment
from domain.qr import qr_svg
from entrypoints.web.http import json_response, path_id, qr_link_for, stage_context
from services.errors import PaymentNotFound
from services.views import payment_uri_for, payment_view
from storage import payments


async def _payment(request: web.Request) -> Payment | None:
    async with stage_context(request).pool.acquire() as conn:
        return await payments.get_payment(conn, path_id(request, "payment_id"))


async def get_payment(request: web.Request) -> web.Response:
    payment = await _payment(request)
    if payment is None:
        raise PaymentNotFound("no such payment")
    return json_response(payment_view(payment, qr_code_url=qr_link_for(request, payment.id)))


async def get_payment_qr(request: web.Request) -> web.Response:
    """The QR code; the bearer token or the signed link's ``expires`` and ``signature`` let it be read."""
    payment = await _payment(request)
    uri = payment_uri_for(payment) if payment else None
    if uri is None:
        raise PaymentNotFound("no deposit address for this payment yet")
    return web.Response(body=qr_svg(uri), content_type="image/svg+xml")
