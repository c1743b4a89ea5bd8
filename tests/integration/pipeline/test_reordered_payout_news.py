"""Issue 9 (1): payout IPNs duplicated, delayed and reordered, as the crash soak delivers them.

An IPN of an earlier stage (PROCESSING, SENDING) arriving after the one that closed the withdrawal
(FAILED, FINISHED) is stale news: ignored and logged, never a review flag, never a ledger change. The
IPNs are the simulator's own, signed by it, replayed through the real payout IPN route.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.signature import sign
from tests.integration.pipeline.test_payout_unknown_outcome import metric
from tests.integration.pipeline.test_withdrawal_payouts import (
    _post_ipn,
    approved_withdrawal,
    stored,
    wait_status,
)
from tests.integration.pipeline.test_withdrawal_requests import events, money, no_violations, postings, wait_idle
from tests.integration.stack import IPN_SECRET, Stack


async def _closed_by_the_gateway(stack: Stack, scenario: str, final: str) -> tuple[str, str, list[dict[str, Any]]]:
    user, wid = await approved_withdrawal(stack, "40.00", fund_with="100.00")
    sent = await wait_status(stack, wid, "processing")
    played = await stack.sim_post(f"/sim/payouts/{sent.provider_payout_id}/play", {"scenario": scenario})
    assert all(d["ok"] for d in played["ipn"]), played
    await wait_status(stack, wid, final)
    await wait_idle(stack)
    return user, wid, played["ipn"]


@pytest.mark.parametrize(
    ("scenario", "final", "late_status", "settled"),
    [
        ("failed", "failed", "PROCESSING", ["hold", "release"]),
        ("finished", "completed", "SENDING", ["hold", "complete"]),
    ],
)
async def test_an_earlier_stage_delivered_after_the_final_one_is_ignored_as_stale(
    database_url, redis_namespace, scenario, final, late_status, settled
):
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user, wid, deliveries = await _closed_by_the_gateway(stack, scenario, final)
        closed = await stored(stack, wid)
        before = (await postings(stack, wid), await money(stack, user), await events(stack, wid))
        assert before[0] == settled and closed.review_reason is None
        [late] = [d for d in deliveries if json.loads(d["body"])["status"] == late_status]

        with capture_logs() as logs:
            for _ in range(2):  # delayed, then duplicated
                status, answer = await _post_ipn(stack, late["body"].encode(), late["signature"])
                assert status == 200 and answer["withdrawal_status"] == final, answer
        await wait_idle(stack)

        stale = [e for e in logs if e["event"] == "payout_news_stale"]
        assert [(e["withdrawal_id"], e["reported"], e["recorded"], e["source"]) for e in stale] == [
            (wid, late_status, closed.payout_status, "ipn")
        ] * 2
        assert not [e for e in logs if e["event"] == "payout_contradicts_closed_withdrawal"]
        assert await stored(stack, wid) == closed  # no review flag, nothing else written either
        assert (await postings(stack, wid), await money(stack, user), await events(stack, wid)) == before
        assert await metric(stack, "withdrawals_held_for_review") == "0"
        await no_violations(stack)


async def test_a_finished_payout_for_a_withdrawal_that_failed_is_still_held_for_review(database_url, redis_namespace):
    """The genuine contradiction next to the stale one: FINISHED after we recorded FAILED and released."""
    async with Stack(database_url, redis_namespace, payouts=True) as stack:
        user, wid, deliveries = await _closed_by_the_gateway(stack, "failed", "failed")
        before = (await postings(stack, wid), await money(stack, user))
        body = {**json.loads(deliveries[-1]["body"]), "status": "FINISHED", "hash": "ab" * 32, "error": None}
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        with capture_logs() as logs:
            status, answer = await _post_ipn(stack, raw, sign(raw, IPN_SECRET))
        assert status == 200 and answer["withdrawal_status"] == "failed", answer
        flagged = await stored(stack, wid)
        assert flagged.review_reason == "the hold was released (failed) but the gateway reports the payout as completed"
        assert [e["withdrawal_id"] for e in logs if e["event"] == "payout_contradicts_closed_withdrawal"] == [wid]
        assert (await postings(stack, wid), await money(stack, user)) == before
        assert await metric(stack, "withdrawals_held_for_review") == "1"
