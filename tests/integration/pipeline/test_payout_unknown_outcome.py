"""Regression tests for the review fixes on the withdrawal side.

A payout refused after an attempt whose outcome is unknown is held for an operator, never failed;
the gateway owns a withdrawal only from just before the payout call (mark_payout_sending), and
only while approved and under a live lease; completion and release of a hold share one ledger key.
Real stack: simulator over HTTP (faults injected through /sim/faults), Redis, Postgres, web app.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.withdrawals import WithdrawalStatus, WithdrawalUpdate
from gateway.errors import GatewayTransientError
from services.process_withdrawal import _find_or_create_payout
from services.process_withdrawal import process_withdrawal as process_withdrawal_stage
from services.withdrawal_transitions import move_withdrawal
from storage import withdrawals
from storage.db import transaction
from tests.integration.metrics_text import metric_samples
from tests.integration.pipeline.test_withdrawal_payouts import (
    approved_withdrawal,
    payout_posts,
    sim_payouts,
    stored,
)
from tests.integration.pipeline.test_withdrawal_requests import (
    events,
    fund,
    money,
    no_violations,
    postings,
    queue_state,
    ref,
    withdraw,
)
from tests.integration.stack import Stack, eventually

TX_HASH = "ab" * 32


async def decide(stack: Stack, wid: str, action: str, **body: str) -> tuple[int, dict]:
    return await stack.api_post(f"/v1/operator/withdrawals/{wid}/{action}", body, operator=True)


async def metric(stack: Stack, name: str) -> str:
    async with stack.http.get(stack.web_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return metric_samples(text)[name]


async def expire_lease(stack: Stack, wid: str) -> None:
    async with stack.pool.acquire() as conn:
        await withdrawals.update_withdrawal(
            conn, wid, WithdrawalUpdate(payout_claimed_until=datetime.now(UTC) - timedelta(seconds=1))
        )


async def _held_for_review(stack: Stack, wid: str) -> withdrawals.Withdrawal:
    """First attempt: the payout POST times out and nothing is known. Retry: the lookup finds nothing and the
    create is refused with a plain 4xx. Returns the withdrawal as the retry left it."""
    fault = {"path_prefix": "/v1/payout", "method": "POST", "delay": 1.0, "status": 503, "count": 1}
    await stack.sim_post("/sim/faults", fault)
    with pytest.raises(GatewayTransientError, match="no answer within"):
        await process_withdrawal_stage(stack.ctx, wid)
    unknown = await stored(stack, wid)
    assert unknown.status is WithdrawalStatus.APPROVED and unknown.payout_attempted_at is not None
    assert unknown.payout_mode == "gateway" and unknown.review_reason is None
    # Meanwhile the gateway has it (maybe): no operator may settle it yet.
    status, body = await decide(stack, wid, "reject", operator="bob", note="too slow")
    assert (status, body["error"]) == (409, "invalid_transition"), body

    await expire_lease(stack, wid)  # the short wait after the timeout is over; the retry comes
    await stack.sim_post("/sim/faults", {"path_prefix": "/v1/payout", "method": "POST", "status": 400, "count": 1})
    before = datetime.now(UTC)
    held = await process_withdrawal_stage(stack.ctx, wid)
    assert held == await stored(stack, wid)
    assert held.status is WithdrawalStatus.APPROVED, held  # NOT failed, NOT released
    assert held.review_reason and "outcome is unknown" in held.review_reason and wid in held.review_reason
    assert held.error_code == "HTTP_400" and held.error_message
    assert held.payout_claimed_until is None
    assert held.next_check_at is not None and held.next_check_at > before
    assert await sim_payouts(stack, wid) == [] and await payout_posts(stack) == 2
    return held


# -- 1. payout refused after an attempt whose outcome is unknown: held for an operator ----------------------------


@pytest.mark.parametrize("decision", ["reject", "complete"])
async def test_refusal_after_an_unknown_payout_outcome_holds_the_withdrawal_for_an_operator(
    database_url, redis_namespace, decision
):
    async with Stack(
        database_url, redis_namespace, payouts=True, ipn=False, start_worker=False, nowpayments_timeout_seconds=0.4
    ) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        held = await _held_for_review(stack, wid)

        assert await postings(stack, wid) == ["hold"]  # the hold is intact
        assert await money(stack, user) == (Decimal("0.00"), Decimal("50.00"), Decimal(0))
        assert [e[1] for e in await events(stack, wid)] == ["pending", "approved"]
        assert await metric(stack, "withdrawals_held_for_review") == "1"
        status, view = await stack.api_get(f"/v1/withdrawals/{wid}")
        assert status == 200 and (view["status"], view["review_reason"]) == ("approved", held.review_reason)

        if decision == "reject":
            status, body = await decide(stack, wid, "reject", operator="alice", note="not at the gateway")
            assert status == 200 and body["status"] == "rejected", body
            status, body = await decide(stack, wid, "reject", operator="alice", note="again")  # a no-op
            assert status == 200 and body["status"] == "rejected", body
            status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH)
            assert (status, body["error"]) == (409, "invalid_transition"), body
            assert await postings(stack, wid) == ["hold", "release"]
            assert await money(stack, user) == (Decimal("50.00"), Decimal("0.00"), Decimal(0))
        else:
            status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH, note="found it")
            assert status == 200 and body["status"] == "completed" and body["transaction_hash"] == TX_HASH, body
            status, body = await decide(stack, wid, "reject", operator="alice", note="changed my mind")
            assert (status, body["error"]) == (409, "invalid_transition"), body
            assert await postings(stack, wid) == ["hold", "complete"]
            assert await money(stack, user) == (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))
        decided = await stored(stack, wid)
        assert decided.review_reason is None and decided.next_check_at is None
        assert await metric(stack, "withdrawals_held_for_review") == "0"
        assert await sim_payouts(stack, wid) == []
        await no_violations(stack)


async def test_a_withdrawal_held_for_review_records_the_first_payout_once_it_shows_up(database_url, redis_namespace):
    async with Stack(
        database_url, redis_namespace, payouts=True, ipn=False, start_worker=False, nowpayments_timeout_seconds=0.4
    ) as stack:
        _, wid = await approved_withdrawal(stack, "50.00")
        held = await _held_for_review(stack, wid)
        # The first payout turns up at the gateway after all (registered late under our id).
        first = await stack.gateway.create_payout(
            address=held.wallet_address,
            currency=held.currency_code,
            amount=held.payout_amount,
            unique_external_id=wid,
        )
        async with stack.pool.acquire() as conn:  # the scheduler's check is due
            await withdrawals.update_withdrawal(conn, wid, WithdrawalUpdate(next_check_at=datetime.now(UTC)))
        checked = await process_withdrawal_stage(stack.ctx, wid)
        assert checked.status is WithdrawalStatus.PROCESSING and checked.provider_payout_id == first.payout_id
        assert checked.review_reason is None


# -- 2. the gateway owns a withdrawal only from mark_payout_sending on -------------------------------------------


async def test_estimate_refused_on_the_first_attempt_fails_the_withdrawal_and_releases_once(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "30.00")
        await stack.sim_post("/sim/faults", {"path_prefix": "/v1/estimate", "method": "GET", "status": 400})
        failed = await process_withdrawal_stage(stack.ctx, wid)
        assert failed.status is WithdrawalStatus.FAILED and failed.error_code == "HTTP_400"
        assert failed.payout_attempted_at is None and failed.payout_mode is None and failed.review_reason is None
        assert await payout_posts(stack) == 0 and await sim_payouts(stack, wid) == []
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("30.00"), Decimal("0.00"), Decimal(0))
        # Redelivered: nothing is sent, nothing released twice.
        assert (await process_withdrawal_stage(stack.ctx, wid)).status is WithdrawalStatus.FAILED
        assert await payout_posts(stack) == 0 and await postings(stack, wid) == ["hold", "release"]
        await no_violations(stack)


async def test_operator_reject_committed_between_claim_and_sending_means_no_payout(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "40.00")
        async with transaction(stack.pool) as conn:
            claimed = await withdrawals.claim_payout(conn, wid, lease_seconds=120)
        assert claimed is not None and claimed.payout_mode is None  # claiming does not hand it over
        # On another connection, an operator's rejection commits while the payout attempt holds its lease.
        async with transaction(stack.pool) as other:
            current = await withdrawals.get_withdrawal(other, wid, for_update=True)
            await move_withdrawal(other, current, WithdrawalStatus.REJECTED, actor="operator:bob", note="fraud")
        async with transaction(stack.pool) as conn:
            lease = claimed.payout_claimed_until
            assert await withdrawals.mark_payout_sending(conn, wid, amount=Decimal("0.0004"), lease=lease) is None

        # The attempt carries on from its claim: it must send nothing.
        assert await _find_or_create_payout(stack.ctx, claimed, claimed.payout_claimed_until) is None
        assert await payout_posts(stack) == 0 and await sim_payouts(stack, wid) == []
        after = await stored(stack, wid)
        assert after.status is WithdrawalStatus.REJECTED
        assert (after.payout_mode, after.payout_amount, after.payout_attempted_at) == (None, None, None)
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("40.00"), Decimal("0.00"), Decimal(0))
        # And a whole stage run afterwards does nothing either.
        assert (await process_withdrawal_stage(stack.ctx, wid)).status is WithdrawalStatus.REJECTED
        assert await payout_posts(stack) == 0
        await no_violations(stack)


async def test_mark_payout_sending_needs_a_live_lease(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        _, wid = await approved_withdrawal(stack, "40.00")
        someone_elses = datetime.now(UTC) + timedelta(seconds=60)
        async with transaction(stack.pool) as conn:
            assert (
                await withdrawals.mark_payout_sending(conn, wid, amount=Decimal("0.0004"), lease=someone_elses) is None
            )  # no lease at all
            claimed = await withdrawals.claim_payout(conn, wid, lease_seconds=120)
            assert claimed is not None
            assert (
                await withdrawals.mark_payout_sending(conn, wid, amount=Decimal("0.0004"), lease=someone_elses) is None
            )  # a lease, but not this attempt's
        await expire_lease(stack, wid)
        async with transaction(stack.pool) as conn:
            current = await withdrawals.get_withdrawal(conn, wid)
            assert (
                await withdrawals.mark_payout_sending(
                    conn, wid, amount=Decimal("0.0004"), lease=current.payout_claimed_until
                )
                is None
            )  # run out
        w = await stored(stack, wid)
        assert (w.payout_mode, w.payout_amount, w.payout_attempted_at) == (None, None, None)


async def test_while_a_payout_lease_is_live_operators_cannot_reject_or_complete(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "40.00")
        async with transaction(stack.pool) as conn:
            assert await withdrawals.claim_payout(conn, wid, lease_seconds=120) is not None
        before = await stored(stack, wid)
        status, body = await decide(stack, wid, "reject", operator="bob", note="no")
        assert (status, body["error"]) == (409, "invalid_transition"), body
        status, body = await decide(stack, wid, "complete", operator="bob", tx_hash=TX_HASH)
        assert (status, body["error"]) == (409, "invalid_transition"), body
        assert await stored(stack, wid) == before
        assert await postings(stack, wid) == ["hold"]

        # The attempt died before sending anything; once its lease has run out the operator may decide.
        await expire_lease(stack, wid)
        status, body = await decide(stack, wid, "reject", operator="bob", note="no")
        assert status == 200 and body["status"] == "rejected", body
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("40.00"), Decimal("0.00"), Decimal(0))
        assert await payout_posts(stack) == 0


# -- 8. completion and release share one ledger key -------------------------------------------------------------


async def test_a_completed_withdrawal_tampered_back_to_approved_cannot_also_be_released(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "50.00")
        wid = (await withdraw(stack, user, "50.00"))["internal_withdrawal_id"]
        status, body = await decide(stack, wid, "approve", operator="alice", note="ok")
        assert status == 200, body
        status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH)
        assert status == 200 and body["status"] == "completed", body
        assert await money(stack, user) == (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))

        async with stack.pool.acquire() as conn:
            await conn.execute("UPDATE withdrawals SET status = 'approved' WHERE id = $1", wid)
        status, body = await decide(stack, wid, "reject", operator="mallory", note="give it back")
        assert (status, body["error"]) == (409, "invalid_transition"), body
        assert "already been settled" in body["message"]
        status, body = await decide(stack, wid, "complete", operator="mallory", tx_hash="cd" * 32)
        assert (status, body["error"]) == (409, "invalid_transition"), body

        async with stack.pool.acquire() as conn:
            settles = await conn.fetch(
                "SELECT type FROM ledger_transactions WHERE idempotency_key = $1", f"withdrawal:{wid}:settle"
            )
        assert [r["type"] for r in settles] == ["withdrawal"]
        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))
        assert [e[1] for e in await events(stack, wid)] == ["pending", "approved", "completed"]
        await no_violations(stack)


# -- 7. process_withdrawal in a gateway outage: processed once, acked, left to the scheduler ----------------------


async def test_process_withdrawal_in_a_gateway_outage_is_not_retried_and_leaves_it_to_the_scheduler(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        _, wid = await approved_withdrawal(stack, "40.00")
        await stack.sim_post(
            "/sim/faults", {"status": 503, "count": 1000, "path_prefix": "/v1/payout", "method": "GET"}
        )

        async def lookups() -> int:
            seen = (await stack.sim_get("/sim/requests?path_prefix=/v1/payout"))["requests"]
            return sum(1 for r in seen if r["method"] == "GET" and r["path"] == "/v1/payout")

        stack.start_workers()
        stack.actors.process_withdrawal.send(wid)

        async def acked() -> bool:
            return await lookups() >= 3 and queue_state(stack) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}

        await eventually(acked, timeout=15)
        await asyncio.sleep(2.5)  # longer than dramatiq's first retry backoff: a retry would show by now
        assert await lookups() == 3  # the client's own bounded retries for one message, no more
        assert queue_state(stack) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}
        assert stack.broker.client.llen(f"{stack.namespace}:process-withdrawal.DQ") == 0
        w = await stored(stack, wid)
        assert w.status is WithdrawalStatus.APPROVED and w.payout_attempted_at is None
        assert w.next_check_at is not None  # the scheduler comes back
        assert await payout_posts(stack) == 0 and await postings(stack, wid) == ["hold"]
