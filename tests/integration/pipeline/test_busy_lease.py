"""Issue 9 (2): a message that finds another holder's lease live neither retries nor dead-letters.

A worker killed mid-payout (or mid-creation) keeps its lease to the end. Messages arriving meanwhile
(the dead worker's own redelivery, duplicates) used to retry until the lease ran out, spending their
retry budget on nothing and ending in the dead-letter queue. Now they finish at once, having made the
scheduler's look due when the lease ends; the scheduler then completes the work exactly once. Real
Redis broker and worker, real scheduler loop, the simulator as the gateway.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from structlog.testing import capture_logs

from domain.ids import new_payment_id
from domain.payments import Payment
from services.commands import CreatePaymentRequest
from services.create_payment import CREATION_LEASE_SECONDS
from services.poll_status import poll_status
from services.rejections import deposit_fingerprint
from storage import payments, withdrawals
from tests.integration.pipeline.test_create_payment import _gateway_payments_for, _request
from tests.integration.pipeline.test_withdrawal_payouts import (
    GATEWAY,
    approved_withdrawal,
    payout_posts,
    sim_payouts,
    stored,
    wait_status,
)
from tests.integration.pipeline.test_withdrawal_requests import (
    enqueue_three_times,
    events,
    money,
    no_violations,
    postings,
    queue_state,
    wait_idle,
)
from tests.integration.stack import Stack

# Long enough for the duplicates to be handled while it is live, even on a loaded machine.
LEASE_SECONDS = 10.0
ZERO_QUEUE = {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}


async def _finished_within(stack: Stack, queue: str, lease: datetime) -> dict[str, int]:
    """The queue's state once every message is finished (acked: not ready, in flight or delayed for a retry),
    or as it stands a second before ``lease`` ends (a retried message waits in the delay queue till then)."""
    for _ in range(int(((lease - datetime.now(UTC)).total_seconds() - 1) / 0.05)):
        if queue_state(stack, queue) == ZERO_QUEUE:
            break
        await asyncio.sleep(0.05)
    return queue_state(stack, queue)


async def _recorded(stack: Stack, request: CreatePaymentRequest, **lease: float) -> Payment:
    """The request's payment recorded as create-payment records it (``look_again_in``, ``claim_seconds``)."""
    async with stack.pool.acquire() as conn:
        payment = await payments.insert_payment(
            conn,
            payment_id=new_payment_id(),
            request_id=request.request_id,
            fingerprint=deposit_fingerprint(request),
            user_id=request.user_id,
            amount_usd=request.amount_usd,
            currency_code=request.currency_code,
            description=request.description,
            **lease,
        )
    assert payment is not None
    return payment


def _held(logs: list[dict[str, Any]], actor: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "lease_held_left_to_scheduler" and e["actor"] == actor]


async def _holder_dies_after_the_payout_call(stack: Stack, wid: str) -> tuple[datetime, str]:
    """What the payout stage does up to the gateway's answer, then the worker is killed: its lease stays."""
    async with stack.pool.acquire() as conn:
        claimed = await withdrawals.claim_payout(conn, wid, lease_seconds=LEASE_SECONDS)
        assert claimed is not None and claimed.payout_claimed_until is not None
        lease = claimed.payout_claimed_until
        amount = await stack.gateway.estimate(claimed.final_amount_usd, "usd", claimed.currency_code)
        assert await withdrawals.mark_payout_sending(conn, wid, amount=amount, lease=lease) is not None
    payout = await stack.gateway.create_payout(
        address=claimed.wallet_address,
        currency=claimed.currency_code,
        amount=amount,
        extra_id=claimed.extra_id,
        ipn_callback_url=stack.settings.payout_ipn_callback_url,
        unique_external_id=wid,
    )
    return lease, payout.payout_id


