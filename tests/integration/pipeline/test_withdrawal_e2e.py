"""Withdrawals end to end: hold at request, operator decisions, payout through the simulator."""

from __future__ import annotations

import uuid
from decimal import Decimal

from storage import ledger
from tests.integration.stack import Stack, eventually


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


async def _fund(stack: Stack, user: str, amount: str) -> None:
    request_id = _ref("dep")
    stack.actors.create_payment.send(request_id, user, amount, "btc")
    payment = await stack.payment_for_request(request_id)
    await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid"})
    await stack.wait_settled(payment.id)


async def test_manual_withdrawal_holds_then_posts_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        user = _ref("user")
        await _fund(stack, user, "100.00")
        status, body = await stack.api_post(
            "/v1/withdrawals",
            {
                "request_id": _ref("wd"),
                "user_id": user,
                "amount_usd": "40.00",
                "currency_code": "btc",
                "wallet_address": BTC_ADDRESS,
            },
        )
        assert status == 201, body
        assert (body["total_fee_usd"], body["final_amount_usd"]) == ("1.50", "38.50")
        wid = body["internal_withdrawal_id"]
        async with stack.pool.acquire() as conn:
            balance = await ledger.user_balance(conn, user)
        assert (balance.balance_usd, balance.held_usd) == (Decimal("60.00"), Decimal("40.00"))

        status, body = await stack.api_post(
            f"/v1/operator/withdrawals/{wid}/approve", {"operator": "alice", "note": "ok"}, operator=True
        )
        assert status == 200 and body["status"] == "approved", body
        status, body = await stack.api_post(
            f"/v1/operator/withdrawals/{wid}/complete", {"operator": "alice", "tx_hash": "ab" * 32}, operator=True
        )
        assert status == 200 and body["status"] == "completed", body
        assert [e["to_status"] for e in body["events"]] == ["pending", "approved", "completed"]
        async with stack.pool.acquire() as conn:
            balance = await ledger.user_balance(conn, user)
            assert await ledger.invariant_violations(conn) == []
        assert (balance.balance_usd, balance.held_usd, balance.total_withdrawn) == (
            Decimal("60.00"),
            Decimal("0.00"),
            Decimal("40.00"),
        )
        status, body = await stack.api_post(
            f"/v1/operator/withdrawals/{wid}/reject", {"operator": "bob", "note": "late"}, operator=True
        )
        assert status == 409, body


async def test_gateway_payout_completes_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user = _ref("user")
        await _fund(stack, user, "50.00")
        status, body = await stack.api_post(
            "/v1/withdrawals",
            {
                "request_id": _ref("wd"),
                "user_id": user,
                "amount_usd": "50.00",
                "currency_code": "btc",
                "wallet_address": BTC_ADDRESS,
            },
        )
        assert status == 201, body
        wid = body["internal_withdrawal_id"]
        status, body = await stack.api_post(
            f"/v1/operator/withdrawals/{wid}/approve", {"operator": "alice"}, operator=True
        )
        assert status == 200, body

        async def processing():
            _, view = await stack.api_get(f"/v1/withdrawals/{wid}")
            return view if view["status"] == "processing" else None

        await eventually(processing)
        payouts = await stack.sim_get(f"/sim/payouts?unique_external_id={wid}")
        assert payouts["count"] == 1
        payout_id = payouts["payouts"][0]["id"] if "payouts" in payouts else payouts["items"][0]["id"]
        await stack.sim_post(f"/sim/payouts/{payout_id}/play", {"scenario": "finished"})

        async def completed():
            _, view = await stack.api_get(f"/v1/withdrawals/{wid}")
            return view if view["status"] == "completed" else None

        view = await eventually(completed)
        assert view["transaction_hash"]
        async with stack.pool.acquire() as conn:
            balance = await ledger.user_balance(conn, user)
            assert await ledger.invariant_violations(conn) == []
        assert (balance.balance_usd, balance.held_usd, balance.total_withdrawn) == (
            Decimal("0.00"),
            Decimal("0.00"),
            Decimal("50.00"),
        )


async def test_fee_quote_unavailable_answers_503_and_holds_nothing(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user = _ref("user")
        await _fund(stack, user, "50.00")
        await stack.sim_post("/sim/faults", {"status": 503, "count": 50, "path_prefix": "/v1/estimate"})
        status, body = await stack.api_post(
            "/v1/withdrawals",
            {
                "request_id": _ref("wd"),
                "user_id": user,
                "amount_usd": "20.00",
                "currency_code": "btc",
                "wallet_address": BTC_ADDRESS,
            },
        )
        assert (status, body["error"]) == (503, "gateway_unavailable"), body
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM withdrawals") == 0
            balance = await ledger.user_balance(conn, user)
        assert (balance.balance_usd, balance.held_usd) == (Decimal("50.00"), Decimal("0.00"))
