"""GET /openapi.json: a valid OpenAPI 3.1 document of every route, and the app answers as it says."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

from openapi_spec_validator import validate

from entrypoints.web.routes import ROUTES
from services.commands import CreatePaymentRequest, WithdrawalRequest
from services.create_payment import create_payment
from tests.integration.stack import API_TOKEN, OPERATOR_TOKEN, Stack
from tests.integration.web.openapi_fuzz import fuzz_api

# Per operation and generation mode: the whole fuzz stays well under a minute. FUZZ_MAX_EXAMPLES digs deeper by hand.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))


async def _document(stack: Stack) -> dict:
    async with stack.http.get(stack.web_url + "/openapi.json") as response:  # no token needed
        assert response.status == 200 and response.content_type == "application/json"
        return await response.json()


async def test_the_document_is_valid_openapi_3_1_and_lists_every_route(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        document = await _document(stack)
        validate(document)  # raises on anything OpenAPI 3.1 does not allow
        assert document["openapi"] == "3.1.0"
        served = {
            (resource.canonical, route.method.lower())
            for resource in stack._runner.app.router.resources()  # type: ignore[union-attr]
            for route in resource
            if route.method != "HEAD"
        }
        described = {(path, method) for path, item in document["paths"].items() for method in item}
        assert served == described == {(r.path, r.method.lower()) for r in ROUTES}

        lists = document["paths"]["/v1/users/{user_id}/payments"]["get"]
        assert {p["name"] for p in lists["parameters"]} == {"user_id", "limit", "cursor", "status"}
        status = next(p for p in lists["parameters"] if p["name"] == "status")["schema"]
        assert document["components"]["schemas"]["PaymentStatus"]["enum"][0] == "pending"
        assert status["$ref"].endswith("/PaymentStatus")
        body = document["paths"]["/v1/deposits"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith("/CreatePaymentRequest")
        assert set(document["components"]["schemas"]["CreatePaymentRequest"]["required"]) == {
            "request_id", "user_id", "amount_usd", "currency_code"
        }  # fmt: skip
        withdrawal = document["paths"]["/v1/withdrawals"]["post"]["responses"]
        assert withdrawal["409"]["content"]["application/json"]["schema"]["properties"]["error"]["enum"] == [
            "insufficient_funds",
            "request_id_reused",
        ]
        replay = withdrawal["200"]["content"]["application/json"]["schema"]["oneOf"]
        assert [ref["$ref"].rsplit("/", 1)[1] for ref in replay] == ["WithdrawalDetail", "RejectionView"]
        assert document["paths"]["/v1/operator/withdrawals"]["get"]["security"] == [{"operatorToken": []}]
        assert document["paths"]["/openapi.json"]["get"]["security"] == []


async def test_fuzzing_from_the_document_finds_no_500_and_no_answer_it_does_not_describe(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        # Some real records, so that lists and reads have something to show.
        for n in range(3):
            request = CreatePaymentRequest(
                request_id=f"fuzz-{n}", user_id="fuzz-user", amount_usd=Decimal("20.00"), currency_code="btc"
            )
            await create_payment(stack.ctx, request)
        await stack.api_post(
            "/v1/withdrawals",
            WithdrawalRequest(
                request_id="fuzz-w", user_id="fuzz-user", amount_usd=Decimal("15.00"), currency_code="btc",
                wallet_address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            ).model_dump(mode="json"),
        )  # fmt: skip
        document = await _document(stack)
        headers_for = {
            "/v1/": {"Authorization": f"Bearer {API_TOKEN}"},
            "/v1/operator/": {"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        }
        calls, failures = await asyncio.to_thread(
            fuzz_api, document, stack.web_url, headers_for, max_examples=MAX_EXAMPLES
        )
        assert not failures, "\n\n".join(failures)
        assert calls >= len(ROUTES) * 2  # every operation was called, most in both modes
        print(f"fuzz: {calls} calls over {len(ROUTES)} operations")