async def test_a_payout_whose_holder_died_is_made_once_after_its_lease_with_no_retry_and_no_dead_letter(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        lease, payout_id = await _holder_dies_after_the_payout_call(stack, wid)

        # The dead worker's message redelivered, twice more duplicated, while its lease is live.
        with capture_logs() as logs:
            enqueue_three_times(stack, stack.actors.process_withdrawal.message(wid))
            stack.start_workers()

            # finished while the lease is live: nothing waits to be retried, nothing is dead
            assert await _finished_within(stack, "process-withdrawal", lease) == ZERO_QUEUE
            await wait_idle(stack)
        assert datetime.now(UTC) < lease, "the duplicates must have met a live lease"
        assert len(_held(logs, "process_withdrawal")) == 3
        assert {e["until"] for e in _held(logs, "process_withdrawal")} == {lease.isoformat()}
        waiting = await stored(stack, wid)
        assert (waiting.status.value, waiting.provider_payout_id, waiting.next_check_at) == ("approved", None, lease)

        # The scheduler looks when the lease ends: the payout is found by our id and recorded, not sent again,
        # while more duplicates keep arriving.
        stack.start_scheduler()
        for _ in range(2):
            stack.actors.process_withdrawal.send(wid)
        recorded = await wait_status(stack, wid, "processing", timeout=LEASE_SECONDS + 20)
        assert recorded.provider_payout_id == payout_id
        for _ in range(2):
            stack.actors.process_withdrawal.send(wid)
        await wait_idle(stack)
        assert queue_state(stack) == ZERO_QUEUE
        assert await payout_posts(stack) == 1
        assert [p["id"] for p in await sim_payouts(stack, wid)] == [payout_id]
        assert [e for e in await events(stack, wid) if e[1] == "processing"] == [
            ("approved", "processing", GATEWAY, "payout created")
        ]

        await stack.sim_post(f"/sim/payouts/{payout_id}/play", {"scenario": "finished"})
        await wait_status(stack, wid, "completed")
        await wait_idle(stack)
        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (0, 0, 50)
        assert queue_state(stack) == ZERO_QUEUE
        await no_violations(stack)


async def test_a_payment_whose_creator_died_is_created_once_after_its_lease_with_no_retry_and_no_dead_letter(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        request = _request()
        arguments = request.model_dump(mode="json")
        # The creator recorded the payment, claimed its creation and was killed before calling the gateway.
        payment = await _recorded(stack, request, look_again_in=CREATION_LEASE_SECONDS)
        async with stack.pool.acquire() as conn:
            claimed = await payments.claim_creation(conn, payment.id, lease_seconds=LEASE_SECONDS)
        assert claimed is not None and claimed.create_claimed_until is not None
        lease = claimed.create_claimed_until
        assert payment.next_poll_at is not None and payment.next_poll_at > lease  # not due before a minute
        stack.start_workers()

        with capture_logs() as logs:
            for _ in range(3):
                stack.actors.create_payment.send(**arguments)

            assert await _finished_within(stack, "create-payment", lease) == ZERO_QUEUE
            await stack.wait_idle()
        assert datetime.now(UTC) < lease, "the duplicates must have met a live lease"
        assert len(_held(logs, "create_payment")) == 3
        async with stack.pool.acquire() as conn:
            waiting = await payments.get_payment(conn, payment.id)
        assert waiting is not None and waiting.provider_payment_id is None and waiting.next_poll_at == lease
        assert await _gateway_payments_for(stack, payment.id) == 0

        # When the lease ends the scheduler's poll resumes the creation: one gateway payment.
        stack.start_scheduler()
        created = await stack.payment_for_request(request.request_id)
        assert created.id == payment.id and created.provider_payment_id
        stack.actors.create_payment.send(**arguments)  # a late duplicate finds it created
        await stack.wait_idle()
        assert await _gateway_payments_for(stack, payment.id) == 1
        for queue in ("create-payment", "poll-status"):
            assert queue_state(stack, queue)["dead"] == 0, queue
        assert queue_state(stack, "create-payment") == ZERO_QUEUE


async def test_a_poll_that_finds_the_creation_lease_held_makes_the_next_look_due_when_it_ends(
    database_url, redis_namespace
):
    """A poll resuming a creation whose holder (perhaps killed) still has the lease: nothing is created, and
    the scheduler comes back when the lease ends rather than at the payment's ordinary next look."""
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        request = _request()
        payment = await _recorded(stack, request, look_again_in=3600, claim_seconds=LEASE_SECONDS)
        assert payment.create_claimed_until is not None
        lease = payment.create_claimed_until

        with capture_logs() as logs:
            assert await poll_status(stack.ctx, payment.id) is None

        async with stack.pool.acquire() as conn:
            waiting = await payments.get_payment(conn, payment.id)
        assert waiting is not None and waiting.provider_payment_id is None
        assert waiting.next_poll_at == lease
        assert [e["until"] for e in logs if e["event"] == "creation_lease_held"] == [lease.isoformat()]
        assert await _gateway_payments_for(stack, payment.id) == 0
