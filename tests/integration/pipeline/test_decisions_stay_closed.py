"""Regression tests for the second review's fixes.

Refunds after a settled completed deposit are held (and outrank other holds) until an operator
dismisses them; a stale payout attempt can neither send nor fail; payout news that contradicts a
closed withdrawal is flagged, never applied; a duplicate id with nothing to find is held for review;
writes after gateway calls apply only to an unsent withdrawal and terminal withdrawals leave the
scheduler; an operator's smaller release is not reopened by repeated callbacks; refused payout checks
are acked and left to the scheduler. Real stack: simulator over HTTP, Redis, Postgres, the web app.
The one fake is a tiny HTTP gateway (item 4), because the simulator cannot refuse a duplicate id while
hiding the payout from the lookup.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiohttp import web
from pydantic import SecretStr

from domain.errors import InvalidRequest
from domain.withdrawals import WithdrawalStatus, WithdrawalUpdate
from gateway.client import NowPaymentsClient
from gateway.errors import DUPLICATE_EXTERNAL_ID, GatewayRejected
from services import process_withdrawal as pw
from services.context import StageContext
from services.release_deposit import dismiss_deposit_hold, release_held_deposit
from services.settle_deposit import settle_deposit
from services.withdrawal_transitions import move_withdrawal
from settings import IPN_PATH
from storage import payments, withdrawals
from storage.db import transaction
from tests.integration.pipeline.test_deposit_news_after_settlement import (
    _create,
    _deposit_transactions,
    _metrics,
    _no_violations,
    _ref,
    _sim_status,
    _worth,
)
from tests.integration.pipeline.test_payout_unknown_outcome import _held_for_review, decide, metric
from tests.integration.pipeline.test_withdrawal_payouts import approved_withdrawal, payout_posts, sim_payouts, stored
from tests.integration.pipeline.test_withdrawal_requests import money, no_violations, postings, queue_state
from tests.integration.stack import Stack, eventually
from tests.ports import free_port

QUEUE = "process-withdrawal"


async def _ipn_log(stack: Stack, provider_payment_id: str) -> list[dict]:
    return (await stack.sim_get(f"/sim/ipn-log?payment_id={provider_payment_id}"))["deliveries"]


async def _repost(stack: Stack, delivery: dict) -> dict:
    """Deliver a signed IPN again, byte for byte, as the gateway does when it retries."""
    headers = {"Content-Type": "application/json", "x-nowpayments-sig": delivery["signature"]}
    async with stack.http.post(stack.web_url + IPN_PATH, data=delivery["body"].encode(), headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def _all_empty(stack: Stack) -> bool:
    client, ns = stack.broker.client, stack.namespace
    return queue_state(stack, QUEUE) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0} and (
        client.llen(f"{ns}:{QUEUE}.DQ") == 0 and client.hlen(f"{ns}:{QUEUE}.XQ.msgs") == 0
    )


async def _gets(stack: Stack, path: str) -> int:
    seen = (await stack.sim_get(f"/sim/requests?path_prefix={path}"))["requests"]
    return sum(1 for r in seen if r["method"] == "GET" and r["path"] == path)


# -- 1. refunded/failed after a settled completed deposit: held, credit stays, dismissed with a note ---------------


async def _settled_completed(stack: Stack, user: str):
    payment = await _create(stack, user, "40.00", "btc")
    answer = await _sim_status(stack, payment, "finished", ipn=True)
    assert answer["ipn"] and answer["ipn"]["ok"], answer
    assert (await settle_deposit(stack.ctx, payment.id)).credited
    settled = await stack.payment(payment.id)
    assert settled.status.value == "completed" and settled.credit_usd == Decimal("40.00") and settled.settled_at
    return settled


@pytest.mark.parametrize(
    ("undone", "after_top_up"), [("refunded", False), ("failed", False), ("refunded", True)], ids=str
)
async def test_settled_completed_deposit_reported_undone_by_ipn_is_held_until_dismissed_with_a_note(
    database_url, redis_namespace, undone, after_top_up
):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = _ref("user")
        settled = await _settled_completed(stack, user)
        if after_top_up:  # a "funds after settlement" question is already open
            more = settled.pay_amount * Decimal("1.5")
            await _sim_status(stack, settled, "finished", ipn=True, actually_paid=str(more))
            topped = await stack.payment(settled.id)
            assert topped.hold_reason and topped.hold_reason.startswith("funds after settlement"), topped.hold_reason

        answer = await _sim_status(stack, settled, undone, ipn=True)  # the simulator signs and POSTs the IPN
        assert answer["ipn"] and answer["ipn"]["ok"] and answer["ipn"]["status"] == 200, answer
        held = await stack.payment(settled.id)
        assert held.hold_reason and held.hold_reason.startswith(f"gateway reports {undone}"), held.hold_reason
        assert "40.00 USD was credited" in held.hold_reason
        assert held.gateway_status == undone
        assert held.status.value == "completed"  # a closed payment's status never moves
        assert held.credit_usd == Decimal("40.00") and held.settled_at == settled.settled_at
        assert await stack.balance(user) == Decimal("40.00")  # no automatic reversal
        assert await _deposit_transactions(stack, settled.id) == [(f"deposit:{settled.id}", Decimal("40.00"))]
        assert (await _metrics(stack))["payments_held_for_review"] == "1"
        status, view = await stack.api_get(f"/v1/payments/{settled.id}")
        assert status == 200 and view["hold_reason"] == held.hold_reason

        # Nothing may be credited for it, whatever amount the operator names.
        for credit in (None, Decimal("1.00")):
            with pytest.raises(InvalidRequest, match="refunded or failed at the gateway"):
                await release_held_deposit(stack.pool, settled.id, operator="alice", note="ok", credit_usd=credit)
        # Dismissing needs a note and an operator.
        with pytest.raises(InvalidRequest, match="note"):
            await dismiss_deposit_hold(stack.pool, settled.id, operator="alice", note="  ")
        with pytest.raises(InvalidRequest, match="operator"):
            await dismiss_deposit_hold(stack.pool, settled.id, operator=" ", note="reversed")
        assert (await stack.payment(settled.id)).hold_reason == held.hold_reason

        dismissed = await dismiss_deposit_hold(stack.pool, settled.id, operator="carol", note="credit reversed by hand")
        assert dismissed.hold_reason is None and dismissed.credit_usd == Decimal("40.00")
        assert dismissed == await stack.payment(settled.id)
        assert await stack.balance(user) == Decimal("40.00")
        assert len(await _deposit_transactions(stack, settled.id)) == 1
        assert (await _metrics(stack))["payments_held_for_review"] == "0"
        async with stack.pool.acquire() as conn:
            last = (await payments.list_events(conn, settled.id))[-1]
        assert last["source"] == "operator"
        assert last["detail"] == {
            "operator": "carol",
            "note": "credit reversed by hand",
            "dismissed_hold": held.hold_reason,
        }
        with pytest.raises(InvalidRequest, match="not held"):
            await dismiss_deposit_hold(stack.pool, settled.id, operator="carol", note="again")
        await _no_violations(stack)


async def test_a_refund_ipn_redelivered_after_the_hold_was_dismissed_does_not_reopen_it(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        settled = await _settled_completed(stack, _ref("user"))
        answer = await _sim_status(stack, settled, "refunded", ipn=True)
        assert answer["ipn"]["ok"], answer
        assert (await stack.payment(settled.id)).hold_reason
        await dismiss_deposit_hold(stack.pool, settled.id, operator="carol", note="credit reversed by hand")

        refund = (await _ipn_log(stack, settled.provider_payment_id))[-1]
        assert '"payment_status":"refunded"' in refund["body"]
        await _repost(stack, refund)  # NOWPayments re-sends IPNs
        again = await stack.payment(settled.id)
        assert again.hold_reason is None, again.hold_reason
        assert (await _metrics(stack))["payments_held_for_review"] == "0"


# -- 2. a stale payout attempt (lease expired, a newer attempt claimed) can neither send nor fail -----------------


async def test_a_stale_payout_attempt_can_neither_send_nor_fail_nor_release(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "40.00")
        async with transaction(stack.pool) as conn:
            a = await withdrawals.claim_payout(conn, wid, lease_seconds=0.2)
        assert a is not None and a.payout_claimed_until is not None
        lease_a = a.payout_claimed_until
        await asyncio.sleep(0.4)  # A's lease runs out (A is stuck somewhere)
        async with transaction(stack.pool) as conn:
            b = await withdrawals.claim_payout(conn, wid, lease_seconds=120)
        assert b is not None and b.payout_claimed_until is not None
        lease_b = b.payout_claimed_until
        assert lease_b != lease_a

        # A cannot hand the withdrawal to the gateway ...
        async with transaction(stack.pool) as conn:
            assert await withdrawals.mark_payout_sending(conn, wid, amount=Decimal("0.0004"), lease=lease_a) is None
        # ... nor fail and release it on a refusal it got (nor hold it for review) ...
        refusal = GatewayRejected(400, "BAD_CREATE_WITHDRAWAL", "refused for A")
        for outcome_unknown in (False, True):
            assert await pw._refused(stack.ctx, wid, refusal, lease=lease_a, outcome_unknown=outcome_unknown) is None
        # ... nor shorten B's lease when it gives up.
        async with transaction(stack.pool) as conn:
            await withdrawals.end_payout_attempt(conn, wid, lease=lease_a, retry_at=datetime.now(UTC))
        after_a = await stored(stack, wid)
        assert after_a.status is WithdrawalStatus.APPROVED
        assert after_a.payout_claimed_until == lease_b and after_a.next_check_at == b.next_check_at
        assert (after_a.review_reason, after_a.error_code, after_a.payout_mode) == (None, None, None)
        assert await postings(stack, wid) == ["hold"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("40.00"), Decimal(0))

        # B, the live attempt, can.
        async with transaction(stack.pool) as conn:
            sending = await withdrawals.mark_payout_sending(conn, wid, amount=Decimal("0.0004"), lease=lease_b)
        assert sending is not None and sending.payout_mode == "gateway" and sending.payout_amount == Decimal("0.0004")
        assert sending.payout_claimed_until == lease_b
        # Even now, A's refusal changes nothing.
        assert await pw._refused(stack.ctx, wid, refusal, lease=lease_a, outcome_unknown=False) is None
        assert await stored(stack, wid) == sending
        assert await postings(stack, wid) == ["hold"]
        assert await payout_posts(stack) == 0
        await no_violations(stack)


# -- 3. payout news contradicting a closed withdrawal is flagged, never applied ---------------------------------


async def test_a_payout_finished_for_a_rejected_withdrawal_is_flagged_and_changes_nothing(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "40.00")
        status, body = await decide(stack, wid, "reject", operator="bob", note="fraud")
        assert status == 200 and body["status"] == "rejected", body
        rejected = await stored(stack, wid)
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("40.00"), Decimal("0.00"), Decimal(0))
        assert await metric(stack, "withdrawals_held_for_review") == "0"

        # Yet a payout under our id shows up at the gateway and finishes; its signed IPN reaches the web app.
        amount = await stack.gateway.estimate(rejected.final_amount_usd, "usd", rejected.currency_code)
        payout = await stack.gateway.create_payout(
            address=rejected.wallet_address,
            currency=rejected.currency_code,
            amount=amount,
            unique_external_id=wid,
            ipn_callback_url=stack.settings.payout_ipn_callback_url,
        )
        answer = await stack.sim_post(f"/sim/payouts/{payout.payout_id}/status", {"status": "FINISHED"})
        assert answer["ipn"] and answer["ipn"]["ok"] and answer["ipn"]["status"] == 200, answer

        flagged = await stored(stack, wid)
        assert flagged.status is WithdrawalStatus.REJECTED
        assert flagged.review_reason and "released (rejected)" in flagged.review_reason
        assert "finished" in flagged.review_reason or "completed" in flagged.review_reason
        assert flagged.provider_payout_id is None and flagged.transaction_hash is None
        assert flagged.next_check_at is None and flagged.completed_at is None
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("40.00"), Decimal("0.00"), Decimal(0))
        assert await metric(stack, "withdrawals_held_for_review") == "1"
        status, view = await stack.api_get(f"/v1/withdrawals/{wid}")
        assert status == 200 and (view["status"], view["review_reason"]) == ("rejected", flagged.review_reason)

        # The same news again (IPN redelivered, or a poll) changes nothing more.
        delivery = answer["ipn"]
        headers = {"Content-Type": "application/json", "x-nowpayments-sig": delivery["signature"]}
        async with stack.http.post(
            stack.settings.payout_ipn_callback_url, data=delivery["body"].encode(), headers=headers
        ) as response:
            assert response.status == 200 and (await response.json())["withdrawal_status"] == "rejected"
        finished = await stack.gateway.get_payout(payout.payout_id)
        assert (await pw.apply_payout_status(stack.ctx, finished, source="poll")) == flagged
        assert await stored(stack, wid) == flagged
        assert await postings(stack, wid) == ["hold", "release"]
        await no_violations(stack)


# -- 4. DUPLICATE_EXTERNAL_ID with nothing found: held for review, then an operator's decision --------------------


async def _fake_gateway(wid: str, estimated: Decimal, seen: list[tuple[str, str]]) -> web.AppRunner:
    """A tiny NOWPayments stand-in: sign-in and estimate answer normally, the payout listing is always
    empty and every payout POST is refused as a duplicate id. Nothing is proxied anywhere."""

    async def record(request: web.Request) -> None:
        seen.append((request.method, request.path))

    async def auth(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"token": "fake-jwt"})

    async def estimate(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"estimated_amount": str(estimated)})

    async def list_payouts(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"payouts": []})

    async def create_payout(request: web.Request) -> web.Response:
        await record(request)
        body = {
            "statusCode": 400,
            "code": DUPLICATE_EXTERNAL_ID,
            "message": f'Withdrawal with unique_external_id "{wid}" already exists',
        }
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/v1/auth", auth)
    app.router.add_get("/v1/estimate", estimate)
    app.router.add_get("/v1/payout", list_payouts)
    app.router.add_post("/v1/payout", create_payout)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def test_duplicate_external_id_with_no_payout_to_find_is_held_for_review_then_rejected(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "40.00")
        w = await stored(stack, wid)
        estimated = await stack.gateway.estimate(w.final_amount_usd, "usd", w.currency_code)
        seen: list[tuple[str, str]] = []
        runner = await _fake_gateway(wid, estimated, seen)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = NowPaymentsClient(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=SecretStr("fake-key"),
            timeout=5,
            email="payouts@example.test",
            password=SecretStr("fake-password"),
        )
        ctx = StageContext(pool=stack.pool, gateway=client, settings=stack.settings, enqueue=stack.enqueue)
        try:
            before = datetime.now(UTC)
            held = await pw.process_withdrawal(ctx, wid)  # returns: the message is acked, not retried
            assert seen.count(("POST", "/v1/payout")) == 1
            assert seen.count(("GET", "/v1/payout")) == 2  # before the POST, and after the duplicate refusal
            assert held == await stored(stack, wid)
            assert held.status is WithdrawalStatus.APPROVED  # not failed, not released
            assert held.review_reason and DUPLICATE_EXTERNAL_ID in held.review_reason and wid in held.review_reason
            assert held.error_code == DUPLICATE_EXTERNAL_ID
            assert held.payout_mode == "gateway" and held.payout_amount == estimated
            assert held.payout_claimed_until is None
            assert held.next_check_at is not None and held.next_check_at > before
            assert await postings(stack, wid) == ["hold"]
            assert await metric(stack, "withdrawals_held_for_review") == "1"

            # Run again (the scheduler's check): looked up, not sent again, not failed.
            again = await pw.process_withdrawal(ctx, wid)
            assert again.status is WithdrawalStatus.APPROVED and again.review_reason == held.review_reason
            assert again.next_check_at is not None and again.next_check_at > held.next_check_at
            assert seen.count(("POST", "/v1/payout")) == 1
        finally:
            await client.close()
            await runner.cleanup()

        status, body = await decide(stack, wid, "reject", operator="alice", note="not at the gateway after all")
        assert status == 200 and body["status"] == "rejected", body
        status, body = await decide(stack, wid, "reject", operator="alice", note="again")  # a no-op
        assert status == 200 and body["status"] == "rejected", body
        rejected = await stored(stack, wid)
        assert rejected.review_reason is None and rejected.next_check_at is None
        assert await postings(stack, wid) == ["hold", "release"]  # released once
        assert await money(stack, user) == (Decimal("40.00"), Decimal("0.00"), Decimal(0))
        assert await metric(stack, "withdrawals_held_for_review") == "0"
        assert await payout_posts(stack) == 0 and await sim_payouts(stack, wid) == []
        await no_violations(stack)


# -- 5. writes after gateway calls apply only to an unsent withdrawal; terminal ones leave the scheduler -----------


async def test_an_operator_rejection_during_the_review_lookup_is_not_overwritten_by_the_lookup(
    database_url, redis_namespace
):
    async with Stack(
        database_url, redis_namespace, payouts=True, ipn=False, start_worker=False, nowpayments_timeout_seconds=0.4
    ) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        await _held_for_review(stack, wid)
        # The review lookup answers slowly (a client patient enough to wait); meanwhile an operator rejects.
        patient = NowPaymentsClient(
            base_url=stack.settings.gateway_base_url,
            api_key=stack.settings.nowpayments_api_key,
            timeout=5,
            email=stack.settings.nowpayments_email,
            password=stack.settings.nowpayments_password,
        )
        ctx = StageContext(pool=stack.pool, gateway=patient, settings=stack.settings, enqueue=stack.enqueue)
        try:
            lookups_before = await _gets(stack, "/v1/payout")
            await stack.sim_post("/sim/faults", {"path_prefix": "/v1/payout", "method": "GET", "delay": 1.0})
            lookup = asyncio.create_task(pw.process_withdrawal(ctx, wid))

            async def asked() -> bool:
                return await _gets(stack, "/v1/payout") > lookups_before

            await eventually(asked, timeout=5)
            status, body = await decide(stack, wid, "reject", operator="alice", note="not at the gateway")
            assert status == 200 and body["status"] == "rejected", body
            decided = await stored(stack, wid)
            assert decided.next_check_at is None and decided.review_reason is None
            assert not lookup.done()
            result = await lookup
        finally:
            await patient.close()
        assert result.status is WithdrawalStatus.REJECTED
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("50.00"), Decimal("0.00"), Decimal(0))
        rejected = await stored(stack, wid)
        assert rejected.status is WithdrawalStatus.REJECTED and rejected.review_reason is None
        assert rejected.next_check_at is None, rejected.next_check_at  # the lookup's write must not apply
        async with transaction(stack.pool) as conn:
            assert await withdrawals.update_unsent(conn, wid, WithdrawalUpdate(next_check_at=datetime.now(UTC))) is None
        assert (await stored(stack, wid)).next_check_at is None


async def test_terminal_withdrawals_leave_the_scheduler_and_their_review_question(database_url, redis_namespace):
    async with Stack(
        database_url, redis_namespace, payouts=True, ipn=False, start_worker=False, nowpayments_timeout_seconds=0.4
    ) as stack:
        _, wid = await approved_withdrawal(stack, "50.00")
        held = await _held_for_review(stack, wid)
        assert held.review_reason and held.next_check_at
        _, other = await approved_withdrawal(stack, "30.00")
        status, body = await decide(stack, wid, "reject", operator="alice", note="not at the gateway")
        assert status == 200 and body["status"] == "rejected", body
        rejected = await stored(stack, wid)
        assert (rejected.review_reason, rejected.next_check_at, rejected.payout_claimed_until) == (None, None, None)

        # Even with next_check_at set behind its back, the scheduler never picks up a terminal withdrawal.
        past = datetime.now(UTC) - timedelta(minutes=5)
        async with stack.pool.acquire() as conn:
            await conn.execute("UPDATE withdrawals SET next_check_at = $1 WHERE id = ANY($2)", past, [wid, other])
        async with transaction(stack.pool) as conn:
            claimed = await withdrawals.claim_due(conn, limit=100, lease_seconds=30)
        assert [w.id for w in claimed] == [other]  # the approved one is due and claimed; the rejected one is not
        assert (await stored(stack, wid)).next_check_at == past  # not even pushed out
        async with transaction(stack.pool) as conn:
            later = await withdrawals.claim_due(conn, limit=100, lease_seconds=30, now=past + timedelta(days=1))
        assert [w.id for w in later] == [other]  # however late the scheduler looks, never the rejected one

        # Any terminal transition clears the review question and the scheduler's interest.
        async with stack.pool.acquire() as conn:
            await withdrawals.update_withdrawal(
                conn, other, WithdrawalUpdate(review_reason="look at it", next_check_at=datetime.now(UTC))
            )
        async with transaction(stack.pool) as conn:
            current = await withdrawals.get_withdrawal(conn, other, for_update=True)
            failed = await move_withdrawal(conn, current, WithdrawalStatus.FAILED, actor="test", note="x")
        assert failed.status is WithdrawalStatus.FAILED
        assert (failed.review_reason, failed.next_check_at, failed.payout_claimed_until) == (None, None, None)
        await no_violations(stack)


# -- 6. an operator releases less than a held overpayment is worth; only new funds reopen the question ----------


async def test_a_smaller_release_is_not_reopened_by_repeated_ipns_but_new_funds_reopen_it(
    database_url, redis_namespace
):
    async with Stack(
        database_url, redis_namespace, start_worker=False, payments_overpaid_policy="hold_for_review"
    ) as stack:
        user = _ref("user")
        payment = await _create(stack, user, "40.00", "btc")
        over = payment.pay_amount * Decimal("1.5")
        answer = await _sim_status(stack, payment, "finished", ipn=True, actually_paid=str(over))
        assert answer["ipn"]["ok"], answer
        held = await stack.payment(payment.id)
        assert held.status.value == "completed" and held.settled_at is None
        assert held.hold_reason and "overpaid" in held.hold_reason
        assert _worth(held, over) == Decimal("60.00")
        assert (await settle_deposit(stack.ctx, payment.id)).credited is False

        released = await release_held_deposit(
            stack.pool, payment.id, operator="alice", note="only the ordered amount", credit_usd=Decimal("45.00")
        )
        assert released.credit_usd == Decimal("45.00") and released.hold_reason is None and released.settled_at
        assert await stack.balance(user) == Decimal("45.00")

        # The same IPN again (and the status re-sent by the gateway with the same amounts): no new hold.
        overpaid_ipn = (await _ipn_log(stack, payment.provider_payment_id))[-1]
        for _ in range(2):
            assert (await _repost(stack, overpaid_ipn))["payment_status"] == "completed"
        answer = await _sim_status(stack, payment, "finished", ipn=True, actually_paid=str(over))
        assert answer["ipn"]["ok"], answer
        same = await stack.payment(payment.id)
        assert same.hold_reason is None and same.credit_usd == Decimal("45.00")
        assert (await _metrics(stack))["payments_held_for_review"] == "0"

        # More funds arrive: that is new news, and it goes to an operator.
        more = payment.pay_amount * 2
        answer = await _sim_status(stack, payment, "finished", ipn=True, actually_paid=str(more))
        assert answer["ipn"]["ok"], answer
        reopened = await stack.payment(payment.id)
        assert reopened.hold_reason == "funds after settlement: now worth 80.00 USD, credited 45.00 USD"
        assert reopened.credit_usd == Decimal("45.00") and await stack.balance(user) == Decimal("45.00")
        assert (await _metrics(stack))["payments_held_for_review"] == "1"
        assert await _deposit_transactions(stack, payment.id) == [(f"deposit:{payment.id}", Decimal("45.00"))]
        await _no_violations(stack)


# -- 7. refused payout checks: acked, no dramatiq retry, left to the scheduler -----------------------------------


@pytest.mark.parametrize("refusal", [401, 403])
async def test_a_refused_check_of_a_recorded_payout_is_acked_and_left_to_the_scheduler(
    database_url, redis_namespace, refusal
):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        _, wid = await approved_withdrawal(stack, "40.00")
        sent = await pw.process_withdrawal(stack.ctx, wid)
        assert sent.status is WithdrawalStatus.PROCESSING and sent.provider_payout_id
        async with stack.pool.acquire() as conn:  # the scheduler's check is due
            await withdrawals.update_withdrawal(conn, wid, WithdrawalUpdate(next_check_at=datetime.now(UTC)))
        due = await stored(stack, wid)
        path = f"/v1/payout/{sent.provider_payout_id}"
        await stack.sim_post("/sim/faults", {"path_prefix": path, "method": "GET", "status": refusal, "count": 1000})
        expected_gets = 2 if refusal == 401 else 1  # a 401 signs in again and asks once more

        stack.start_workers()
        before = datetime.now(UTC)
        stack.actors.process_withdrawal.send(wid)

        async def acked() -> bool:
            return await _gets(stack, path) >= expected_gets and _all_empty(stack)

        await eventually(acked, timeout=15)
        await asyncio.sleep(0.5)
        assert _all_empty(stack)  # nothing delayed for a retry, nothing dead-lettered
        assert await _gets(stack, path) == expected_gets
        checked = await stored(stack, wid)
        assert checked.status is WithdrawalStatus.PROCESSING and checked.payout_status == due.payout_status
        assert checked.next_check_at is not None and checked.next_check_at > before + timedelta(seconds=20)
        assert checked.error_code is None and checked.review_reason is None
        assert await postings(stack, wid) == ["hold"]


async def test_a_401_on_the_first_attempts_lookup_leaves_the_withdrawal_approved_and_held(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "40.00")
        await stack.sim_post(
            "/sim/faults", {"path_prefix": "/v1/payout", "method": "GET", "status": 401, "count": 1000}
        )
        stack.start_workers()
        before = datetime.now(UTC)
        stack.actors.process_withdrawal.send(wid)

        async def acked() -> bool:
            return await _gets(stack, "/v1/payout") >= 2 and _all_empty(stack)

        await eventually(acked, timeout=15)
        await asyncio.sleep(0.5)
        assert _all_empty(stack)
        assert await _gets(stack, "/v1/payout") == 2
        w = await stored(stack, wid)
        assert w.status is WithdrawalStatus.APPROVED  # not failed
        assert (w.error_code, w.review_reason, w.payout_mode, w.payout_attempted_at) == (None, None, None, None)
        # The attempt gave its lease back early: the scheduler comes back in a short while.
        assert w.next_check_at is not None and before < w.next_check_at < before + timedelta(seconds=30)
        assert await payout_posts(stack) == 0 and await sim_payouts(stack, wid) == []
        assert await postings(stack, wid) == ["hold"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("40.00"), Decimal(0))
