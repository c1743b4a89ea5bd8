"""Deposits held for review are released by an operator: credited once, never more than arrived."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from fractions import Fraction

import pytest

from domain.errors import InvalidRequest
from services.release_deposit import release_held_deposit
from storage import ledger, payments
from tests.integration.stack import Stack


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _overpaid_and_held(stack: Stack) -> tuple[str, str]:
    user, request_id = _ref("user"), _ref("req")
    stack.actors.create_payment.send(request_id, user, "20.00", "btc")
    payment = await stack.payment_for_request(request_id)
    await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "over"})
    await stack.wait_idle()
    held = await stack.payment(payment.id)
    assert held.status.value == "completed" and held.hold_reason and held.settled_at is None
    return user, payment.id


async def test_operator_release_credits_the_received_value_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payments_overpaid_policy="hold_for_review") as stack:
        user, payment_id = await _overpaid_and_held(stack)
        assert await stack.balance(user) == Decimal("0.00")
        async with stack.pool.acquire() as conn:
            [held] = [p for p in await payments.list_held(conn) if p.id == payment_id]

        with pytest.raises(InvalidRequest, match="note"):
            await release_held_deposit(stack.pool, payment_id, operator="alice", note="")
        with pytest.raises(InvalidRequest, match="more than"):
            await release_held_deposit(stack.pool, payment_id, operator="alice", note="ok", credit_usd=Decimal("31"))

        # What arrived, worked out independently: actually_paid / pay_amount × 20.00, floored to the cent.
        arrived = Fraction(held.actually_paid) / Fraction(held.pay_amount) * 20
        expected = Decimal(math.floor(arrived * 100)) / 100
        assert Decimal("29.00") < expected <= Decimal("30.00")

        released = await release_held_deposit(stack.pool, payment_id, operator="alice", note="customer confirmed")
        assert released.credit_usd == expected
        assert released.hold_reason is None and released.settled_at is not None
        assert await stack.balance(user) == expected
        with pytest.raises(InvalidRequest, match="not held"):
            await release_held_deposit(stack.pool, payment_id, operator="alice", note="again")
        assert await stack.balance(user) == expected
        async with stack.pool.acquire() as conn:
            events = await payments.list_events(conn, payment_id)
            assert await ledger.invariant_violations(conn) == []
        [operator_event] = [e for e in events if e["source"] == "operator"]
        assert operator_event["detail"]["operator"] == "alice"
        assert operator_event["detail"]["note"] == "customer confirmed"
        assert held.hold_reason == operator_event["detail"]["hold_reason"]
