"""Acceptance (#3): people deciding about a withdrawal - the user cancels, an operator approves, rejects
or completes (API behind OPERATOR_TOKEN and the `payments withdrawals` CLI) - and what each does to the hold.
"""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

import redis

from services.process_withdrawal import process_withdrawal as process_withdrawal_stage
from storage import withdrawals
from tests.conftest import REDIS_URL
from tests.integration.pipeline.test_withdrawal_requests import (
    count,
    events,
    fund,
    money,
    no_violations,
    postings,
    ref,
    withdraw,
)
from tests.integration.stack import API_TOKEN, OPERATOR_TOKEN, Stack

TX_HASH = "ab" * 32


async def decide(stack: Stack, wid: str, action: str, **body: str) -> tuple[int, dict]:
    return await stack.api_post(f"/v1/operator/withdrawals/{wid}/{action}", body, operator=True)


async def platform_balance(stack: Stack, code: str) -> Decimal:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e"
            " JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = $1",
            code,
        )


# --- (d) rejection, cancellation: the exact held amount comes back, once ---------------------------------------


async def test_rejection_releases_exactly_the_held_amount_once_and_completion_after_it_is_refused(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        other = await withdraw(stack, user, "12.34")  # another hold of the same user must stay untouched
        wid = (await withdraw(stack, user, "40.00"))["internal_withdrawal_id"]
        assert await money(stack, user) == (Decimal("47.66"), Decimal("52.34"), Decimal(0))

        status, body = await decide(stack, wid, "reject", operator="bob")
        assert (status, body["error"]) == (400, "invalid_request") and "needs a note" in body["message"], body
        status, body = await decide(stack, wid, "reject", note="address on a sanctions list")
        assert (status, body["error"]) == (400, "invalid_request") and "operator" in body["message"], body
        assert await postings(stack, wid) == ["hold"]

        status, body = await decide(stack, wid, "reject", operator="bob", note="address on a sanctions list")
        assert status == 200 and body["status"] == "rejected", body
        assert await money(stack, user) == (Decimal("87.66"), Decimal("12.34"), Decimal(0))
        assert await postings(stack, wid) == ["hold", "release"]

        # Completion, approval and cancellation after the rejection are refused; a repeated rejection is a no-op.
        status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH)
        assert (status, body["error"]) == (409, "invalid_transition"), body
        assert "cannot complete a rejected withdrawal" in body["message"]
        status, body = await decide(stack, wid, "approve", operator="alice", note="oops")
        assert (status, body["error"]) == (409, "invalid_transition"), body
        status, body = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", {"user_id": user})
        assert (status, body["error"]) == (409, "invalid_transition"), body
        status, body = await decide(stack, wid, "reject", operator="carol", note="again")
        assert status == 200 and body["status"] == "rejected", body

        assert await postings(stack, wid) == ["hold", "release"]
        assert await events(stack, wid) == [
            (None, "pending", f"user:{user}", "requested"),
            ("pending", "rejected", "operator:bob", "address on a sanctions list"),
        ]
        assert await money(stack, user) == (Decimal("87.66"), Decimal("12.34"), Decimal(0))
        assert await postings(stack, other["internal_withdrawal_id"]) == ["hold"]
        await no_violations(stack)


