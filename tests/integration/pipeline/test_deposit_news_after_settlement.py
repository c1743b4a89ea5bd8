"""Regression tests for the review fixes on the deposit side.

Stale gateway snapshots move nothing (not even forward) and expiry acts only on a fresh
partially_paid poll; news after crediting (top-ups, refunds) is held for an operator; each
release of later funds posts once; polls defer to the scheduler in a gateway outage; the IPN
canonical path returns what was signed. Real stack throughout: simulator over HTTP, Redis,
Postgres, the web app on loopback.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext

import pytest

from domain.errors import InvalidRequest
from domain.payments import Payment, PaymentUpdate
from gateway.models import GatewayPayment
from gateway.signature import canonical_json, sign
from services.apply_status import apply_gateway_status
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.poll_status import poll_status
from services.release_deposit import release_held_deposit
from services.settle_deposit import settle_deposit
from settings import IPN_PATH
from storage import ledger, payments
from tests.integration.metrics_text import metric_samples
from tests.integration.stack import IPN_SECRET, Stack, eventually


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create(stack: Stack, user: str, amount: str = "50.00", currency: str = "eth") -> Payment:
    request = CreatePaymentRequest(
        request_id=_ref("req"), user_id=user, amount_usd=Decimal(amount), currency_code=currency, description="t"
    )
    payment = await create_payment(stack.ctx, request)
    assert payment.provider_payment_id and payment.pay_amount and payment.status.value == "pending"
    return payment


async def _sim_status(stack: Stack, payment: Payment, status: str, *, ipn: bool = False, **extra: object) -> dict:
    body = {"status": status, "send_ipn": ipn, **extra}
    return await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/status", body)


async def _past_expiry(stack: Stack, payment_id: str) -> None:
    async with stack.pool.acquire() as conn:
        await payments.update_payment(
            conn, payment_id, PaymentUpdate(expires_at=datetime.now(UTC) - timedelta(minutes=5))
        )


async def _deposit_transactions(stack: Stack, payment_id: str) -> list[tuple[str, Decimal]]:
    """(idempotency key, amount credited to the user) of every ledger transaction of this payment."""
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT t.idempotency_key, e.amount FROM ledger_transactions t
              JOIN ledger_entries e ON e.transaction_id = t.id
              JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'user_available'
             WHERE t.idempotency_key = $1 OR t.idempotency_key LIKE $2 ORDER BY t.id
            """,
            f"deposit:{payment_id}",
            f"deposit:{payment_id}:%",
        )
    return [(r["idempotency_key"], r["amount"]) for r in rows]


