"""Acceptance (#3): paying approved withdrawals out through NOWPayments payouts, exactly once.

Redelivered and concurrent actors, a worker dying between the payout call and recording its answer,
a payout call that times out, gateway failures and rejections, and payout IPNs replayed or forged.
The simulator's control API (/sim/payouts) is the witness of how many payouts the gateway made.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from domain.withdrawals import WithdrawalUpdate
from gateway.errors import GatewayTransientError
from gateway.signature import sign
from gateway.simulator import CATALOGUE
from services.process_withdrawal import PayoutInProgress
from services.process_withdrawal import process_withdrawal as process_withdrawal_stage
from settings import PAYOUT_IPN_PATH
from storage import currencies, withdrawals
from tests.integration.pipeline.test_withdrawal_requests import (
    XRP_ADDRESS,
    count,
    enqueue_three_times,
    events,
    fund,
    money,
    no_violations,
    postings,
    queue_state,
    ref,
    wait_idle,
    withdraw,
)
from tests.integration.stack import IPN_SECRET, Stack, eventually

GATEWAY = "gateway:nowpayments"


async def approve(stack: Stack, wid: str, *, operator: str = "alice", note: str = "ok") -> None:
    status, body = await stack.api_post(
        f"/v1/operator/withdrawals/{wid}/approve", {"operator": operator, "note": note}, operator=True
    )
    assert status == 200 and body["status"] == "approved", body


async def approved_withdrawal(stack: Stack, amount: str = "50.00", *, fund_with: str | None = None) -> tuple[str, str]:
    """A funded user's withdrawal, approved; the approval's own process-withdrawal message is dropped."""
    user = ref("user")
    await fund(stack, user, fund_with or amount)
    wid = (await withdraw(stack, user, amount))["internal_withdrawal_id"]
    await approve(stack, wid)
    if stack.worker is None:
        stack.broker.flush("process-withdrawal")
    return user, wid


async def sim_payouts(stack: Stack, wid: str) -> list[dict[str, Any]]:
    listed = await stack.sim_get(f"/sim/payouts?unique_external_id={wid}")
    assert listed["count"] == len(listed["payouts"])
    return listed["payouts"]


async def payout_posts(stack: Stack) -> int:
    """How many payout creations (POST /v1/payout) reached the gateway."""
    seen = (await stack.sim_get("/sim/requests?path_prefix=/v1/payout"))["requests"]
    return sum(1 for r in seen if r["method"] == "POST" and r["path"] == "/v1/payout")


async def stored(stack: Stack, wid: str) -> withdrawals.Withdrawal:
    async with stack.pool.acquire() as conn:
        w = await withdrawals.get_withdrawal(conn, wid)
    assert w is not None
    return w


async def wait_status(stack: Stack, wid: str, status: str, timeout: float = 20.0) -> withdrawals.Withdrawal:
    async def check():
        w = await stored(stack, wid)
        return w if w.status.value == status else None

    return await eventually(check, timeout=timeout)


# --- (b) every withdrawal actor delivered three times, concurrently -----------------------------------------------


async def test_request_withdrawal_delivered_three_times_concurrently_holds_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, worker_threads=8, start_worker=False) as stack:
        user, request_id = ref("user"), ref("wd")
        await fund(stack, user, "80.00")
        message = stack.actors.request_withdrawal.message(
            request_id=request_id,
            user_id=user,
            amount_usd="30.00",
            currency_code="btc",
            wallet_address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        )
        enqueue_three_times(stack, message)
        stack.start_workers()

        async def held():
            return (await money(stack, user))[1] == Decimal("30.00")

        await eventually(held)
        await wait_idle(stack)
        assert queue_state(stack) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}
        async with stack.pool.acquire() as conn:
            [w] = await conn.fetch("SELECT id, request_id FROM withdrawals")
        assert w["request_id"] == request_id
        assert await postings(stack, w["id"]) == ["hold"]
        assert await events(stack, w["id"]) == [(None, "pending", f"user:{user}", "requested")]
        assert await money(stack, user) == (Decimal("50.00"), Decimal("30.00"), Decimal(0))
        await no_violations(stack)


async def test_process_withdrawal_delivered_three_times_concurrently_makes_one_payout(database_url, redis_namespace):
    async with Stack(
        database_url, redis_namespace, payouts=True, ipn=False, worker_threads=8, start_worker=False
    ) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        enqueue_three_times(stack, stack.actors.process_withdrawal.message(wid))
        stack.start_workers()

        recorded = await wait_status(stack, wid, "processing")
        await wait_idle(stack)  # the lease losers finish at once (PayoutInProgress): nothing retried
        assert queue_state(stack) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}
        [payout] = await sim_payouts(stack, wid)
        assert await payout_posts(stack) == 1
        assert recorded.provider_payout_id == payout["id"]
        assert (recorded.payout_mode, recorded.payout_amount) == ("gateway", Decimal(payout["amount"]))
        assert [e for e in await events(stack, wid) if e[1] == "processing"] == [
            ("approved", "processing", GATEWAY, "payout created")
        ]
        assert await postings(stack, wid) == ["hold"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("50.00"), Decimal(0))


@pytest.mark.parametrize(
    ("scenario", "final", "settlement", "after"),
    [
        ("finished", "completed", "complete", (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))),
        ("failed", "failed", "release", (Decimal("50.00"), Decimal("0.00"), Decimal(0))),
    ],
)
async def test_process_withdrawal_delivered_three_times_after_the_payout_ended_settles_once(
    database_url, redis_namespace, scenario, final, settlement, after
):
    async with Stack(
        database_url, redis_namespace, payouts=True, ipn=False, worker_threads=8, start_worker=False
    ) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        sent = await process_withdrawal_stage(stack.ctx, wid)
        assert sent.status.value == "processing"
        await stack.sim_post(f"/sim/payouts/{sent.provider_payout_id}/play", {"scenario": scenario, "send_ipn": False})

        enqueue_three_times(stack, stack.actors.process_withdrawal.message(withdrawal_id=wid))
        stack.start_workers()
        done = await wait_status(stack, wid, final)
        await wait_idle(stack)
        assert queue_state(stack) == {"ready": 0, "stored": 0, "delayed": 0, "dead": 0}

        assert await postings(stack, wid) == ["hold", settlement]
        assert [e[1] for e in await events(stack, wid)] == ["pending", "approved", "processing", final]
        assert await money(stack, user) == after
        assert len(await sim_payouts(stack, wid)) == 1
        if final == "completed":
            assert done.transaction_hash and done.completed_at and done.payout_status == "FINISHED"
        else:
            assert (done.error_code, done.payout_status) == ("PAYOUT_FAILED", "FAILED")
        await no_violations(stack)


# --- (c) the worker dies between the payout call and recording its answer -------------------------------------


async def _die_after_payout_call(stack: Stack, wid: str) -> dict[str, Any]:
    """Do what the payout stage does up to the gateway's answer, then 'die': nothing of the answer is recorded.

    The lease it held expires (set in the past), as it would once the dead worker's time ran out.
    """
    async with stack.pool.acquire() as conn:
        claimed = await withdrawals.claim_payout(conn, wid, lease_seconds=120)
        assert claimed is not None
        amount = await stack.gateway.estimate(claimed.final_amount_usd, "usd", claimed.currency_code)
        sending = await withdrawals.mark_payout_sending(conn, wid, amount=amount, lease=claimed.payout_claimed_until)
        assert sending is not None
    payout = await stack.gateway.create_payout(
        address=claimed.wallet_address,
        currency=claimed.currency_code,
        amount=amount,
        extra_id=claimed.extra_id,
        ipn_callback_url=stack.settings.payout_ipn_callback_url,
        unique_external_id=wid,
    )
    async with stack.pool.acquire() as conn:
        await withdrawals.update_withdrawal(
            conn, wid, WithdrawalUpdate(payout_claimed_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    dead = await stored(stack, wid)
    assert (dead.status.value, dead.payout_mode, dead.provider_payout_id) == ("approved", "gateway", None)
    return {"id": payout.payout_id, "amount": payout.amount}


@pytest.mark.parametrize("gateway_status_at_retry", ["CREATING", "FINISHED"])
async def test_retry_after_the_worker_died_past_the_payout_call_does_not_pay_again(
    database_url, redis_namespace, gateway_status_at_retry
):
    async with Stack(database_url, redis_namespace, payouts=True, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        payout = await _die_after_payout_call(stack, wid)
        if gateway_status_at_retry == "FINISHED":
            # The payout went through while nobody was looking; its IPNs reach us before the retry does.
            await stack.sim_post(f"/sim/payouts/{payout['id']}/play", {"scenario": "finished"})
        assert await payout_posts(stack) == 1

        stack.start_workers()
        stack.actors.process_withdrawal.send(wid)  # the redelivery of the dead worker's message
        target = "completed" if gateway_status_at_retry == "FINISHED" else "processing"
        recorded = await wait_status(stack, wid, target)
        await wait_idle(stack)

        assert await payout_posts(stack) == 1
        assert [p["id"] for p in await sim_payouts(stack, wid)] == [payout["id"]]
        assert recorded.provider_payout_id == payout["id"] and recorded.payout_amount == payout["amount"]
        if gateway_status_at_retry == "CREATING":
            await stack.sim_post(f"/sim/payouts/{payout['id']}/play", {"scenario": "finished"})
            recorded = await wait_status(stack, wid, "completed")
        assert recorded.transaction_hash
        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))
        assert len(await sim_payouts(stack, wid)) == 1
        await no_violations(stack)


async def _timed_out_payout_call(stack: Stack, wid: str) -> dict[str, Any]:
    """The payout POST reaches the gateway, which acts on it but answers after our client gave up."""
    await stack.sim_post("/sim/faults", {"path_prefix": "/v1/payout", "method": "POST", "delay": 1.2, "count": 1})
    with pytest.raises(GatewayTransientError, match="no answer within"):
        await process_withdrawal_stage(stack.ctx, wid)

    async def made():
        return await sim_payouts(stack, wid)

    [payout] = await eventually(made, timeout=5)
    w = await stored(stack, wid)
    assert (w.status.value, w.payout_mode, w.provider_payout_id) == ("approved", "gateway", None)
    assert w.payout_amount == Decimal(payout["amount"])
    return payout


async def test_payout_call_that_times_out_is_reconciled_by_the_retry_with_one_payout(database_url, redis_namespace):
    async with Stack(
        database_url, redis_namespace, payouts=True, start_worker=False, nowpayments_timeout_seconds=0.4
    ) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        payout = await _timed_out_payout_call(stack, wid)
        # The timed-out attempt's short wait has run out by the time the retry comes.
        async with stack.pool.acquire() as conn:
            await withdrawals.update_withdrawal(
                conn, wid, WithdrawalUpdate(payout_claimed_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        stack.start_workers()
        stack.actors.process_withdrawal.send(wid)
        recorded = await wait_status(stack, wid, "processing")
        await wait_idle(stack)
        assert recorded.provider_payout_id == payout["id"]
        assert await payout_posts(stack) == 1  # reconciled by unique_external_id, never posted again
        assert len(await sim_payouts(stack, wid)) == 1

        await stack.sim_post(f"/sim/payouts/{payout['id']}/play", {"scenario": "finished"})
        await wait_status(stack, wid, "completed")
        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))


async def test_after_a_payout_timeout_the_retry_waits_briefly_then_reconciles(database_url, redis_namespace):
    """Not the full 120 s lease: a short wait for the gateway to register the lost payout; a message arriving
    meanwhile leaves it to the scheduler's check at the wait's end (no retry is spent waiting)."""
    async with Stack(
        database_url, redis_namespace, payouts=True, start_worker=False, nowpayments_timeout_seconds=0.4
    ) as stack:
        _, wid = await approved_withdrawal(stack, "50.00")
        payout = await _timed_out_payout_call(stack, wid)
        w = await stored(stack, wid)
        wait = (w.payout_claimed_until - datetime.now(UTC)).total_seconds()
        assert 0 < wait <= 11, wait
        assert w.next_check_at == w.payout_claimed_until  # the scheduler comes back even if the message is lost
        with pytest.raises(PayoutInProgress) as early:
            await process_withdrawal_stage(stack.ctx, wid)  # a redelivery, a second later
        assert early.value.until == w.payout_claimed_until
        assert (await stored(stack, wid)).next_check_at == w.payout_claimed_until

        # Once the short wait is over, the retry reconciles by our id: one payout, recorded.
        async with stack.pool.acquire() as conn:
            await withdrawals.update_withdrawal(
                conn, wid, WithdrawalUpdate(payout_claimed_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        retried = await process_withdrawal_stage(stack.ctx, wid)
        assert retried.status.value == "processing" and retried.provider_payout_id == payout["id"]
        assert await payout_posts(stack) == 1


# --- gateway outcomes: failure, rejection, refusal ----------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["failed", "rejected"])
async def test_payout_failed_or_rejected_at_the_gateway_fails_the_withdrawal_and_releases_once(
    database_url, redis_namespace, scenario
):
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user, wid = await approved_withdrawal(stack, "45.00", fund_with="100.00")
        sent = await wait_status(stack, wid, "processing")
        played = await stack.sim_post(f"/sim/payouts/{sent.provider_payout_id}/play", {"scenario": scenario})
        assert all(d["ok"] for d in played["ipn"]), played
        failed = await wait_status(stack, wid, "failed")
        assert failed.error_code == f"PAYOUT_{scenario.upper()}" and failed.error_message

        # A later poll and a replay of every IPN change nothing.
        assert (await process_withdrawal_stage(stack.ctx, wid)).status.value == "failed"
        for delivery in played["ipn"]:
            async with stack.http.post(
                stack.web_url + PAYOUT_IPN_PATH,
                data=delivery["body"].encode(),
                headers={"Content-Type": "application/json", "x-nowpayments-sig": delivery["signature"]},
            ) as response:
                assert response.status == 200
                assert (await response.json())["withdrawal_status"] == "failed"
        await wait_idle(stack)

        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("100.00"), Decimal("0.00"), Decimal(0))
        assert await events(stack, wid) == [
            (None, "pending", f"user:{user}", "requested"),
            ("pending", "approved", "operator:alice", "ok"),
            ("approved", "processing", GATEWAY, "payout created"),
            ("processing", "failed", GATEWAY, f"payout {scenario} (ipn)"),
        ]
        status, history = await stack.api_get(f"/v1/users/{user}/transactions")
        assert status == 200
        assert (history["items"][0]["type"], history["items"][0]["balance_after"]) == ("refund", "100.00")
        await no_violations(stack)


async def test_gateway_refusing_the_payout_fails_the_withdrawal_and_releases_the_hold(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True, start_worker=False) as stack:
        user, wid = await approved_withdrawal(stack, "30.00")
        await stack.sim_post("/sim/faults", {"path_prefix": "/v1/payout", "method": "POST", "status": 400})
        failed = await process_withdrawal_stage(stack.ctx, wid)
        assert failed.status.value == "failed" and failed.error_code == "HTTP_400"
        assert await sim_payouts(stack, wid) == []
        assert await postings(stack, wid) == ["hold", "release"]
        assert (await events(stack, wid))[-1] == ("approved", "failed", GATEWAY, "payout refused: HTTP_400")
        assert await money(stack, user) == (Decimal("30.00"), Decimal("0.00"), Decimal(0))
        # Redelivered afterwards: nothing is sent and nothing is released twice.
        assert (await process_withdrawal_stage(stack.ctx, wid)).status.value == "failed"
        assert await sim_payouts(stack, wid) == [] and await postings(stack, wid) == ["hold", "release"]


# --- payout IPNs ---------------------------------------------------------------------------------------------------


async def _post_ipn(stack: Stack, body: bytes, signature: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["x-nowpayments-sig"] = signature
    async with stack.http.post(stack.web_url + PAYOUT_IPN_PATH, data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_payout_ipns_forged_are_refused_and_replayed_change_nothing(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user, wid = await approved_withdrawal(stack, "50.00")
        sent = await wait_status(stack, wid, "processing")
        [payout] = await sim_payouts(stack, wid)

        def ipn(**changes: Any) -> bytes:
            body = {
                "id": payout["id"],
                "batch_withdrawal_id": payout["batch_withdrawal_id"],
                "status": "FINISHED",
                "address": payout["address"],
                "currency": payout["currency"],
                "amount": payout["amount"],
                "extra_id": None,
                "hash": "f" * 64,
                "error": None,
                "unique_external_id": wid,
                "ipn_callback_url": payout["ipn_callback_url"],
                "created_at": payout["created_at"],
                "updated_at": payout["created_at"],
            }
            return json.dumps({**body, **changes}, separators=(",", ":")).encode()

        finished, failed = ipn(), ipn(status="FAILED", hash=None, error="forged")
        forged = [
            (finished, None),
            (finished, ""),
            (finished, "0" * 128),
            (finished, sign(finished, "not-the-ipn-secret")),
            (failed, sign(finished, IPN_SECRET)),  # a real signature over another body
        ]
        for body, signature in forged:
            status, answer = await _post_ipn(stack, body, signature)
            assert (status, answer["error"]) == (401, "invalid_signature"), (signature, answer)
        # Signed, but for a payout that is not ours: 404, and nothing moves.
        stranger = ipn(id="5999999999", unique_external_id="WD_somebody_else")
        assert (await _post_ipn(stack, stranger, sign(stranger, IPN_SECRET)))[0] == 404
        assert await stored(stack, wid) == sent
        assert await postings(stack, wid) == ["hold"]

        played = await stack.sim_post(f"/sim/payouts/{payout['id']}/play", {"scenario": "finished"})
        completed = await wait_status(stack, wid, "completed")
        assert completed.transaction_hash == (await stack.sim_get(f"/sim/payouts/{payout['id']}"))["hash"]
        for delivery in played["ipn"] * 2:  # every IPN of the payout's life, twice, after it completed
            status, answer = await _post_ipn(stack, delivery["body"].encode(), delivery["signature"])
            assert status == 200 and answer["withdrawal_status"] == "completed", answer
        # A correctly signed FAILED arriving after completion cannot undo it either.
        status, answer = await _post_ipn(stack, failed, sign(failed, IPN_SECRET))
        assert status == 200 and answer["withdrawal_status"] == "completed", answer
        await wait_idle(stack)

        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("0.00"), Decimal("50.00"))
        assert [e[1] for e in await events(stack, wid)] == ["pending", "approved", "processing", "completed"]
        assert await count(stack, "SELECT count(*) FROM ledger_transactions WHERE type = 'withdrawal'") == 2
        await no_violations(stack)


# --- a memo coin end to end, with the audit trail -------------------------------------------------------------------


async def test_memo_coin_payout_carries_the_memo_and_every_transition_is_attributed(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        view = await withdraw(stack, user, "25.00", currency="xrp", address=XRP_ADDRESS, extra_id=" 123456 ")
        wid = view["internal_withdrawal_id"]
        # With payouts on, the network fee is the gateway's payout fee for this amount, in USD (half-up).
        crypto = await stack.gateway.estimate(Decimal("25.00"), "usd", "xrp")
        fee = await stack.gateway.payout_fee("xrp", crypto)
        network = (Fraction(fee) * 25 / Fraction(crypto) * 100 + Fraction(1, 2)).__floor__() / Decimal(100)
        assert view["network_fee_usd"] == f"{network:.2f}" and network != Decimal("1.00")
        assert view["extra_id"] == "123456"
        assert Decimal(view["final_amount_usd"]) == Decimal("25.00") - network - Decimal("0.50")
        await approve(stack, wid, operator="alice", note="regular customer")
        sent = await wait_status(stack, wid, "processing")
        [payout] = await sim_payouts(stack, wid)
        assert (payout["currency"], payout["address"], payout["extra_id"]) == ("xrp", XRP_ADDRESS, "123456")
        assert Decimal(payout["amount"]) == sent.payout_amount
        assert payout["ipn_callback_url"] == stack.web_url + PAYOUT_IPN_PATH

        await stack.sim_post(f"/sim/payouts/{payout['id']}/play", {"scenario": "finished", "step_delay": 0.05})
        await wait_status(stack, wid, "completed")
        status, shown = await stack.api_get(f"/v1/withdrawals/{wid}")
        assert status == 200
        assert (shown["status"], shown["payout_status"], shown["payout_mode"]) == ("completed", "FINISHED", "gateway")
        assert shown["transaction_hash"] == (await stack.sim_get(f"/sim/payouts/{payout['id']}"))["hash"]
        assert [(e["from_status"], e["to_status"], e["actor"], e["note"]) for e in shown["events"]] == [
            (None, "pending", f"user:{user}", "requested"),
            ("pending", "approved", "operator:alice", "regular customer"),
            ("approved", "processing", GATEWAY, "payout created"),
            ("processing", "completed", GATEWAY, "payout finished (ipn)"),
        ]
        assert all(e["at"] for e in shown["events"])
        await wait_idle(stack)
        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (Decimal("75.00"), Decimal("0.00"), Decimal("25.00"))
        await no_violations(stack)


async def test_every_active_currency_pays_out_the_estimated_final_amount(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, payouts=True, ipn=False, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "500.00")
        async with stack.pool.acquire() as conn:
            codes = [c.code for c in await currencies.list_currencies(conn, active_only=True)]
        assert len(codes) >= 5
        for code in codes:
            memo = "42" if CATALOGUE[code].extra_id_exists else None
            view = await withdraw(stack, user, "30.00", currency=code, address=CATALOGUE[code].address(), extra_id=memo)
            wid = view["internal_withdrawal_id"]
            await approve(stack, wid)
            sent = await process_withdrawal_stage(stack.ctx, wid)
            assert sent.status.value == "processing", (code, sent.error_code, sent.error_message)
            [payout] = await sim_payouts(stack, wid)
            expected = await stack.gateway.estimate(Decimal(view["final_amount_usd"]), "usd", code)
            assert (payout["currency"], Decimal(payout["amount"]), payout["extra_id"]) == (code, expected, memo)
            await stack.sim_post(f"/sim/payouts/{payout['id']}/play", {"scenario": "finished", "send_ipn": False})
            assert (await process_withdrawal_stage(stack.ctx, wid)).status.value == "completed", code
        assert await money(stack, user) == (
            Decimal("500.00") - 30 * len(codes),
            Decimal("0.00"),
            Decimal("30.00") * len(codes),
        )
        await no_violations(stack)
