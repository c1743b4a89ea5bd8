"""Every payment outcome has its documented result, and nothing is credited where nothing should be.

Real simulator over HTTP, real dramatiq worker threads on Redis, real Postgres, the real web app
receiving the simulator's signed IPNs. Stage functions are also called directly through
``stack.ctx`` where a test needs a poll at a precise moment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.payments import Payment, PaymentUpdate
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.poll_status import poll_status
from services.settle_deposit import settle_deposit
from storage import ledger, payments
from tests.integration.metrics_text import metric_samples
from tests.integration.stack import Stack, eventually


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create(stack: Stack, user: str, amount: str, currency: str) -> Payment:
    request = CreatePaymentRequest(
        request_id=_ref("req"), user_id=user, amount_usd=Decimal(amount), currency_code=currency, description="t"
    )
    payment = await create_payment(stack.ctx, request)
    assert payment.provider_payment_id and payment.status.value == "pending"
    return payment


async def _play(stack: Stack, payment: Payment, scenario: str, **extra: object) -> dict:
    return await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": scenario, **extra})


async def _gateway_status(stack: Stack, payment: Payment, status: str, **extra: object) -> dict:
    return await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/status", {"status": status, **extra})


async def _events(stack: Stack, payment_id: str) -> list[tuple[str, str | None, str | None]]:
    async with stack.pool.acquire() as conn:
        rows = await payments.list_events(conn, payment_id)
    return [(row["source"], row["from_status"], row["to_status"]) for row in rows]


async def _ledger_transactions(stack: Stack) -> int:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM ledger_transactions")


async def _invariants_hold(stack: Stack) -> None:
    async with stack.pool.acquire() as conn:
        assert await ledger.invariant_violations(conn) == []


async def _metrics(stack: Stack) -> dict[str, str]:
    async with stack.http.get(stack.web_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return metric_samples(text)


async def _set_expires_at(stack: Stack, payment_id: str, moment: datetime) -> None:
    async with stack.pool.acquire() as conn:
        await payments.update_payment(conn, payment_id, PaymentUpdate(expires_at=moment))


# -- over-payment -------------------------------------------------------------------------------------------


async def test_overpayment_credits_received_value_floored_to_the_cent(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "25.00", "eth")
        await _play(stack, payment, "over")

        settled = await stack.wait_settled(payment.id)
        await stack.wait_idle()
        assert settled.status.value == "completed"
        assert settled.actually_paid > settled.pay_amount
        # 25.00 × 0.011029411764705883 / 0.007352941176470589 = 37.4999999…: floored, never rounded up.
        assert settled.pay_amount == Decimal("0.007352941176470589")
        assert settled.actually_paid == Decimal("0.011029411764705883")
        assert settled.credit_usd == Decimal("37.49")
        assert settled.variance == "overpaid" and settled.hold_reason is None
        assert await stack.balance(user) == Decimal("37.49")
        assert await _ledger_transactions(stack) == 1

        status, view = await stack.api_get(f"/v1/payments/{payment.id}")
        assert status == 200
        assert view["status"] == "completed"
        assert view["variance"] == "overpaid"
        assert view["credit_usd"] == "37.49"
        assert view["amount_usd"] == "25.00"
        assert view["settled_at"] is not None
        await _invariants_hold(stack)


async def test_overpayment_held_for_review_credits_nothing_and_is_visible(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payments_overpaid_policy="hold_for_review") as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00", "btc")
        await _play(stack, payment, "over")
        await stack.wait_idle()

        held = await stack.payment(payment.id)
        assert held.status.value == "completed"
        assert held.variance == "overpaid"
        assert held.hold_reason and "overpaid" in held.hold_reason
        assert held.settled_at is None and held.next_poll_at is None
        # Even an explicit settle or poll does not credit a held payment.
        assert (await settle_deposit(stack.ctx, payment.id)).credited is False
        await poll_status(stack.ctx, payment.id)
        await stack.wait_idle()
        assert (await stack.payment(payment.id)).settled_at is None
        assert await stack.balance(user) == Decimal("0")
        assert await _ledger_transactions(stack) == 0

        status, view = await stack.api_get(f"/v1/payments/{payment.id}")
        assert status == 200 and view["hold_reason"] == held.hold_reason and view["variance"] == "overpaid"
        metrics = await _metrics(stack)
        assert metrics["payments_held_for_review"] == "1"
        assert metrics["payments_awaiting_settlement"] == "0"
        assert metrics["ledger_transactions_total"] == "0"


# -- partial payment ----------------------------------------------------------------------------------------


async def test_partial_payment_credits_received_value_once_after_expiry(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payments_expiry_grace=0) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "25.00", "eth")
        await _play(stack, payment, "partial")  # waiting → confirming (half arrived) → partially_paid, by IPN
        await stack.wait_idle()

        partial = await stack.payment(payment.id)
        assert partial.status.value == "partially_paid"
        assert await _events(stack, payment.id) == [
            ("create", None, "pending"),
            ("ipn", "pending", "confirming"),
            ("ipn", "confirming", "partially_paid"),
        ]
        assert partial.actually_paid == Decimal("0.003676470588235294")
        # Not past expiry: a poll keeps it open, nothing is credited.
        await poll_status(stack.ctx, payment.id)
        await stack.wait_idle()
        still_open = await stack.payment(payment.id)
        assert still_open.final_at is None and still_open.settled_at is None and still_open.credit_usd is None
        assert still_open.next_poll_at is not None
        assert await _ledger_transactions(stack) == 0

        await _set_expires_at(stack, payment.id, datetime.now(UTC) - timedelta(seconds=1))
        await poll_status(stack.ctx, payment.id)
        settled = await stack.wait_settled(payment.id)
        await stack.wait_idle()
        assert settled.status.value == "partially_paid" and settled.final_at is not None
        assert settled.variance == "underpaid"
        assert settled.credit_usd == Decimal("12.49")  # 12.4999999… floored
        assert await stack.balance(user) == Decimal("12.49")

        # Exactly once: further polls, settles and IPNs change nothing.
        await poll_status(stack.ctx, payment.id)
        assert (await settle_deposit(stack.ctx, payment.id)).credited is False
        await _gateway_status(stack, payment, "partially_paid")
        await stack.wait_idle()
        assert await _ledger_transactions(stack) == 1
        assert await stack.balance(user) == Decimal("12.49")
        assert [e for e in await _events(stack, payment.id) if e[0] == "settle"] == [
            ("settle", "partially_paid", "partially_paid")
        ]
        await _invariants_hold(stack)


# -- failed, expired, our own expiry ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["failed", "expired"])
async def test_failed_and_expired_credit_nothing_and_stop_polling(database_url, redis_namespace, scenario):
    async with Stack(database_url, redis_namespace) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00", "btc")
        await _play(stack, payment, scenario)
        await stack.wait_idle()

        final = await stack.payment(payment.id)
        assert final.status.value == scenario
        assert final.next_poll_at is None
        assert final.settled_at is None and not final.credit_usd and final.hold_reason is None
        assert await poll_status(stack.ctx, payment.id) is None  # terminal: the gateway is not even asked
        assert await stack.balance(user) == Decimal("0")
        assert await _ledger_transactions(stack) == 0
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0
        assert await _events(stack, payment.id) == [("create", None, "pending"), ("ipn", "pending", scenario)]


async def test_our_own_expiry_after_grace_when_gateway_still_waiting(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, payments_expiry_grace=60) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00", "btc")

        # Past expires_at but inside the grace: still pending after a poll.
        await _set_expires_at(stack, payment.id, datetime.now(UTC) - timedelta(seconds=30))
        await poll_status(stack.ctx, payment.id)
        assert (await stack.payment(payment.id)).status.value == "pending"

        await _set_expires_at(stack, payment.id, datetime.now(UTC) - timedelta(seconds=61))
        result = await poll_status(stack.ctx, payment.id)
        assert result is not None and result.payment.status.value == "expired"
        await stack.wait_idle()
        expired = await stack.payment(payment.id)
        assert expired.status.value == "expired" and expired.gateway_status == "waiting"
        assert expired.next_poll_at is None and expired.settled_at is None
        assert await _events(stack, payment.id) == [("create", None, "pending"), ("poll", "pending", "expired")]
        assert await stack.balance(user) == Decimal("0")
        assert await _ledger_transactions(stack) == 0


async def test_late_payment_after_expiry_is_held_for_an_operator(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00", "btc")
        await _play(stack, payment, "late")  # waiting → expired → confirming … finished (funds arrived late)
        await stack.wait_idle()
        late = await stack.payment(payment.id)
        assert late.status.value == "expired"
        assert await stack.balance(user) == Decimal("0")
        assert late.hold_reason is not None and late.actually_paid == late.pay_amount


# -- stale, out-of-order, repeated and unknown statuses ------------------------------------------------------


async def test_stale_repeated_and_unknown_statuses_never_move_backwards_or_credit_twice(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00", "btc")

        # Unknown status while pending: ignored, nothing stored, no event.
        before = await stack.payment(payment.id)
        answer = await _gateway_status(stack, payment, "mystery")
        assert answer["ipn"]["status"] == 200
        after = await stack.payment(payment.id)
        assert after.status.value == "pending" and after.gateway_status == "waiting"
        assert after.updated_at == before.updated_at
        assert await _events(stack, payment.id) == [("create", None, "pending")]
        # …also when it comes from a poll.
        await poll_status(stack.ctx, payment.id)
        polled = await stack.payment(payment.id)
        assert polled.status.value == "pending" and polled.gateway_status == "waiting"
        assert await _events(stack, payment.id) == [("create", None, "pending")]

        await _gateway_status(stack, payment, "confirmed")
        assert (await stack.payment(payment.id)).status.value == "confirmed"
        # An older status, by IPN or by poll, does not move it back.
        await _gateway_status(stack, payment, "waiting")
        await _gateway_status(stack, payment, "confirming", send_ipn=False)
        await poll_status(stack.ctx, payment.id)
        assert (await stack.payment(payment.id)).status.value == "confirmed"

        await _gateway_status(stack, payment, "finished")
        await stack.wait_settled(payment.id)
        await stack.wait_idle()
        for stale in ("confirming", "waiting", "finished", "finished", "mystery", "partially_paid"):
            await _gateway_status(stack, payment, stale)
        await poll_status(stack.ctx, payment.id)
        await stack.wait_idle()

        final = await stack.payment(payment.id)
        assert final.status.value == "completed" and final.gateway_status == "finished"
        assert await _events(stack, payment.id) == [
            ("create", None, "pending"),
            ("ipn", "pending", "confirmed"),
            ("ipn", "confirmed", "completed"),
            ("settle", "completed", "completed"),
        ]
        assert await _ledger_transactions(stack) == 1
        assert await stack.balance(user) == Decimal("20.00")
        log = await stack.sim_get(f"/sim/ipn-log?payment_id={payment.provider_payment_id}")
        assert all(entry["status"] == 200 for entry in log["deliveries"])  # every IPN acknowledged
        await _invariants_hold(stack)


# -- gateway errors at creation -----------------------------------------------------------------------------


async def _create_requests(stack: Stack) -> list[int]:
    answer = await stack.sim_get("/sim/requests?path_prefix=/v1/payment")
    return [entry["status"] for entry in answer["requests"] if entry["method"] == "POST"]


async def test_gateway_rejection_at_creation_fails_the_payment_without_retrying(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        async with stack.pool.acquire() as conn:
            # Forget our stored minimum so the request reaches the gateway, which refuses it (btc min 2.00).
            await conn.execute("UPDATE currencies SET min_amount_usd = NULL WHERE code = 'btc'")
        user, request_id = _ref("user"), _ref("req")
        stack.actors.create_payment.send(request_id, user, "1.50", "btc")
        payment = await stack.payment_for_request(request_id)
        await stack.wait_idle()

        assert payment.status.value == "failed"
        assert payment.provider_payment_id is None
        assert payment.error_code == "AMOUNT_MINIMAL_ERROR"
        assert "less than minimal" in payment.error_message
        assert payment.next_poll_at is None and payment.create_claimed_until is None
        assert await _create_requests(stack) == [400]  # asked once, not retried
        assert await _events(stack, payment.id) == [("create", "pending", "failed")]

        # A replay of the same request returns the failed payment without asking the gateway again.
        replay = await create_payment(
            stack.ctx,
            CreatePaymentRequest(request_id=request_id, user_id=user, amount_usd=Decimal("1.50"), currency_code="btc"),
        )
        assert replay.id == payment.id and replay.status.value == "failed"
        assert await _create_requests(stack) == [400]
        assert await _ledger_transactions(stack) == 0


async def test_transient_gateway_errors_at_creation_are_retried_and_create_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace) as stack:
        await stack.sim_post("/sim/faults", {"status": 500, "count": 2, "path_prefix": "/v1/payment", "method": "POST"})
        user, request_id = _ref("user"), _ref("req")
        # Short backoff for the test; the retry itself is dramatiq's, driven by the actor's exception.
        stack.actors.create_payment.send_with_options(
            kwargs={"request_id": request_id, "user_id": user, "amount_usd": "20.00", "currency_code": "btc"},
            min_backoff=20,
            max_backoff=200,
        )
        payment = await stack.payment_for_request(request_id)
        await stack.wait_idle()

        assert payment.status.value == "pending" and payment.provider_payment_id
        assert await _create_requests(stack) == [500, 500, 201]
        at_gateway = await stack.sim_get(f"/sim/payments?order_id={payment.id}")
        assert at_gateway["count"] == 1
        assert at_gateway["payments"][0]["payment_id"] == payment.provider_payment_id
        assert await _events(stack, payment.id) == [("create", None, "pending")]

        # And it still works end to end afterwards.
        await _play(stack, payment, "paid")
        await stack.wait_settled(payment.id)

        async def credited() -> bool:
            return await stack.balance(user) == Decimal("20.00")

        await eventually(credited)


async def test_top_up_after_a_settled_partial_payment_is_not_lost(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payments_expiry_grace=0) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "20.00", "btc")
        await _play(stack, payment, "partial")
        await _set_expires_at(stack, payment.id, datetime.now(UTC) - timedelta(seconds=1))
        await poll_status(stack.ctx, payment.id)
        settled = await stack.wait_settled(payment.id)
        await stack.wait_idle()
        assert settled.credit_usd == Decimal("9.99") and await stack.balance(user) == Decimal("9.99")

        # The customer sends the rest after all; the gateway reports the payment finished.
        await _gateway_status(stack, payment, "finished", actually_paid=str(settled.pay_amount))
        await stack.wait_idle()
        after = await stack.payment(payment.id)
        async with stack.pool.acquire() as conn:
            posted = await conn.fetchval(
                "SELECT sum(amount) FROM ledger_entries e JOIN ledger_accounts a"
                " ON a.id = e.account_id WHERE a.user_id = $1",
                user,
            )
        # What the payment says it credited is what the ledger holds ...
        assert after.credit_usd == posted
        # ... and the 10.01 that arrived later is either credited or in front of an operator.
        assert await stack.balance(user) == Decimal("20.00") or after.hold_reason is not None
