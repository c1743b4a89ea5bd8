"""Acceptance for group settlement: many settle-deposit messages credited in one database transaction.

A group holds an already-settled payment, one held for review, one whose row another transaction
holds locked and one that does not exist; the rest is credited exactly once, in one database
transaction, the locked one right after its lock is released, and the unknown one is dead-lettered
with its reason, exactly as the single stage does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import ROUND_DOWN, Decimal

from domain.ids import new_payment_id
from domain.payments import PaymentStatus, PaymentUpdate, request_fingerprint
from services.settle_batch import settle_group
from services.settle_deposit import settle_deposit
from storage import ledger, payments
from storage.db import transaction
from tests.integration.stack import Stack, eventually

PLAIN = 12


async def _completed_payment(stack: Stack, user: str, amount: Decimal, *, paid_share: Decimal = Decimal(1)) -> str:
    """A payment as the poll stage leaves it: at the gateway, completed, not yet settled."""
    async with transaction(stack.pool) as conn:
        payment = await payments.insert_payment(
            conn,
            payment_id=new_payment_id(),
            request_id=f"req-{uuid.uuid4().hex}",
            fingerprint=request_fingerprint(user_id=user, amount_usd=amount, currency_code="btc", description=""),
            user_id=user,
            amount_usd=amount,
            currency_code="btc",
            description="",
        )
        assert payment is not None
        pay_amount = (amount / Decimal("97000")).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
        await payments.update_payment(
            conn,
            payment.id,
            PaymentUpdate(
                provider_payment_id=uuid.uuid4().hex,
                status=PaymentStatus.COMPLETED,
                gateway_status="finished",
                pay_currency="btc",
                pay_amount=pay_amount,
                actually_paid=pay_amount * paid_share,
            ),
        )
    return payment.id


class _Group:
    """Payments of every kind a settle-deposit group can meet."""

    def __init__(self, plain: list[str], amounts: list[Decimal], settled: str, held: str, locked: str) -> None:
        self.plain, self.amounts, self.settled, self.held, self.locked = plain, amounts, settled, held, locked
        self.unknown = "PAY_20250101000000_notthere"

    @property
    def creditable(self) -> list[str]:
        return [*self.plain, self.locked]

    @property
    def all(self) -> list[str]:
        return [*self.plain, self.settled, self.held, self.locked, self.unknown]


async def _group(stack: Stack, user: str) -> _Group:
    amounts = [Decimal("1.01") + Decimal(i) * Decimal("3.17") for i in range(PLAIN + 2)]
    ids = [await _completed_payment(stack, user, amount) for amount in amounts]
    held = await _completed_payment(stack, user, Decimal("50.00"), paid_share=Decimal("0.5"))
    first = await settle_deposit(stack.ctx, ids[-1])  # settled before the group arrives
    assert first.credited
    return _Group(plain=ids[:PLAIN], amounts=amounts, settled=ids[-1], held=held, locked=ids[-2])


async def _hold_row_lock(stack: Stack, payment_id: str):
    conn = await stack.pool.acquire()
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", payment_id)
    return conn, tx


async def _credited_once(stack: Stack, group: _Group, user: str) -> None:
    keys = [f"deposit:{payment_id}" for payment_id in [*group.creditable, group.settled]]
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT idempotency_key FROM ledger_transactions WHERE idempotency_key = ANY($1::text[])", keys
        )
        assert Counter(r["idempotency_key"] for r in rows) == Counter(keys)
        assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == len(keys)
        events = await conn.fetch("SELECT payment_id FROM payment_events WHERE source = 'settle'")
        assert Counter(r["payment_id"] for r in events) == Counter([*group.creditable, group.settled])
        held = await payments.get_payment(conn, group.held)
        assert held is not None and held.settled_at is None and held.ledger_transaction_id is None
        view = await ledger.user_balance(conn, user)
        assert view.balance_usd == sum(group.amounts, Decimal(0))
        assert await ledger.invariant_violations(conn) == []


async def test_worker_settles_a_group_once_and_the_locked_payment_when_released(database_url, redis_namespace):
    async with Stack(
        database_url, redis_namespace, ipn=False, start_worker=False, payments_underpaid_policy="hold_for_review"
    ) as stack:
        user = f"user-{uuid.uuid4().hex[:8]}"
        group = await _group(stack, user)
        holder, held_tx = await _hold_row_lock(stack, group.locked)
        try:
            for payment_id in [*group.all, *group.plain[:3]]:  # three plain ones delivered twice
                stack.actors.settle_deposit.send(payment_id)
            stack.start_workers()

            async def plain_settled() -> bool:
                async with stack.pool.acquire() as conn:
                    return await conn.fetchval(
                        "SELECT count(*) FROM payments WHERE id = ANY($1::text[]) AND settled_at IS NOT NULL",
                        group.plain,
                    ) == len(group.plain)

            await eventually(plain_settled)
            async with stack.pool.acquire() as conn:
                # The rest of the group went through in one database transaction (group commit).
                writers = await conn.fetchval(
                    "SELECT count(DISTINCT written_by_xact) FROM ledger_transactions"
                    " WHERE idempotency_key = ANY($1::text[])",
                    [f"deposit:{payment_id}" for payment_id in group.plain],
                )
                assert writers == 1
            locked = await stack.payment(group.locked)
            assert locked is not None and locked.settled_at is None  # still waiting behind the lock
        finally:
            await held_tx.rollback()
            await stack.pool.release(holder)

        await stack.wait_settled(group.locked)
        await stack.wait_idle()
        await _credited_once(stack, group, user)
        client, ns = stack.broker.client, stack.namespace
        dead_ids = client.zrange(f"{ns}:settle-deposit.XQ", 0, -1)
        dead = [client.hget(f"{ns}:settle-deposit.XQ.msgs", rid) for rid in dead_ids]
        assert len(dead) == 1 and group.unknown.encode() in dead[0]  # no such payment: refused, not retried
        assert client.hlen(f"{ns}:settle-deposit.msgs") == 0


async def test_group_stage_answers_what_it_finished_and_what_to_settle_alone(database_url, redis_namespace):
    async with Stack(
        database_url, redis_namespace, ipn=False, start_worker=False, payments_underpaid_policy="hold_for_review"
    ) as stack:
        user = f"user-{uuid.uuid4().hex[:8]}"
        group = await _group(stack, user)
        holder, held_tx = await _hold_row_lock(stack, group.locked)
        try:
            outcome = await settle_group(stack.ctx, [*group.all, group.plain[0]])
        finally:
            await held_tx.rollback()
            await stack.pool.release(holder)
        assert outcome.finished == {*group.plain, group.settled, group.held}
        assert outcome.left == {group.locked, group.unknown}
        assert outcome.credited == PLAIN

        # Concurrent groups over the same payments, and a replay: nothing more is credited but the locked one.
        again = await asyncio.gather(*(settle_group(stack.ctx, group.all) for _ in range(3)))
        assert sum(o.credited for o in again) == 1
        assert all(o.left == {group.unknown} or group.locked in o.left for o in again)
        await _credited_once(stack, group, user)