async def _metrics(stack: Stack) -> dict[str, str]:
    async with stack.http.get(stack.web_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return metric_samples(text)


async def _no_violations(stack: Stack) -> None:
    async with stack.pool.acquire() as conn:
        assert await ledger.invariant_violations(conn) == []


def _worth(payment: Payment, actually_paid: Decimal) -> Decimal:
    """actually_paid / pay_amount × price, floored to the cent, worked out independently."""
    assert payment.pay_amount is not None
    with localcontext() as exact:
        exact.prec = 80
        cents = (actually_paid * payment.amount_usd * 100 / payment.pay_amount).to_integral_value(rounding=ROUND_FLOOR)
    return (cents / 100).quantize(Decimal("0.01"))


def _snapshot(payment: Payment, status: str, *, at: datetime, actually_paid: Decimal) -> GatewayPayment:
    return GatewayPayment(
        payment_id=payment.provider_payment_id or "",
        status=status,
        pay_address=payment.pay_address,
        pay_amount=payment.pay_amount,
        actually_paid=actually_paid,
        pay_currency=payment.currency_code,
        order_id=payment.id,
        updated_at=at,
    )


async def _settled_partial(stack: Stack, user: str) -> Payment:
    """A partially paid payment (half of pay_amount), finalised by a fresh poll past expiry and credited."""
    payment = await _create(stack, user)
    await _sim_status(stack, payment, "partially_paid")
    await poll_status(stack.ctx, payment.id)
    assert (await stack.payment(payment.id)).final_at is None  # not past expiry yet: nothing final
    await _past_expiry(stack, payment.id)
    await poll_status(stack.ctx, payment.id)
    result = await settle_deposit(stack.ctx, payment.id)
    assert result.credited
    settled = result.payment
    assert settled.status.value == "partially_paid" and settled.settled_at and settled.final_at
    assert settled.credit_usd == _worth(settled, settled.actually_paid) > 0
    assert settled.hold_reason is None
    return settled


# -- 3. stale snapshots, and expiry on the fresh poll only ------------------------------------------------------


async def test_a_snapshot_older_than_the_stored_one_moves_nothing_even_forward(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, _ref("user"))
        created = payment.gateway_updated_at or datetime.now(UTC)
        t1, t2 = created + timedelta(seconds=30), created + timedelta(seconds=60)
        full = payment.pay_amount
        confirmed = await apply_gateway_status(
            stack.ctx, _snapshot(payment, "confirmed", at=t2, actually_paid=full), source="ipn"
        )
        assert confirmed.payment.status.value == "confirmed" and confirmed.payment.gateway_updated_at == t2

        # partially_paid ranks above confirmed, so it would be "forward", but it is older than what we know.
        stale = _snapshot(payment, "partially_paid", at=t1, actually_paid=full / 2)
        for source, polled in (("ipn", False), ("poll", True)):
            result = await apply_gateway_status(stack.ctx, stale, source=source, polled=polled)
            assert result.settle_due is False
            after = await stack.payment(payment.id)
            assert after.status.value == "confirmed", source
            assert (after.actually_paid, after.gateway_status, after.gateway_updated_at) == (full, "confirmed", t2)
            assert after.final_at is None and after.credit_usd is None

        # The same IPN, re-signed and sent to the endpoint, is just as powerless.
        body = {
            "payment_id": int(payment.provider_payment_id),
            "payment_status": "partially_paid",
            "order_id": payment.id,
            "pay_amount": payment.pay_amount,
            "actually_paid": full / 2,
            "pay_currency": payment.currency_code,
            "updated_at": int(t1.timestamp() * 1000),
        }
        raw = canonical_json(body).encode()
        async with stack.http.post(
            stack.web_url + IPN_PATH, data=raw, headers={"x-nowpayments-sig": sign(raw, IPN_SECRET)}
        ) as response:
            assert response.status == 200 and (await response.json())["payment_status"] == "confirmed"
        after = await stack.payment(payment.id)
        assert (after.status.value, after.actually_paid) == ("confirmed", full)
        async with stack.pool.acquire() as conn:
            moves = [(e["from_status"], e["to_status"]) for e in await payments.list_events(conn, payment.id)]
        assert ("confirmed", "partially_paid") not in moves


@pytest.mark.parametrize("fresh_status", ["confirming", "confirmed"])
async def test_past_expiry_only_a_fresh_partially_paid_poll_finalises_a_partial_payment(
    database_url, redis_namespace, fresh_status
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False, payments_expiry_grace=0) as stack:
        user = _ref("user")
        payment = await _create(stack, user)
        t0 = (payment.gateway_updated_at or datetime.now(UTC)) + timedelta(seconds=10)
        half = payment.pay_amount / 2
        await apply_gateway_status(
            stack.ctx, _snapshot(payment, "partially_paid", at=t0, actually_paid=half), source="ipn"
        )
        await _past_expiry(stack, payment.id)

        # The gateway, asked just now, says more is on its way: the partial payment is not final.
        newer = _snapshot(payment, fresh_status, at=t0 + timedelta(seconds=20), actually_paid=payment.pay_amount)
        result = await apply_gateway_status(stack.ctx, newer, source="poll", polled=True)
        assert result.settle_due is False
        held_open = await stack.payment(payment.id)
        assert held_open.status.value == "partially_paid"
        assert held_open.final_at is None and held_open.credit_usd is None and held_open.settled_at is None
        assert held_open.next_poll_at is not None  # still being watched
        # A stale partially_paid (older than what we stored) cannot finalise it either.
        stale = _snapshot(payment, "partially_paid", at=t0 - timedelta(seconds=5), actually_paid=half)
        assert (await apply_gateway_status(stack.ctx, stale, source="poll", polled=True)).settle_due is False
        assert (await stack.payment(payment.id)).final_at is None
        assert (await settle_deposit(stack.ctx, payment.id)).credited is False
        assert await stack.balance(user) == Decimal("0")

        # Only a fresh poll saying partially_paid makes it final and creditable.
        fresh = _snapshot(payment, "partially_paid", at=t0 + timedelta(seconds=40), actually_paid=half)
        result = await apply_gateway_status(stack.ctx, fresh, source="poll", polled=True)
        assert result.settle_due is True and result.payment.final_at is not None
        assert (await settle_deposit(stack.ctx, payment.id)).credited is True
        assert await stack.balance(user) == _worth(result.payment, half) > 0
        assert len(await _deposit_transactions(stack, payment.id)) == 1
        await _no_violations(stack)


# -- 4. a top-up on a settled completed payment is held, then released once --------------------------------------


async def test_top_up_after_a_settled_completed_payment_is_held_and_released_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "40.00", "btc")
        answer = await _sim_status(stack, payment, "finished", ipn=True)
        assert answer["ipn"] and answer["ipn"]["ok"], answer
        assert (await settle_deposit(stack.ctx, payment.id)).credited
        assert await stack.balance(user) == Decimal("40.00")

        # More arrives after we credited: the gateway's IPN reports a bigger actually_paid.
        more = payment.pay_amount * Decimal("1.5")
        answer = await _sim_status(stack, payment, "finished", ipn=True, actually_paid=str(more))
        assert answer["ipn"] and answer["ipn"]["ok"], answer
        held = await stack.payment(payment.id)
        assert held.status.value == "completed" and held.actually_paid == more
        assert held.hold_reason and "funds after settlement" in held.hold_reason
        assert held.credit_usd == Decimal("40.00")  # nothing more credited automatically
        assert (await settle_deposit(stack.ctx, payment.id)).credited is False
        assert await stack.balance(user) == Decimal("40.00")
        assert (await _metrics(stack))["payments_held_for_review"] == "1"
        status, view = await stack.api_get(f"/v1/payments/{payment.id}")
        assert status == 200 and view["hold_reason"] == held.hold_reason

        released = await release_held_deposit(stack.pool, payment.id, operator="alice", note="top-up confirmed")
        worth = _worth(held, more)
        assert worth == Decimal("60.00")
        assert released.credit_usd == worth and released.hold_reason is None
        assert await stack.balance(user) == worth
        with pytest.raises(InvalidRequest, match="not held"):
            await release_held_deposit(stack.pool, payment.id, operator="alice", note="again")
        assert await stack.balance(user) == worth
        assert await _deposit_transactions(stack, payment.id) == [
            (f"deposit:{payment.id}", Decimal("40.00")),
            (f"deposit:{payment.id}:to:{worth}", worth - Decimal("40.00")),
        ]
        assert (await _metrics(stack))["payments_held_for_review"] == "0"
        await _no_violations(stack)


