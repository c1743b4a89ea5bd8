"""Acceptance: 200 settlements for one user from 16 concurrent workers.

The balance equals the sum credited, the ledger sums to zero, every payment is credited exactly
once (a quarter of them are delivered twice), and the user's history chains: in entry-id order,
each ``balance_after`` is the previous one plus the entry's amount.
"""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import ROUND_DOWN, Decimal

from domain.ids import new_payment_id
from domain.ledger import GATEWAY_CLEARING
from domain.payments import PaymentStatus, PaymentUpdate, request_fingerprint
from storage import ledger, payments
from storage.db import transaction
from tests.integration.stack import Stack, eventually

PAYMENTS = 200
DUPLICATED = 50
WORKER_THREADS = 16


def _amounts() -> list[Decimal]:
    """Varied cent amounts from 1.01 up, none repeating in a simple pattern."""
    return [Decimal("1.01") + Decimal(i) * Decimal("0.37") + Decimal(i % 7) * Decimal("10.10") for i in range(PAYMENTS)]


async def _completed_unsettled_payments(stack: Stack, user: str, amounts: list[Decimal]) -> list[str]:
    """Payments as the create and poll stages leave them: at the gateway, paid in full, not yet settled."""
    ids: list[str] = []
    async with transaction(stack.pool) as conn:
        for i, amount in enumerate(amounts):
            request_id = f"req-{uuid.uuid4().hex}"
            payment = await payments.insert_payment(
                conn,
                payment_id=new_payment_id(),
                request_id=request_id,
                fingerprint=request_fingerprint(user_id=user, amount_usd=amount, currency_code="btc", description=""),
                user_id=user,
                amount_usd=amount,
                currency_code="btc",
                description="",
            )
            assert payment is not None
            pay_amount = (amount / Decimal("97000")).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
            updated = await payments.update_payment(
                conn,
                payment.id,
                PaymentUpdate(
                    provider_payment_id=str(5_000_000_000 + i),
                    status=PaymentStatus.COMPLETED,
                    gateway_status="finished",
                    pay_currency="btc",
                    pay_amount=pay_amount,
                    actually_paid=pay_amount,
                    pay_address=f"bc1qtest{i:034d}",
                ),
            )
            assert updated.settled_at is None
            ids.append(payment.id)
    return ids


async def test_200_concurrent_settlements_for_one_user(database_url, redis_namespace):
    async with Stack(
        database_url,
        redis_namespace,
        ipn=False,
        worker_threads=WORKER_THREADS,
        start_worker=False,
        db_pool_max=WORKER_THREADS,
    ) as stack:
        user = f"user-{uuid.uuid4().hex[:8]}"
        amounts = _amounts()
        total = sum(amounts, Decimal(0))
        ids = await _completed_unsettled_payments(stack, user, amounts)

        messages = [stack.actors.settle_deposit.message(payment_id) for payment_id in ids]
        for message in messages:
            stack.broker.enqueue(message)
        for message in messages[::4][:DUPLICATED]:  # a second delivery of the very same message
            stack.broker.enqueue(message)
        assert stack.broker.client.llen(f"{stack.namespace}:settle-deposit") == PAYMENTS + DUPLICATED
        stack.start_workers()

        async def all_settled():
            async with stack.pool.acquire() as conn:
                return await conn.fetchval("SELECT count(*) FROM payments WHERE settled_at IS NOT NULL") == PAYMENTS

        await eventually(all_settled, timeout=30)
        await stack.wait_idle(timeout=30)
        assert stack.broker.client.zcard(f"{stack.namespace}:settle-deposit.XQ") == 0

        assert await stack.balance(user) == total
        async with stack.pool.acquire() as conn:
            view = await ledger.user_balance(conn, user)
            assert (view.balance_usd, view.total_deposited, view.held_usd) == (total, total, Decimal(0))
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == PAYMENTS
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2 * PAYMENTS
            assert await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger_entries") == 0
            clearing = await conn.fetchval(
                "SELECT sum(e.amount) FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id"
                " WHERE a.code = $1",
                GATEWAY_CLEARING.code,
            )
            assert clearing == -total
            assert await ledger.invariant_violations(conn) == []

            # Each payment credited once, with its own ledger transaction and one settle event.
            rows = await conn.fetch("SELECT id, credit_usd, ledger_transaction_id FROM payments ORDER BY id")
            assert {r["id"]: r["credit_usd"] for r in rows} == dict(zip(ids, amounts, strict=True))
            assert len({r["ledger_transaction_id"] for r in rows}) == PAYMENTS
            settle_events = await conn.fetch("SELECT payment_id FROM payment_events WHERE source = 'settle'")
            assert Counter(r["payment_id"] for r in settle_events) == Counter(ids)

            history = await ledger.user_history(conn, user, limit=PAYMENTS + 10)
        assert len(history) == PAYMENTS
        assert Counter(h.amount_usd for h in history) == Counter(amounts)
        assert {h.reference for h in history} == {f"deposit:{payment_id}" for payment_id in ids}
        running = Decimal(0)
        broken = []
        for item in sorted(history, key=lambda h: h.entry_id):
            running += item.amount_usd
            if item.balance_after != running:
                broken.append((item.entry_id, item.amount_usd, item.balance_after, running))
        assert broken == [], f"balance_after does not chain in entry-id order: {broken[:5]}"
        assert running == total
