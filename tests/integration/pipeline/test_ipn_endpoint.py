"""The web process over real HTTP: the NOWPayments IPN endpoint and the JSON API.

The Stack's web app runs on loopback; IPN bodies here are built and signed by the test (the
Stack is started with ``ipn=False`` so the simulator sends none of its own), which lets each
test control exactly what reaches the endpoint.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import redis
from aiohttp import web

from domain.payments import Payment
from entrypoints.web.app import WebRuntime, create_web_app
from gateway.signature import canonical_json, sign
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.poll_status import poll_status
from services.settle_deposit import settle_deposit
from settings import IPN_PATH
from storage import payments
from tests.conftest import REDIS_URL
from tests.integration.metrics_text import metric_samples
from tests.integration.stack import API_TOKEN, IPN_SECRET, Stack, eventually
from tests.ports import free_port

DECIMAL_STRING = re.compile(r"^-?\d+(\.\d+)?$")


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create(
    stack: Stack, user: str, amount: str, currency: str = "btc", request_id: str | None = None
) -> Payment:
    request = CreatePaymentRequest(
        request_id=request_id or _ref("req"), user_id=user, amount_usd=Decimal(amount), currency_code=currency
    )
    return await create_payment(stack.ctx, request)


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def _ipn_body(stack: Stack, payment: Payment, status: str, **overrides: Any) -> dict[str, Any]:
    """Move the simulated payment to ``status`` (no IPN sent) and build the callback NOWPayments would send."""
    answer = await stack.sim_post(
        f"/sim/payments/{payment.provider_payment_id}/status", {"status": status, "send_ipn": False}
    )
    view = answer["payment"]
    body: dict[str, Any] = {
        "actually_paid": Decimal(view["actually_paid"]),
        "actually_paid_at_fiat": 0,
        "fee": {"currency": view["pay_currency"], "depositFee": 0, "serviceFee": 0, "withdrawalFee": 0},
        "invoice_id": None,
        "order_description": view["order_description"],
        "order_id": view["order_id"],
        "outcome_amount": None if view["outcome_amount"] is None else Decimal(view["outcome_amount"]),
        "outcome_currency": view["outcome_currency"],
        "pay_address": view["pay_address"],
        "pay_amount": Decimal(view["pay_amount"]),
        "pay_currency": view["pay_currency"],
        "payin_extra_id": view["payin_extra_id"],
        "payin_hash": view["payin_hash"],
        "payment_id": int(view["payment_id"]),
        "payment_status": view["payment_status"],
        "price_amount": Decimal(view["price_amount"]),
        "price_currency": view["price_currency"],
        "purchase_id": view["purchase_id"],
        "updated_at": _millis(view["updated_at"]),
    }
    body.update(overrides)
    return body


async def _post_ipn(stack: Stack, raw: bytes, signature: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["x-nowpayments-sig"] = signature
    async with stack.http.post(stack.web_url + IPN_PATH, data=raw, headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def _signed(body: Any, secret: str = IPN_SECRET) -> tuple[bytes, str]:
    raw = canonical_json(body).encode("utf-8")
    return raw, sign(raw, secret)


async def _snapshot(stack: Stack, payment_id: str) -> tuple[Payment, int]:
    async with stack.pool.acquire() as conn:
        payment = await payments.get_payment(conn, payment_id)
        events = await conn.fetchval("SELECT count(*) FROM payment_events WHERE payment_id = $1", payment_id)
    assert payment is not None
    return payment, events


async def _unchanged(stack: Stack, before: tuple[Payment, int]) -> None:
    after = await _snapshot(stack, before[0].id)
    assert after == before, "the payment or its events changed"


# -- IPN authentication and parsing ----------------------------------------------------------------------------


async def test_ipn_refuses_forged_missing_and_malformed_callbacks(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, _ref("user"), "20.00")
        body = await _ipn_body(stack, payment, "finished")
        before = await _snapshot(stack, payment.id)

        raw, _ = _signed(body)
        cases: list[tuple[str, bytes, str | None, int]] = [
            ("signed with another secret", raw, sign(raw, "not-the-ipn-secret"), 401),
            ("no signature header", raw, None, 401),
            ("empty signature", raw, "", 401),
            ("signature of another body", raw, _signed({**body, "actually_paid": Decimal("1")})[1], 401),
            ("not JSON", b"payment_status=finished", sign(b"payment_status=finished", IPN_SECRET), None),
            ("a JSON array", *_signed([body]), None),
            ("no payment_status", *_signed({k: v for k, v in body.items() if k != "payment_status"}), 400),
            ("no payment_id", *_signed({k: v for k, v in body.items() if k != "payment_id"}), 400),
        ]
        for name, data, signature, expected in cases:
            status, answer = await _post_ipn(stack, data, signature)
            if expected is None:
                assert 400 <= status < 500, (name, status, answer)
            else:
                assert status == expected, (name, status, answer)
            await _unchanged(stack, before)

        # The genuine callback is accepted, so the refusals above were about what they changed.
        status, answer = await _post_ipn(stack, *_signed(body))
        assert status == 200 and answer["payment_status"] == "completed"


async def test_ipn_for_unknown_payment_or_wrong_order_is_404_and_changes_nothing(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, _ref("user"), "20.00")
        other = await _create(stack, _ref("user"), "30.00")
        body = await _ipn_body(stack, payment, "finished")
        before, before_other = await _snapshot(stack, payment.id), await _snapshot(stack, other.id)

        unknown = {**body, "payment_id": 123456789, "order_id": "PAY_20250101000000_nosuch00"}
        status, answer = await _post_ipn(stack, *_signed(unknown))
        assert status == 404 and answer["error"] == "unknown_payment"
        # A real provider id with someone else's order id is refused too.
        status, _ = await _post_ipn(stack, *_signed({**body, "order_id": other.id}))
        assert status == 404
        await _unchanged(stack, before)
        await _unchanged(stack, before_other)


async def test_replayed_ipn_has_one_effect(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00")
        raw, signature = _signed(await _ipn_body(stack, payment, "finished"))

        answers = await asyncio.gather(*(_post_ipn(stack, raw, signature) for _ in range(5)))
        assert [status for status, _ in answers] == [200] * 5
        assert {answer["payment_status"] for _, answer in answers} == {"completed"}
        await stack.wait_settled(payment.id)
        for _ in range(3):  # and once more, after settlement
            assert (await _post_ipn(stack, raw, signature))[0] == 200
        await stack.wait_idle()

        async with stack.pool.acquire() as conn:
            events = await payments.list_events(conn, payment.id)
            assert [(e["source"], e["from_status"], e["to_status"]) for e in events] == [
                ("create", None, "pending"),
                ("ipn", "pending", "completed"),
                ("settle", "completed", "completed"),
            ]
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 1
        assert await stack.balance(user) == Decimal("20.00")


async def test_ipn_signed_over_javascript_form_accepted_whatever_the_formatting(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, _ref("user"), "20.00")
        await stack.sim_post(
            f"/sim/payments/{payment.provider_payment_id}/status", {"status": "finished", "send_ipn": False}
        )
        view = await stack.sim_get(f"/sim/payments/{payment.provider_payment_id}")
        assert Decimal(view["price_amount"]) == 20 and Decimal(view["pay_amount"]) == Decimal("0.00020619")

        # What NOWPayments signs: JSON.stringify with keys sorted, numbers as JavaScript prints them.
        js_values = {
            "actually_paid": "0.00020619",
            "actually_paid_at_fiat": "0",
            "fee": '{"currency":"btc","depositFee":0,"serviceFee":0.000002,"withdrawalFee":0}',
            "order_id": json.dumps(payment.id),
            "pay_address": json.dumps(view["pay_address"]),
            "pay_amount": "0.00020619",
            "pay_currency": '"btc"',
            "payin_hash": json.dumps(view["payin_hash"]),
            "payment_id": view["payment_id"],
            "payment_status": '"finished"',
            "price_amount": "20",
            "price_currency": '"usd"',
            "updated_at": str(_millis(view["updated_at"])),
        }
        js_form = "{" + ",".join(f'"{k}":{v}' for k, v in sorted(js_values.items())) + "}"
        signature = sign(js_form.encode(), IPN_SECRET)
        # What arrives: same values, other formatting (Python-style floats, spaces, keys unsorted).
        sent_values = {
            **js_values,
            "price_amount": "20.0",
            "actually_paid_at_fiat": "0.0",
            "fee": '{ "withdrawalFee": 0.0, "serviceFee": 2e-06, "depositFee": 0, "currency": "btc" }',
        }
        sent = "{\n" + ",\n".join(f'  "{k}" : {v}' for k, v in sorted(sent_values.items(), reverse=True)) + "\n}"
        assert sent.encode() != js_form.encode()

        tampered = sent.replace('"actually_paid" : 0.00020619', '"actually_paid" : 0.00020618')
        assert tampered != sent
        status, _ = await _post_ipn(stack, tampered.encode(), signature)
        assert status == 401
        assert (await stack.payment(payment.id)).status.value == "pending"

        status, answer = await _post_ipn(stack, sent.encode(), signature)
        assert status == 200, answer
        completed = await stack.payment(payment.id)
        assert completed.status.value == "completed" and completed.actually_paid == Decimal("0.00020619")


# -- the JSON API -----------------------------------------------------------------------------------------------


async def _get(stack: Stack, path: str, token: str | None = API_TOKEN) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with stack.http.get(stack.web_url + path, headers=headers) as response:
        body = await response.read()
    try:
        return response.status, json.loads(body), response
    except ValueError:
        return response.status, body, response


async def _credit(stack: Stack, user: str, amount: str) -> Payment:
    """A settled deposit, through the real stages (no worker needed)."""
    payment = await _create(stack, user, amount)
    await stack.sim_post(
        f"/sim/payments/{payment.provider_payment_id}/status", {"status": "finished", "send_ipn": False}
    )
    await poll_status(stack.ctx, payment.id)
    result = await settle_deposit(stack.ctx, payment.id)
    assert result.credited
    return result.payment


async def test_api_requires_the_bearer_token(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, "u1", "20.00")
        paths = [
            "/v1/users/u1/balance",
            "/v1/users/u1/transactions",
            f"/v1/payments/{payment.id}",
            f"/v1/payments/{payment.id}/qr.svg",
            f"/v1/deposits/{payment.request_id}",
        ]
        for path in paths:
            for token in (None, "wrong-token", API_TOKEN + "x", ""):
                status, body, _ = await _get(stack, path, token)
                assert status == 401 and body["error"] == "unauthorized", (path, token)
            async with stack.http.get(stack.web_url + path, headers={"Authorization": API_TOKEN}) as response:
                assert response.status == 401  # the token without the Bearer scheme
            status, _, _ = await _get(stack, path)
            assert status == 200, path
        async with stack.http.post(stack.web_url + "/v1/deposits", json={}) as response:
            assert response.status == 401


async def test_balance_and_transaction_history_shapes_and_pagination(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        user = _ref("user")
        for amount in ("10.00", "20.00", "30.50"):
            await _credit(stack, user, amount)

        status, balance, _ = await _get(stack, f"/v1/users/{user}/balance")
        assert status == 200
        assert set(balance) == {
            "user_id",
            "balance_usd",
            "held_usd",
            "total_deposited",
            "total_withdrawn",
            "last_transaction_at",
        }
        assert balance["user_id"] == user
        for key in ("balance_usd", "held_usd", "total_deposited", "total_withdrawn"):
            assert isinstance(balance[key], str) and DECIMAL_STRING.match(balance[key]), (key, balance[key])
        assert balance["balance_usd"] == "60.50" and balance["total_deposited"] == "60.50"
        assert Decimal(balance["held_usd"]) == 0 and Decimal(balance["total_withdrawn"]) == 0
        assert datetime.fromisoformat(balance["last_transaction_at"])

        status, page1, _ = await _get(stack, f"/v1/users/{user}/transactions?limit=2")
        assert status == 200
        assert [(i["type"], i["amount_usd"], i["balance_after"]) for i in page1["items"]] == [
            ("deposit", "30.50", "60.50"),
            ("deposit", "20.00", "30.00"),
        ]
        assert page1["next_before"] == page1["items"][-1]["id"]
        item = page1["items"][0]
        assert set(item) == {"id", "type", "amount_usd", "balance_after", "description", "reference", "created_at"}
        assert isinstance(item["id"], int) and item["id"] > page1["items"][1]["id"]

        status, page2, _ = await _get(stack, f"/v1/users/{user}/transactions?limit=2&before={page1['next_before']}")
        assert status == 200
        assert [(i["amount_usd"], i["balance_after"]) for i in page2["items"]] == [("10.00", "10.00")]
        assert page2["next_before"] is None

        status, everything, _ = await _get(stack, f"/v1/users/{user}/transactions")
        assert [i["amount_usd"] for i in everything["items"]] == ["30.50", "20.00", "10.00"]
        status, _, _ = await _get(stack, f"/v1/users/{user}/transactions?limit=abc")
        assert status == 400

        # A user without any activity: zero balance and an empty history, not an error.
        status, empty, _ = await _get(stack, "/v1/users/nobody/balance")
        assert status == 200 and Decimal(empty["balance_usd"]) == 0
        status, history, _ = await _get(stack, "/v1/users/nobody/transactions")
        assert status == 200 and history == {"items": [], "next_before": None}


def _queued_messages(namespace: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sum(client.hlen(key) for key in client.scan_iter(match=f"{namespace}:*.msgs"))
    finally:
        client.close()


async def test_post_deposit_enqueues_creation_and_refuses_bad_bodies(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        user = _ref("user")
        bad_bodies: list[Any] = [
            {"request_id": _ref("req"), "user_id": user, "amount_usd": "abc", "currency_code": "btc"},
            {"request_id": _ref("req"), "user_id": user, "amount_usd": "-5.00", "currency_code": "btc"},
            {"request_id": _ref("req"), "user_id": user, "amount_usd": "0", "currency_code": "btc"},
            {"request_id": _ref("req"), "user_id": user, "amount_usd": "10.001", "currency_code": "btc"},
            {"request_id": _ref("req"), "user_id": user, "currency_code": "btc"},
            {"request_id": _ref("req"), "user_id": user, "amount_usd": "10.00", "currency_code": "btc", "x": 1},
            ["not", "an", "object"],
        ]
        for body in bad_bodies:
            async with stack.http.post(stack.web_url + "/v1/deposits", json=body, headers=headers) as response:
                assert response.status == 400, body
                assert (await response.json())["error"] == "invalid_request"
        async with stack.http.post(stack.web_url + "/v1/deposits", data=b"{nope", headers=headers) as response:
            assert response.status == 400
        assert _queued_messages(redis_namespace) == 0

        request_id = _ref("req")
        good = {"request_id": request_id, "user_id": user, "amount_usd": "25.00", "currency_code": "BTC"}
        async with stack.http.post(stack.web_url + "/v1/deposits", json=good, headers=headers) as response:
            assert response.status == 202
            answer = await response.json()
        assert answer["request_id"] == request_id and answer["status"] == "queued" and answer["message_id"]
        assert _queued_messages(redis_namespace) == 1  # the probe above counts what it should
        status, _, _ = await _get(stack, f"/v1/deposits/{request_id}")
        assert status == 404  # queued, not yet created

        stack.start_workers()
        payment = await stack.payment_for_request(request_id)
        status, view, _ = await _get(stack, f"/v1/deposits/{request_id}")
        assert status == 200
        assert view["internal_payment_id"] == payment.id and view["request_id"] == request_id
        assert view["user_id"] == user and view["amount_usd"] == "25.00" and view["currency_code"] == "btc"
        assert view["status"] == "pending" and view["pay_address"] == payment.pay_address
        assert DECIMAL_STRING.match(view["pay_amount"])
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM payments") == 1


async def test_payment_view_qr_health_and_metrics(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, _ref("user"), "20.00")

        status, view, _ = await _get(stack, f"/v1/payments/{payment.id}")
        assert status == 200 and view["internal_payment_id"] == payment.id
        assert view["qr_code_url"].startswith(f"/v1/payments/{payment.id}/qr.svg?expires=")
        assert view["payment_uri"] and payment.pay_address in view["payment_uri"]
        status, body, response = await _get(stack, view["qr_code_url"])
        assert status == 200 and response.content_type == "image/svg+xml"
        assert b"<svg" in body[:300] and body.rstrip().endswith(b"</svg>")
        assert (await _get(stack, "/v1/payments/PAY_nosuch/qr.svg"))[0] == 404
        assert (await _get(stack, "/v1/payments/PAY_nosuch"))[0] == 404

        # The Stack's app has no health checks configured: healthy, and no token needed.
        status, health, _ = await _get(stack, "/healthz", token=None)
        assert status == 200 and health == {"status": "ok"}

        status, text, response = await _get(stack, "/metrics", token=None)
        assert status == 200 and response.content_type == "text/plain"
        samples = metric_samples(text.decode())
        assert samples['payments_total{status="pending"}'] == "1"
        assert samples["payments_held_for_review"] == "0" and samples["ledger_transactions_total"] == "0"


async def test_healthz_reports_a_failing_dependency_with_503(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:

        async def postgres() -> None:
            async with stack.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

        async def unreachable_postgres() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", timeout=2)
            await conn.close()

        checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("postgres", postgres),
            ("replica", unreachable_postgres),
        ]
        runner = web.AppRunner(create_web_app(WebRuntime(ctx=stack.ctx, health_checks=checks)))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with stack.http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 503
                body = await response.json()
            assert body["status"] == "unhealthy" and set(body["failures"]) == {"replica"}
            assert "127.0.0.1" not in json.dumps(body)  # names the failure, not connection details

            checks.pop()

            async def healthy() -> bool:
                async with stack.http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200

            await eventually(healthy, timeout=5)
        finally:
            await runner.cleanup()