# -- 5. refunded or failed after a settled partial payment: held, credit stays ------------------------------------


@pytest.mark.parametrize("gateway_status", ["refunded", "failed"])
async def test_settled_partial_payment_later_reported_undone_is_held_and_keeps_its_credit(
    database_url, redis_namespace, gateway_status
):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False, payments_expiry_grace=0) as stack:
        user = _ref("user")
        settled = await _settled_partial(stack, user)
        credited = settled.credit_usd

        await _sim_status(stack, settled, gateway_status)
        await poll_status(stack.ctx, settled.id)
        after = await stack.payment(settled.id)
        assert after.status.value == gateway_status
        assert after.hold_reason and gateway_status in after.hold_reason and str(credited) in after.hold_reason
        assert after.credit_usd == credited and after.settled_at == settled.settled_at
        assert await stack.balance(user) == credited  # no automatic reversal
        assert await _deposit_transactions(stack, settled.id) == [(f"deposit:{settled.id}", credited)]

        status, view = await stack.api_get(f"/v1/payments/{settled.id}")
        assert status == 200 and view["hold_reason"] == after.hold_reason
        assert (await _metrics(stack))["payments_held_for_review"] == "1"
        async with stack.pool.acquire() as conn:
            assert [p.id for p in await payments.list_held(conn)] == [settled.id]
            events = await payments.list_events(conn, settled.id)
        assert any((e["detail"] or {}).get("hold_reason") == after.hold_reason for e in events)
        await _no_violations(stack)


# -- 6. two successive top-ups after a settled partial payment, each released once ------------------------------


async def test_successive_top_ups_after_a_settled_partial_payment_are_each_released_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False, payments_expiry_grace=0) as stack:
        user = _ref("user")
        settled = await _settled_partial(stack, user)
        first_credit = settled.credit_usd
        pay_amount = settled.pay_amount
        credited = first_credit
        for fraction in (Decimal("0.75"), Decimal("0.9")):
            paid = (pay_amount * fraction).quantize(Decimal("1e-18"))
            await _sim_status(stack, settled, "partially_paid", actually_paid=str(paid))
            await poll_status(stack.ctx, settled.id)
            held = await stack.payment(settled.id)
            assert held.actually_paid == paid
            assert held.hold_reason and "funds after settlement" in held.hold_reason, fraction
            assert held.credit_usd == credited and await stack.balance(user) == credited
            released = await release_held_deposit(stack.pool, settled.id, operator="alice", note=f"top-up {fraction}")
            assert released.credit_usd == _worth(held, paid) > credited
            credited = released.credit_usd
            assert await stack.balance(user) == credited

        # Everything that arrived is credited, in three postings, one per cumulative credit.
        assert credited == _worth(settled, (pay_amount * Decimal("0.9")).quantize(Decimal("1e-18")))
        postings = await _deposit_transactions(stack, settled.id)
        assert postings[0][0] == f"deposit:{settled.id}"
        assert len(postings) == 3 and len({key for key, _ in postings}) == 3
        assert sum(amount for _, amount in postings) == credited

        # A repeated release is refused: first because nothing is held any more ...
        with pytest.raises(InvalidRequest, match="not held"):
            await release_held_deposit(stack.pool, settled.id, operator="alice", note="again")
        # ... and even replayed from the state before the last release, its ledger key refuses it.
        before_last = postings[1][0].rsplit(":", 1)[1]
        async with stack.pool.acquire() as conn:
            await payments.update_payment(
                conn, settled.id, PaymentUpdate(hold_reason="replayed", credit_usd=Decimal(before_last))
            )
        with pytest.raises(InvalidRequest, match="already released"):
            await release_held_deposit(stack.pool, settled.id, operator="alice", note="replay")
        assert await stack.balance(user) == credited
        assert len(await _deposit_transactions(stack, settled.id)) == 3
        await _no_violations(stack)


