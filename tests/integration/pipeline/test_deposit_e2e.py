"""Deposits end to end through real worker threads, the simulator and the web app."""

from __future__ import annotations

import uuid
from decimal import Decimal

from storage import ledger
from tests.integration.stack import Stack, eventually


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_ipn_path_credits_once(database_url, redis_namespace, broker_overrides):
    """On Redis and on RabbitMQ (BROKER_URL=amqp://…): the same pipeline, the same outcome."""
    async with Stack(database_url, redis_namespace, ipn=True, **broker_overrides) as stack:
        assert stack.settings.uses_rabbitmq == ("broker_url" in broker_overrides)
        user, request_id = _ref("user"), _ref("req")
        stack.actors.create_payment.send(
            request_id=request_id, user_id=user, amount_usd="25.00", currency_code="btc", description="test deposit"
        )
        payment = await stack.payment_for_request(request_id)
        assert payment.pay_address and payment.pay_amount > 0
        status, view = await stack.api_get(f"/v1/payments/{payment.id}")
        assert status == 200 and view["pay_address"] == payment.pay_address
        assert view["qr_code_url"] and view["explorer_link"]

        await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid"})
        settled = await stack.wait_settled(payment.id)
        assert settled.status.value == "completed"
        await stack.wait_idle()
        assert await stack.balance(user) == Decimal("25.00")
        async with stack.pool.acquire() as conn:
            history = await ledger.user_history(conn, user)
            assert [(h.type, h.amount_usd, h.balance_after) for h in history] == [
                ("deposit", Decimal("25.00"), Decimal("25.00"))
            ]
            assert await ledger.invariant_violations(conn) == []
        log = await stack.sim_get(f"/sim/ipn-log?payment_id={payment.provider_payment_id}")
        statuses = [(entry["payment_status"], entry["status"]) for entry in log["deliveries"]]
        assert statuses == [
            ("waiting", 200),
            ("confirming", 200),
            ("confirmed", 200),
            ("sending", 200),
            ("finished", 200),
        ]


async def test_polling_path_credits_once_without_ipn(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        stack.start_scheduler()
        user, request_id = _ref("user"), _ref("req")
        stack.actors.create_payment.send(request_id, user, "40.00", "eth")
        payment = await stack.payment_for_request(request_id)

        async def polled():
            p = await stack.payment(payment.id)
            return p if p.poll_attempts else None

        # After a poll the gateway has told us actually_paid = 0: the view still renders.
        assert (await eventually(polled)).actually_paid == 0
        status, view = await stack.api_get(f"/v1/payments/{payment.id}")
        assert status == 200 and view["actually_paid"] == "0" and view["status"] == "pending", view
        await stack.sim_post(
            f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid", "send_ipn": False}
        )
        await stack.wait_settled(payment.id)
        await stack.wait_idle()

        async def balance():
            return await stack.balance(user) == Decimal("40.00")

        await eventually(balance)
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 1
            events = await conn.fetch("SELECT source FROM payment_events WHERE payment_id = $1", payment.id)
            assert {"poll", "settle"} <= {e["source"] for e in events}
            assert "ipn" not in {e["source"] for e in events}


async def test_memo_coin_deposit_shows_its_tag_in_the_view_uri_and_qr(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        request_id = _ref("req")
        stack.actors.create_payment.send(
            request_id=request_id, user_id=_ref("user"), amount_usd="30.00", currency_code="xrp"
        )
        payment = await stack.payment_for_request(request_id)
        status, view = await stack.api_get(f"/v1/deposits/{request_id}")
        assert status == 200 and view["internal_payment_id"] == payment.id
        assert view["payin_extra_id"] and view["payin_extra_id"] == payment.payin_extra_id
        assert view["payment_uri"].startswith(f"ripple:{payment.pay_address}")
        assert f"dt={payment.payin_extra_id}" in view["payment_uri"]
        async with stack.http.get(
            stack.web_url + view["qr_code_url"], headers={"Authorization": "Bearer api-token-for-tests"}
        ) as response:
            assert response.status == 200 and response.content_type == "image/svg+xml"
            assert (await response.read()).lstrip().startswith(b"<svg")
