"""Lists over HTTP: a user's payments and withdrawals, the operator's withdrawals and held deposits.

Newest first (held deposits: oldest first), keyset pages behind an opaque cursor, a validated status
filter; every answer is checked against /openapi.json's schema for it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jsonschema import Draft202012Validator

from domain.rejections import RequestKind
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from storage.rejections import record_rejection
from tests.integration.pipeline.test_withdrawal_requests import fund, ref, withdraw
from tests.integration.stack import API_TOKEN, OPERATOR_TOKEN, Stack
from tests.integration.web.test_hostile_requests import assert_json_error


async def _get(stack: Stack, path: str, token: str = API_TOKEN) -> tuple[int, Any]:
    async with stack.http.get(stack.web_url + path, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json()


async def _conforms(stack: Stack, body: Any, schema_name: str) -> None:
    async with stack.http.get(stack.web_url + "/openapi.json") as response:
        document = await response.json()
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    errors = [e.message for e in Draft202012Validator(root).iter_errors(body)]
    assert not errors, errors


async def _walk(stack: Stack, path: str, *, limit: int, token: str = API_TOKEN) -> list[list[dict]]:
    """Every page of a list, following ``next`` until it is null."""
    pages, cursor = [], None
    while True:
        separator = "&" if "?" in path else "?"
        status, body = await _get(
            stack, f"{path}{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), token
        )
        assert status == 200, body
        pages.append(body["items"])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the pages never end"


async def _payment(stack: Stack, user: str) -> str:
    request = CreatePaymentRequest(
        request_id=ref("req"), user_id=user, amount_usd=Decimal("20.00"), currency_code="btc"
    )
    return (await create_payment(stack.ctx, request)).id


async def test_a_users_payments_newest_first_in_pages_with_a_status_filter(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        user, other = ref("alice"), ref("bob")
        created = [await _payment(stack, user) for _ in range(5)]
        await _payment(stack, other)
        async with stack.pool.acquire() as conn:  # two made in the same microsecond: the id breaks the tie
            same_time = await conn.fetchval("SELECT created_at FROM payments WHERE id = $1", created[1])
            await conn.execute("UPDATE payments SET created_at = $2 WHERE id = ANY($1)", created[1:3], same_time)
            await conn.execute("UPDATE payments SET status = 'expired' WHERE id = $1", created[0])
            newest_first = [r["id"] for r in await conn.fetch(
                "SELECT id FROM payments WHERE user_id = $1 ORDER BY created_at DESC, id DESC", user)]  # fmt: skip

        pages = await _walk(stack, f"/v1/users/{user}/payments", limit=2)
        assert [len(page) for page in pages] == [2, 2, 1]
        assert [p["internal_payment_id"] for page in pages for p in page] == newest_first
        assert {p["user_id"] for page in pages for p in page} == {user}

        status, body = await _get(stack, f"/v1/users/{user}/payments?status=expired")
        assert status == 200 and [p["internal_payment_id"] for p in body["items"]] == [created[0]]
        assert body["next"] is None
        await _conforms(stack, body, "PaymentPage")
        assert body["items"][0]["qr_code_url"].partition("?")[2].startswith("expires=")

        status, body = await _get(stack, f"/v1/users/{user}/payments?limit=5")
        assert len(body["items"]) == 5 and body["next"] is None  # no empty page after the last one
        assert (await _get(stack, f"/v1/users/{ref('nobody')}/payments"))[1] == {"items": [], "next": None}


async def test_list_parameters_are_validated_with_a_clear_400(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        for path, field in (
            ("/v1/users/u1/payments?status=finished", "status"),  # the gateway's word, not ours
            ("/v1/users/u1/withdrawals?status=paid", "status"),
            ("/v1/users/u1/payments?limit=0", "limit"),
            ("/v1/users/u1/payments?limit=101", "limit"),
            ("/v1/users/u1/payments?limit=ten", "limit"),
            ("/v1/users/u1/payments?cursor=not-a-cursor", "cursor"),
            ("/v1/users/u1/withdrawals?cursor=WzEsIlx1MDAwMCJd", "cursor"),  # [1, "\u0000"]
            ("/v1/operator/withdrawals?status=sent", "status"),
            ("/v1/operator/deposits/held?limit=1000", "limit"),
        ):
            token = OPERATOR_TOKEN if "/operator/" in path else API_TOKEN
            status, body = await _get(stack, path, token)
            assert_json_error(status, body, 400, "invalid_request")
            assert body["message"].startswith(field), body
        assert await _get(stack, "/v1/users/u1/payments?status=pending&limit=100") == (200, {"items": [], "next": None})
        status, body = await _get(stack, "/v1/users/u1/payments?status=finished")
        assert "pending" in body["message"]  # says which statuses exist


async def test_a_users_withdrawals_and_the_operators_lists(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        user, other = ref("carol"), ref("dave")
        await fund(stack, user, "200.00")
        await fund(stack, other, "100.00")
        mine = [(await withdraw(stack, user, "20.00"))["internal_withdrawal_id"] for _ in range(3)]
        theirs = (await withdraw(stack, other, "20.00"))["internal_withdrawal_id"]
        await stack.api_post(f"/v1/withdrawals/{mine[0]}/cancel", {"user_id": user})

        pages = await _walk(stack, f"/v1/users/{user}/withdrawals", limit=2)
        assert [w["internal_withdrawal_id"] for page in pages for w in page] == mine[::-1]
        status, body = await _get(stack, f"/v1/users/{user}/withdrawals?status=cancelled")
        assert [w["internal_withdrawal_id"] for w in body["items"]] == [mine[0]]
        await _conforms(stack, body, "WithdrawalPage")

        # The operator's list: everyone's, by status; the API token does not open it.
        pages = await _walk(stack, "/v1/operator/withdrawals?status=pending", limit=2, token=OPERATOR_TOKEN)
        assert [w["internal_withdrawal_id"] for page in pages for w in page] == [theirs, mine[2], mine[1]]
        assert_json_error(*(await _get(stack, "/v1/operator/withdrawals")), 401, "unauthorized")
        status, body = await _get(stack, "/v1/operator/withdrawals", OPERATOR_TOKEN)
        assert len(body["items"]) == 4

        # Held deposits, oldest first.
        held = [await _payment(stack, user) for _ in range(3)]
        async with stack.pool.acquire() as conn:
            await conn.execute("UPDATE payments SET hold_reason = 'underpaid' WHERE id = ANY($1)", held[1:])
        status, body = await _get(stack, "/v1/operator/deposits/held?limit=1", OPERATOR_TOKEN)
        assert status == 200 and [p["internal_payment_id"] for p in body["items"]] == [held[1]]
        await _conforms(stack, body, "PaymentPage")
        pages = await _walk(stack, "/v1/operator/deposits/held", limit=1, token=OPERATOR_TOKEN)
        assert [p["internal_payment_id"] for page in pages for p in page] == held[1:]
        assert all(p["hold_reason"] == "underpaid" for page in pages for p in page)


async def test_cancel_needs_the_owners_user_id_and_changes_nothing_otherwise(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        user = ref("erin")
        await fund(stack, user, "50.00")
        wid = (await withdraw(stack, user, "20.00"))["internal_withdrawal_id"]
        for body, want_status, want_code in (
            ({}, 400, "invalid_request"),
            ({"note": "no owner given"}, 400, "invalid_request"),
            ({"user_id": None}, 400, "invalid_request"),
            ({"user_id": ref("mallory")}, 404, "not_found"),
        ):
            status, answer = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", body)
            assert_json_error(status, answer, want_status, want_code)
        async with stack.http.post(
            stack.web_url + f"/v1/withdrawals/{wid}/cancel", headers={"Authorization": f"Bearer {API_TOKEN}"}
        ) as response:  # no body at all
            assert_json_error(response.status, await response.json(), 400, "invalid_request")
        status, answer = await stack.api_get(f"/v1/withdrawals/{wid}")
        assert answer["status"] == "pending" and [e["to_status"] for e in answer["events"]] == ["pending"]
        assert (await stack.balance(user)) == Decimal("30.00")
        status, answer = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", {"user_id": user})
        assert status == 200 and answer["status"] == "cancelled"


async def test_rejected_answers_and_refused_replays_conform_to_the_document(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        user = ref("frank")
        payment_id = await _payment(stack, user)
        async with stack.pool.acquire() as conn:
            request_id = await conn.fetchval("SELECT request_id FROM payments WHERE id = $1", payment_id)
            for rid in ("refused-1", request_id):  # a refusal alone, and one beside an existing payment
                await record_rejection(
                    conn, kind=RequestKind.DEPOSIT, request_id=rid, fingerprint="other", error="invalid_request",
                    reason="currency_code: currency 'eth' is not active", field="currency_code",
                )  # fmt: skip
        status, body = await _get(stack, "/v1/deposits/refused-1")
        assert status == 200 and body["status"] == "rejected"
        await _conforms(stack, body, "RejectionView")
        status, body = await _get(stack, f"/v1/deposits/{request_id}")
        assert status == 200 and body["internal_payment_id"] == payment_id and "refused_replay" in body
        await _conforms(stack, body, "PaymentView")
        status, body = await _get(stack, f"/v1/payments/{payment_id}")
        assert "refused_replay" not in body  # shown only where it was asked for by request_id
        await _conforms(stack, body, "PaymentView")