async def test_user_cancels_a_pending_withdrawal_and_history_shows_the_hold_and_the_refund(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        wid = (await withdraw(stack, user, "40.00"))["internal_withdrawal_id"]

        status, balance = await stack.api_get(f"/v1/users/{user}/balance")
        assert status == 200
        assert (balance["balance_usd"], balance["held_usd"]) == ("60.00", "40.00")
        assert Decimal(balance["total_withdrawn"]) == 0
        status, history = await stack.api_get(f"/v1/users/{user}/transactions")
        hold = history["items"][0]
        assert (hold["type"], hold["amount_usd"], hold["balance_after"]) == ("withdrawal", "-40.00", "60.00")
        assert hold["reference"] == f"withdrawal:{wid}:hold" and wid in hold["description"]

        # Another user cannot cancel it (it is not theirs to see either).
        status, body = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", {"user_id": ref("mallory")})
        assert (status, body["error"]) == (404, "not_found"), body
        status, body = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", {"user_id": user, "note": "changed mind"})
        assert status == 200 and body["status"] == "cancelled", body
        assert [(e["to_status"], e["actor"], e["note"]) for e in body["events"]] == [
            ("pending", f"user:{user}", "requested"),
            ("cancelled", f"user:{user}", "changed mind"),
        ]
        # Cancelling twice is a no-op; approving a cancelled withdrawal is refused.
        status, body = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", {"user_id": user})
        assert status == 200 and body["status"] == "cancelled", body
        status, body = await decide(stack, wid, "approve", operator="alice")
        assert (status, body["error"]) == (409, "invalid_transition"), body

        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("100.00"), Decimal("0.00"), Decimal(0))
        status, history = await stack.api_get(f"/v1/users/{user}/transactions")
        refund, hold, deposit = history["items"]
        assert (refund["type"], refund["amount_usd"], refund["balance_after"]) == ("refund", "40.00", "100.00")
        assert refund["reference"] == f"withdrawal:{wid}:settle" and "cancelled" in refund["description"]
        assert (hold["balance_after"], deposit["type"], deposit["balance_after"]) == ("60.00", "deposit", "100.00")
        await no_violations(stack)


async def test_cancellation_is_only_possible_while_pending(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "50.00")
        wid = (await withdraw(stack, user, "50.00"))["internal_withdrawal_id"]
        status, body = await decide(stack, wid, "approve", operator="alice", note="checked")
        assert status == 200 and body["status"] == "approved", body
        status, body = await stack.api_post(f"/v1/withdrawals/{wid}/cancel", {"user_id": user})
        assert (status, body["error"]) == (409, "invalid_transition"), body
        assert "cannot cancel an approved withdrawal" in body["message"]
        assert await postings(stack, wid) == ["hold"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("50.00"), Decimal(0))


# --- manual completion: the hold is posted once, fees to the platform ---------------------------------------------


async def test_manual_completion_posts_the_hold_once_with_fees_to_the_platform(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        view = await withdraw(stack, user, "40.00")
        wid = view["internal_withdrawal_id"]
        assert (view["total_fee_usd"], view["final_amount_usd"]) == ("1.50", "38.50")

        status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH)
        assert (status, body["error"]) == (409, "invalid_transition"), body  # not approved yet
        status, body = await decide(stack, wid, "approve", operator="alice", note="KYC ok")
        assert status == 200 and body["status"] == "approved", body
        # Manual mode: the payout stage leaves an approved withdrawal for the operator.
        assert (await process_withdrawal_stage(stack.ctx, wid)).status.value == "approved"
        for bad_hash in ("", "short", "has spaces in it", "x" * 201):
            status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=bad_hash)
            assert (status, body["error"]) == (400, "invalid_request") and "transaction hash" in body["message"]

        status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH, note="sent by hand")
        assert status == 200 and body["status"] == "completed", body
        assert (body["transaction_hash"], body["payout_mode"]) == (TX_HASH, "manual") and body["completed_at"]
        # Completing again with the same hash is a no-op; with another hash, or rejecting now, is refused.
        status, body = await decide(stack, wid, "complete", operator="alice", tx_hash=TX_HASH)
        assert status == 200 and body["status"] == "completed", body
        status, body = await decide(stack, wid, "complete", operator="alice", tx_hash="cd" * 32)
        assert (status, body["error"]) == (409, "invalid_transition"), body
        status, body = await decide(stack, wid, "reject", operator="bob", note="too late")
        assert (status, body["error"]) == (409, "invalid_transition"), body

        assert await postings(stack, wid) == ["hold", "complete"]
        assert await money(stack, user) == (Decimal("60.00"), Decimal("0.00"), Decimal("40.00"))
        assert await platform_balance(stack, "platform:fees") == Decimal("1.50")
        assert await platform_balance(stack, "platform:payouts") == Decimal("38.50")
        assert await events(stack, wid) == [
            (None, "pending", f"user:{user}", "requested"),
            ("pending", "approved", "operator:alice", "KYC ok"),
            ("approved", "completed", "operator:alice", "sent by hand"),
        ]
        # The completion leaves the available balance alone: history still ends with the hold's line.
        status, history = await stack.api_get(f"/v1/users/{user}/transactions")
        assert [(i["type"], i["balance_after"]) for i in history["items"]] == [
            ("withdrawal", "60.00"),
            ("deposit", "100.00"),
        ]
        # A second withdrawal completed later adds its own amount to total_withdrawn, once.
        wid2 = (await withdraw(stack, user, "10.00"))["internal_withdrawal_id"]
        await decide(stack, wid2, "approve", operator="alice")
        await decide(stack, wid2, "complete", operator="alice", tx_hash="ef" * 32)
        await decide(stack, wid2, "complete", operator="alice", tx_hash="ef" * 32)
        assert await money(stack, user) == (Decimal("50.00"), Decimal("0.00"), Decimal("50.00"))
        await no_violations(stack)


