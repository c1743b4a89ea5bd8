"""Every change the pipeline makes is announced: real stages write the events, the real scheduler and
workers deliver them to a receiver that verifies each with `standardwebhooks`, and `GET /v1/events`
reads the same events back in commit order.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from domain.notifications import EventType
from tests.integration.notifications.receiver import Receiver, new_secret
from tests.integration.stack import Stack, eventually

DEPOSIT_ORDER = ["deposit.pending", "deposit.confirming", "deposit.confirmed", "deposit.completed"]
FAST_DELIVERY = {
    "notify_webhook_timeout": 5.0,
    "notify_lease_seconds": 6.0,
    "notify_retry_schedule": [0.05, 0.1, 0.2],
    "notify_requeue_after": 1.0,
}


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _types(receiver: Receiver, subject: str) -> list[str]:
    return [receiver.processed[event_id]["type"] for event_id in receiver.by_subject.get(subject, [])]


async def _all_events(stack: Stack) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = None
    while True:
        status, page = await stack.api_get("/v1/events" + (f"?after={after}" if after else ""))
        assert status == 200, page
        events += page["events"]
        if not page["events"]:
            return events
        after = page["next_after"]


async def test_a_deposit_and_a_withdrawal_announce_each_step_once_in_order(database_url, redis_namespace):
    secret = new_secret()
    async with Receiver(secret) as receiver, Stack(
        database_url, redis_namespace, notify_webhook_url=receiver.url, notify_webhook_secret=secret, **FAST_DELIVERY
    ) as stack:
        stack.start_scheduler()
        user, request_id = _ref("user"), _ref("req")
        stack.actors.create_payment.send(request_id=request_id, user_id=user, amount_usd="60.00", currency_code="btc")
        payment = await stack.payment_for_request(request_id)
        await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid"})
        await stack.wait_settled(payment.id)
        stack.actors.settle_deposit.send(payment.id)  # a redelivered settlement credits and announces nothing new
        await stack.wait_idle()

        async def deposit_announced() -> list[str] | None:
            types = _types(receiver, payment.id)
            return types if types and types[-1] == EventType.DEPOSIT_CREDITED else None

        types = await eventually(deposit_announced, timeout=30)
        assert types[0] == "deposit.pending" and types[-2:] == ["deposit.completed", "deposit.credited"], types
        statuses = types[:-1]
        assert statuses == sorted(statuses, key=DEPOSIT_ORDER.index) and len(set(types)) == len(types), types
        credited = receiver.processed[receiver.by_subject[payment.id][-1]]
        assert credited["data"]["credit_usd"] == "60.00" and credited["data"]["settled_at"]

        status, body = await stack.api_post(
            "/v1/withdrawals",
            {
                "request_id": _ref("wd"),
                "user_id": user,
                "amount_usd": "40.00",
                "currency_code": "btc",
                "wallet_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            },
        )
        assert status == 201, body
        wid = body["internal_withdrawal_id"]
        for action, extra in (("approve", {}), ("complete", {"tx_hash": "ab" * 32})):
            status, body = await stack.api_post(
                f"/v1/operator/withdrawals/{wid}/{action}", {"operator": "alice", **extra}, operator=True
            )
            assert status == 200, body

        async def withdrawal_announced() -> list[str] | None:
            types = _types(receiver, wid)
            return types if types and types[-1] == EventType.WITHDRAWAL_COMPLETED else None

        types = await eventually(withdrawal_announced, timeout=30)
        assert types[0] == "withdrawal.requested" and types[1] == "withdrawal.approved", types
        assert len(set(types)) == len(types), types
        assert receiver.unverified == []

        # What a system that was down reads back: the same events, each once, in the same order per subject.
        read_back = await _all_events(stack)
        assert [e["id"] for e in read_back if e["data"].get("internal_payment_id") == payment.id] == (
            receiver.by_subject[payment.id]
        )
        withdrawal_ids = [e["id"] for e in read_back if e["data"].get("internal_withdrawal_id") == wid]
        assert withdrawal_ids == receiver.by_subject[wid]
        assert await stack.balance(user) == Decimal("20.00")


async def test_a_request_refused_by_the_worker_is_announced_under_its_request_id(database_url, redis_namespace):
    secret = new_secret()
    async with Receiver(secret) as receiver, Stack(
        database_url, redis_namespace, notify_webhook_url=receiver.url, notify_webhook_secret=secret, **FAST_DELIVERY
    ) as stack:
        stack.start_scheduler()
        request_id = _ref("req")
        for _ in range(2):  # sent twice: refused twice, announced once
            stack.actors.create_payment.send(
                request_id=request_id, user_id=_ref("user"), amount_usd="25.00", currency_code="nosuchcoin"
            )
        await stack.wait_idle()

        async def announced() -> list[str] | None:
            return _types(receiver, request_id) or None

        assert await eventually(announced, timeout=30) == ["deposit.rejected"]
        event = receiver.processed[receiver.by_subject[request_id][0]]
        assert event["data"]["status"] == "rejected" and "nosuchcoin" in event["data"]["reason"]
        assert receiver.unverified == []
