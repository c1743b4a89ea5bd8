"""The gateway-status write (services/apply_status.py): the update, its payment event and its announcement go
in one statement, and the announcement shows the row exactly as written, also when a stored value differs
from what the decision computed (then the transaction is rolled back and redone, announcing the row read back).
Real stack: simulator over HTTP, Redis, Postgres.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from domain.payments import Payment
from gateway.models import GatewayPayment
from services.apply_status import apply_gateway_status
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.views import payment_view
from storage import payments
from tests.integration.stack import Stack


@pytest.fixture
async def stack(database_url: str, redis_namespace: str) -> AsyncIterator[Stack]:
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        yield stack


async def _created(stack: Stack) -> Payment:
    request = CreatePaymentRequest(
        request_id=f"req-{uuid.uuid4().hex[:8]}", user_id="user", amount_usd=Decimal("50.00"), currency_code="eth"
    )
    return await create_payment(stack.ctx, request)


def _news(payment: Payment, status: str, actually_paid: str) -> GatewayPayment:
    return GatewayPayment.from_wire(
        {
            "payment_id": payment.provider_payment_id,
            "payment_status": status,
            "order_id": payment.id,
            "pay_amount": payment.pay_amount,
            "actually_paid": Decimal(actually_paid),
            "price_amount": payment.amount_usd,
        }
    )


async def _written(stack: Stack, payment_id: str) -> tuple[Payment, list[dict[str, Any]], list[Any]]:
    """The row, its announcements' bodies and its payment events' (source, from, to), as stored."""
    async with stack.pool.acquire() as conn:
        row = await payments.get_payment(conn, payment_id)
        bodies = await conn.fetch(
            "SELECT payload FROM outbox_events WHERE subject_id = $1 AND type <> 'deposit.pending' ORDER BY seq",
            payment_id,
        )
        events = await conn.fetch(
            "SELECT source, from_status, to_status FROM payment_events WHERE payment_id = $1 AND source = 'ipn'",
            payment_id,
        )
    assert row is not None
    return row, [json.loads(body["payload"]) for body in bodies], [tuple(event) for event in events]


async def test_a_status_change_is_announced_as_written_in_one_statement_and_once(stack: Stack) -> None:
    payment = await _created(stack)
    with capture_logs() as logs:
        result = await apply_gateway_status(stack.ctx, _news(payment, "confirming", "0"), source="ipn")
        again = await apply_gateway_status(stack.ctx, _news(payment, "confirming", "0"), source="ipn")
    row, bodies, events = await _written(stack, payment.id)
    assert result.changed and not again.changed
    assert [body["type"] for body in bodies] == ["deposit.confirming"]
    assert bodies[0]["data"] == payment_view(row) == payment_view(result.payment)
    assert events == [("ipn", "pending", "confirming")]
    assert not [entry for entry in logs if entry["event"] == "payment_announcement_rebuilt"]


async def test_a_value_stored_otherwise_than_decided_is_announced_as_stored(stack: Stack) -> None:
    payment = await _created(stack)
    # 23 decimals: numeric(38, 18) keeps 18, so the row differs from the update the decision made.
    with capture_logs() as logs:
        result = await apply_gateway_status(
            stack.ctx, _news(payment, "confirming", "0.00000000000000000123456"), source="ipn"
        )
    row, bodies, events = await _written(stack, payment.id)
    assert [entry["event"] for entry in logs if entry["event"] == "payment_announcement_rebuilt"] == [
        "payment_announcement_rebuilt"
    ]
    assert row.actually_paid == Decimal("0.000000000000000001")
    assert [body["type"] for body in bodies] == ["deposit.confirming"]
    assert bodies[0]["data"] == payment_view(row) == payment_view(result.payment)
    assert events == [("ipn", "pending", "confirming")]  # the first attempt's writes were rolled back