# --- operator authentication --------------------------------------------------------------------------------------


async def test_operator_endpoints_accept_only_the_operator_token(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "50.00")
        wid = (await withdraw(stack, user, "20.00"))["internal_withdrawal_id"]
        url = f"{stack.web_url}/v1/operator/withdrawals/{wid}/approve"
        for headers in (
            {},
            {"Authorization": f"Bearer {API_TOKEN}"},
            {"Authorization": f"Bearer {OPERATOR_TOKEN}x"},
            {"Authorization": OPERATOR_TOKEN},
        ):
            async with stack.http.post(url, json={"operator": "eve"}, headers=headers) as response:
                assert response.status == 401, headers
                assert (await response.json())["error"] == "unauthorized"
        # The operator token is no key to the user-facing API either.
        async with stack.http.get(
            f"{stack.web_url}/v1/withdrawals/{wid}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        ) as response:
            assert response.status == 401
        assert await events(stack, wid) == [(None, "pending", f"user:{user}", "requested")]

        status, body = await decide(stack, wid, "approve", operator="alice", note="fine")
        assert status == 200 and body["status"] == "approved", body
        status, body = await decide(stack, wid, "launch", operator="alice")
        assert status == 404, body


# --- a withdrawal handed to the gateway is the gateway's to settle ------------------------------------------------


async def test_manual_completion_or_rejection_of_a_withdrawal_handed_to_the_gateway_is_refused(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        claimed = (await withdraw(stack, user, "30.00"))["internal_withdrawal_id"]
        sent = (await withdraw(stack, user, "20.00"))["internal_withdrawal_id"]
        for wid in (claimed, sent):
            status, body = await decide(stack, wid, "approve", operator="alice")
            assert status == 200, body
        stack.broker.flush("process-withdrawal")  # the approvals' payout messages: driven by hand below

        # `claimed`: a worker has taken the payout lease (and may be calling the gateway right now).
        async with stack.pool.acquire() as conn:
            assert await withdrawals.claim_payout(conn, claimed, lease_seconds=60) is not None
        # `sent`: the payout was created at the gateway and recorded.
        assert (await process_withdrawal_stage(stack.ctx, sent)).status.value == "processing"

        for wid in (claimed, sent):
            for action, extra in (("complete", {"tx_hash": TX_HASH}), ("reject", {"note": "changed our minds"})):
                status, body = await decide(stack, wid, action, operator="bob", **extra)
                assert (status, body["error"]) == (409, "invalid_transition"), (wid, action, body)
                assert "handed to the payout gateway" in body["message"]
        assert await postings(stack, claimed) == ["hold"]
        assert await postings(stack, sent) == ["hold"]
        assert [e[1] for e in await events(stack, claimed)] == ["pending", "approved"]
        assert [e[1] for e in await events(stack, sent)] == ["pending", "approved", "processing"]
        assert await money(stack, user) == (Decimal("50.00"), Decimal("50.00"), Decimal(0))


async def test_rejecting_an_approved_withdrawal_before_the_worker_takes_it_means_no_payout_is_ever_made(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, payouts=True, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "60.00")
        wid = (await withdraw(stack, user, "60.00"))["internal_withdrawal_id"]
        status, body = await decide(stack, wid, "approve", operator="alice", note="ok")
        assert status == 200, body
        status, body = await decide(stack, wid, "reject", operator="bob", note="fraud signal after approval")
        assert status == 200 and body["status"] == "rejected", body
        # The approval's process-withdrawal message is still queued: delivering it now pays nothing.
        stack.start_workers()
        await asyncio.to_thread(stack.broker.join, "process-withdrawal", timeout=20_000)
        await asyncio.to_thread(stack.worker.join)
        assert (await stack.sim_get(f"/sim/payouts?unique_external_id={wid}"))["count"] == 0
        assert await postings(stack, wid) == ["hold", "release"]
        assert await money(stack, user) == (Decimal("60.00"), Decimal("0.00"), Decimal(0))
        assert await events(stack, wid) == [
            (None, "pending", f"user:{user}", "requested"),
            ("pending", "approved", "operator:alice", "ok"),
            ("approved", "rejected", "operator:bob", "fraud signal after approval"),
        ]


# --- the operator CLI, as a real process ------------------------------------------------------------------------


async def _cli(database_url: str, namespace: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "BROKER_NAMESPACE": namespace,
        "NOWPAYMENTS_API_KEY": "cli-test-key",
        "LOG_FORMAT": "console",
    }
    for name in ("NOWPAYMENTS_EMAIL", "NOWPAYMENTS_PASSWORD", "OPERATOR_TOKEN", "BROKER_URL"):
        env.pop(name, None)
    payments = Path(sys.executable).with_name("payments")
    process = await asyncio.create_subprocess_exec(
        str(payments),
        "withdrawals",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_cli_approves_completes_rejects_and_shows_with_operator_and_note(database_url, redis_namespace):
    cli_redis = redis.Redis.from_url(REDIS_URL)
    try:
        async with Stack(database_url, redis_namespace, start_worker=False) as stack:
            user = ref("user")
            await fund(stack, user, "100.00")
            paid = (await withdraw(stack, user, "40.00"))["internal_withdrawal_id"]
            refused = (await withdraw(stack, user, "25.00"))["internal_withdrawal_id"]

            code, out, err = await _cli(
                database_url, redis_namespace, "approve", paid, "--operator", "carol", "--note", "KYC done"
            )
            assert code == 0, err
            assert f"{paid} is now approved" in out
            # The approval queued the payout step on the CLI's broker (manual mode: it will wait for us).
            assert cli_redis.llen(f"{redis_namespace}:process-withdrawal") == 1

            code, out, err = await _cli(database_url, redis_namespace, "complete", paid, "--operator", "carol")
            assert code == 1 and "refused" in err and "transaction hash" in err, (out, err)
            code, out, err = await _cli(
                database_url,
                redis_namespace,
                "complete",
                paid,
                "--operator",
                "carol",
                "--tx-hash",
                TX_HASH,
                "--note",
                "sent",
            )
            assert code == 0 and f"{paid} is now completed" in out, err

            code, out, err = await _cli(database_url, redis_namespace, "reject", refused, "--operator", "dave")
            assert code == 1 and "needs a note" in err, (out, err)
            code, out, err = await _cli(
                database_url, redis_namespace, "reject", refused, "--operator", "dave", "--note", "wallet flagged"
            )
            assert code == 0 and f"{refused} is now rejected" in out, err
            code, out, err = await _cli(
                database_url, redis_namespace, "complete", refused, "--operator", "dave", "--tx-hash", TX_HASH
            )
            assert code == 1 and "cannot complete a rejected withdrawal" in err, (out, err)

            code, out, err = await _cli(database_url, redis_namespace, "show", paid)
            assert code == 0, err
            lines = out.splitlines()
            assert lines[0].startswith(f"{paid} completed: $40.00 for {user}, fees $1.50, pays $38.50 in btc")
            assert "approved" in lines[2] and "by operator:carol: KYC done" in lines[2]
            assert "completed" in lines[3] and "by operator:carol: sent" in lines[3]
            code, out, err = await _cli(database_url, redis_namespace, "show", "WD_nope")
            assert code == 1 and "no withdrawal" in err

            assert await events(stack, paid) == [
                (None, "pending", f"user:{user}", "requested"),
                ("pending", "approved", "operator:carol", "KYC done"),
                ("approved", "completed", "operator:carol", "sent"),
            ]
            assert await events(stack, refused) == [
                (None, "pending", f"user:{user}", "requested"),
                ("pending", "rejected", "operator:dave", "wallet flagged"),
            ]
            assert await postings(stack, paid) == ["hold", "complete"]
            assert await postings(stack, refused) == ["hold", "release"]
            assert await money(stack, user) == (Decimal("60.00"), Decimal("0.00"), Decimal("40.00"))
            assert await count(stack, "SELECT count(*) FROM withdrawals WHERE transaction_hash = $1", TX_HASH) == 1
            await no_violations(stack)
    finally:
        cli_redis.close()


# --- competing decisions: one wins, the hold is settled once -----------------------------------------------------


async def test_competing_decisions_on_one_withdrawal_settle_its_hold_exactly_once(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        pending = (await withdraw(stack, user, "40.00"))["internal_withdrawal_id"]
        approved = (await withdraw(stack, user, "60.00"))["internal_withdrawal_id"]
        await decide(stack, approved, "approve", operator="alice")

        # A pending one: the user cancels while two operators reject and one approves, all at once (x3 each).
        answers = await asyncio.gather(
            *[
                call
                for _ in range(3)
                for call in (
                    stack.api_post(f"/v1/withdrawals/{pending}/cancel", {"user_id": user}),
                    decide(stack, pending, "reject", operator="bob", note="no"),
                    decide(stack, pending, "reject", operator="dave", note="nope"),
                    decide(stack, pending, "approve", operator="erin", note="yes"),
                )
            ]
        )
        assert {status for status, _ in answers} <= {200, 409}, answers
        final = (await stack.api_get(f"/v1/withdrawals/{pending}"))[1]
        moves = [e for e in final["events"] if e["from_status"] is not None]
        assert len(moves) == 1 or (
            # approval may win first and then lose nothing: an approved withdrawal can still be rejected
            [m["to_status"] for m in moves] == ["approved", "rejected"]
        ), moves
        released = final["status"] in ("cancelled", "rejected")
        assert await postings(stack, pending) == (["hold", "release"] if released else ["hold"])

        # An approved one (manual mode): completion and rejection race; exactly one posting happens.
        answers = await asyncio.gather(
            *[
                call
                for _ in range(3)
                for call in (
                    decide(stack, approved, "complete", operator="alice", tx_hash=TX_HASH),
                    decide(stack, approved, "reject", operator="bob", note="cold feet"),
                )
            ]
        )
        assert {status for status, _ in answers} <= {200, 409}, answers
        final = (await stack.api_get(f"/v1/withdrawals/{approved}"))[1]
        assert final["status"] in ("completed", "rejected")
        outcome = "complete" if final["status"] == "completed" else "release"
        assert await postings(stack, approved) == ["hold", outcome]
        assert [e["to_status"] for e in final["events"]] == ["pending", "approved", final["status"]]

        available, held, withdrawn = await money(stack, user)
        assert held == (Decimal("40.00") if not released else Decimal(0))
        assert withdrawn == (Decimal("60.00") if outcome == "complete" else Decimal(0))
        assert available + held + withdrawn == Decimal("100.00")
        await no_violations(stack)
