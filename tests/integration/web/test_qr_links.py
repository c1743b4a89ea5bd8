"""The payment view's qr_code_url works without the API token (an <img> cannot send one), for that payment
only and until it expires; a forged, foreign or expired link is a JSON 401/403."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.signed_links import QrLinkSigner
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from tests.integration.stack import API_TOKEN, Stack
from tests.integration.web.test_hostile_requests import assert_json_error


async def _get(stack: Stack, path: str, *, token: str | None = None) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with stack.http.get(stack.web_url + path, headers=headers) as response:
        body = await response.read()
        if response.content_type == "application/json":
            return response.status, await response.json(), response.content_type
        return response.status, body, response.content_type


async def _payment(stack: Stack, request_id: str) -> str:
    request = CreatePaymentRequest(
        request_id=request_id, user_id="u-qr", amount_usd=Decimal("20.00"), currency_code="btc"
    )
    return (await create_payment(stack.ctx, request)).id


async def test_the_signed_qr_link_opens_that_payments_qr_code_only(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        first, second = await _payment(stack, "qr-1"), await _payment(stack, "qr-2")
        _, view, _ = await _get(stack, f"/v1/payments/{first}", token=API_TOKEN)
        link = view["qr_code_url"]

        status, body, content_type = await _get(stack, link)
        assert status == 200 and content_type == "image/svg+xml" and b"<svg" in body[:300]
        # The bearer token still works alone.
        assert (await _get(stack, f"/v1/payments/{first}/qr.svg", token=API_TOKEN))[0] == 200

        query = link.partition("?")[2]
        status, body, _ = await _get(stack, f"/v1/payments/{second}/qr.svg?{query}")
        assert_json_error(status, body, 401, "invalid_link_signature")
        # The link opens the QR code, not the payment view nor anything else.
        for path in (f"/v1/payments/{first}", "/v1/users/u-qr/payments", "/v1/deposits/qr-1"):
            status, body, _ = await _get(stack, f"{path}?{query}")
            assert_json_error(status, body, 401, "unauthorized")
        # Neither token nor link; a forged or truncated signature.
        assert_json_error(*(await _get(stack, f"/v1/payments/{first}/qr.svg"))[:2], 401, "unauthorized")
        expires = query.split("&")[0].partition("=")[2]
        for forged in (
            f"expires={expires}&signature={'0' * 64}",
            f"expires={int(expires) + 60}&signature=x",
            "signature=",
        ):
            status, body, _ = await _get(stack, f"/v1/payments/{first}/qr.svg?{forged}")
            assert_json_error(status, body, 401, "invalid_link_signature")


async def test_an_expired_qr_link_is_a_403(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment_id = await _payment(stack, "qr-old")
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        query = QrLinkSigner.from_secret(API_TOKEN).query(payment_id, two_hours_ago)
        status, body, _ = await _get(stack, f"/v1/payments/{payment_id}/qr.svg?{query}")
        assert_json_error(status, body, 403, "link_expired")
        # The same link made by another deployment (another API token) is no link at all.
        foreign = QrLinkSigner.from_secret("another-token").query(payment_id, datetime.now(UTC))
        status, body, _ = await _get(stack, f"/v1/payments/{payment_id}/qr.svg?{foreign}")
        assert_json_error(status, body, 401, "invalid_link_signature")