# -- 7. poll_status in a gateway outage: processed once, acked, left to the scheduler ----------------------------


async def test_poll_status_in_a_gateway_outage_is_not_retried_and_leaves_the_payment_to_the_scheduler(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, ipn=False) as stack:
        payment = await _create(stack, _ref("user"))
        assert payment.next_poll_at is not None
        path = f"/v1/payment/{payment.provider_payment_id}"
        await stack.sim_post("/sim/faults", {"status": 503, "count": 1000, "path_prefix": path, "method": "GET"})

        async def gets() -> int:
            seen = (await stack.sim_get(f"/sim/requests?path_prefix={path}"))["requests"]
            return sum(1 for r in seen if r["method"] == "GET" and r["path"] == path)

        assert await gets() == 0
        stack.actors.poll_status.send(payment.id)
        client = stack.broker.client
        ns, queue = stack.namespace, "poll-status"

        def queues() -> dict[str, int]:
            return {
                "ready": client.llen(f"{ns}:{queue}"),
                "stored": client.hlen(f"{ns}:{queue}.msgs"),
                "delay_ready": client.llen(f"{ns}:{queue}.DQ"),
                "delayed": client.hlen(f"{ns}:{queue}.DQ.msgs"),
                "dead": client.zcard(f"{ns}:{queue}.XQ"),
            }

        async def acked() -> bool:
            return await gets() >= 3 and all(v == 0 for v in queues().values())

        await eventually(acked, timeout=15)
        # Longer than dramatiq's first retry backoff (1 s, jittered): a retry would have shown up by now.
        await asyncio.sleep(2.5)
        assert await gets() == 3  # the client's own bounded retries (3 attempts) for one message, no more
        assert queues() == {"ready": 0, "stored": 0, "delay_ready": 0, "delayed": 0, "dead": 0}
        assert client.zcard(f"{ns}:{queue}.XQ") == 0 and client.hlen(f"{ns}:{queue}.XQ.msgs") == 0
        after = await stack.payment(payment.id)
        assert after.status.value == "pending" and after.next_poll_at is not None  # the scheduler comes back


# -- 9. the IPN's canonical path records the signed values, not the bytes sent -----------------------------------


async def test_ipn_resent_with_an_amount_below_double_precision_records_what_was_signed(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        payment = await _create(stack, _ref("user"), "20.00", "btc")
        body = {
            "payment_id": int(payment.provider_payment_id),
            "payment_status": "failed",
            "order_id": payment.id,
            "pay_address": payment.pay_address,
            "pay_amount": payment.pay_amount,
            "actually_paid": 0,
            "pay_currency": payment.currency_code,
            "price_amount": payment.amount_usd,
            "price_currency": "usd",
            "updated_at": int(datetime.now(UTC).timestamp() * 1000),
        }
        signed = canonical_json(body)
        signature = sign(signed.encode(), IPN_SECRET)
        assert '"actually_paid":0,' in signed
        tampered = signed.replace('"actually_paid":0,', '"actually_paid":1e-400,').encode()
        assert tampered != signed.encode()
        async with stack.http.post(
            stack.web_url + IPN_PATH, data=tampered, headers={"x-nowpayments-sig": signature}
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["payment_status"] == "failed"

        after = await stack.payment(payment.id)
        assert after.status.value == "failed"
        assert after.actually_paid == 0
        # A failed payment that "received funds" would be held for an operator; nothing was received.
        assert after.hold_reason is None and after.credit_usd == 0 and after.settled_at is None
        assert (await _metrics(stack))["payments_held_for_review"] == "0"
