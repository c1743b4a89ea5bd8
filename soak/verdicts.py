"""The end of the soak: did every cent land exactly once?"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import redis

from soak.plan import DepositSpec, UserPlan, WithdrawalSpec, expected_credit
from storage.reconcile import find_differences

QUEUES = ("create-payment", "poll-status", "settle-deposit", "process-withdrawal")
FINAL_WITHDRAWAL = {"paid_out": "completed", "rejected": "rejected", "cancelled": "cancelled",
                    "gateway_failed": "failed"}  # fmt: skip

DEPOSITS_SQL = """
SELECT p.request_id, p.id, p.provider_payment_id, p.status, p.settled_at IS NOT NULL AS settled,
       p.credit_usd, p.hold_reason,
       (SELECT count(*) FROM ledger_transactions t WHERE t.idempotency_key = 'deposit:' || p.id) AS postings,
       (SELECT coalesce(sum(e.amount), 0) FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'user_available'
         WHERE t.idempotency_key = 'deposit:' || p.id) AS credited
  FROM payments p WHERE p.request_id = ANY($1::text[])
"""
WITHDRAWALS_SQL = """
SELECT w.request_id, w.id, w.status, w.review_reason,
       (SELECT count(*) FROM ledger_transactions t WHERE t.idempotency_key = 'withdrawal:' || w.id || ':hold') AS holds,
       (SELECT count(*) FROM ledger_transactions t WHERE t.idempotency_key = 'withdrawal:' || w.id || ':settle')
         AS settlements
  FROM withdrawals w WHERE w.request_id = ANY($1::text[])
"""


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str


@dataclass
class Figures:
    credited_count: int = 0
    credited_usd: Decimal = Decimal(0)
    expected_usd: Decimal = Decimal(0)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, failures: list[str], passed: str) -> None:
        detail = passed if not failures else f"{len(failures)} wrong, e.g. " + "; ".join(failures[:3])
        self.verdicts.append(Verdict(name, not failures, detail))


def _deposit_failure(spec: DepositSpec, row: Any, sim: dict[str, Any] | None) -> tuple[str | None, Decimal]:
    """Why this deposit is wrong (None if right), and the USD it should have credited."""
    if row is None:
        return f"{spec.request_id}: no payment", Decimal(0)
    if not spec.credits:
        if row["postings"] or row["settled"]:
            return f"{spec.request_id} ({spec.scenario}) credited {row['credited']}", Decimal(0)
        return None, Decimal(0)
    if sim is None:
        return f"{spec.request_id}: no gateway payment", Decimal(0)
    expected = expected_credit(spec.amount_usd, Decimal(sim["pay_amount"]), Decimal(sim["actually_paid"]))
    if row["postings"] != 1 or row["credited"] != expected or not row["settled"]:
        return (f"{spec.request_id} ({spec.scenario}) {row['status']}: {row['postings']} posting(s) crediting "
                f"{row['credited']}, expected {expected}"), expected  # fmt: skip
    return None, expected


def judge_deposits(figures: Figures, plans: list[UserPlan], rows: dict[str, Any], sim: dict[str, Any]) -> None:
    creditable, uncreditable = [], []
    for spec in (d for plan in plans for d in plan.deposits):
        row = rows.get(spec.request_id)
        failure, expected = _deposit_failure(spec, row, sim.get(row["id"]) if row else None)
        (creditable if spec.credits else uncreditable).append(failure)
        figures.expected_usd += expected
        if failure is None and spec.credits:
            figures.credited_count += 1
            figures.credited_usd += expected
    wrong = [f for f in creditable if f]
    figures.check("every paid, over-paid and partial deposit credited exactly once with what arrived", wrong,
                  f"{figures.credited_count} credited once, {figures.credited_usd} USD (expected "
                  f"{figures.expected_usd} USD)")  # fmt: skip
    wrong = [f for f in uncreditable if f]
    figures.check("nothing credited for failed or expired deposits", wrong, f"{len(uncreditable)} credited nothing")


def _withdrawal_failure(spec: WithdrawalSpec, row: Any, payouts: list[dict[str, Any]]) -> str | None:
    if row is None:
        return f"{spec.request_id}: no withdrawal"
    want = FINAL_WITHDRAWAL[spec.outcome]
    if row["status"] != want or row["holds"] != 1 or row["settlements"] != 1:
        return (f"{row['id']} {row['status']} (want {want}), {row['holds']} hold(s), {row['settlements']} "
                f"settlement(s), review: {row['review_reason']}")  # fmt: skip
    if spec.outcome == "paid_out" and [p["status"] for p in payouts] != ["FINISHED"]:
        return f"{row['id']}: gateway payouts {[p['status'] for p in payouts]}"
    return None


def judge_withdrawals(figures: Figures, plans: list[UserPlan], rows: dict[str, Any],
                      payouts: dict[str, list[dict[str, Any]]]) -> None:  # fmt: skip
    paid, other = [], []
    for spec in (plan.withdrawal for plan in plans):
        row = rows.get(spec.request_id)
        failure = _withdrawal_failure(spec, row, payouts.get(row["id"], []) if row else [])
        (paid if spec.outcome == "paid_out" else other).append(failure)
    figures.check("every completed withdrawal posted and paid out once", [f for f in paid if f],
                  f"{len(paid)} posted once, one FINISHED payout each")  # fmt: skip
    figures.check("every rejected, cancelled or failed withdrawal released once", [f for f in other if f],
                  f"{len(other)} released once")  # fmt: skip


async def note_reviews(figures: Figures, conn: asyncpg.Connection) -> None:
    """What an operator would now find waiting for a look (not violations: nothing was paid wrongly)."""
    for label, sql in (
        ("payments held for review", "SELECT hold_reason, count(*) FROM payments WHERE hold_reason IS NOT NULL"),
        ("withdrawals held for review",
         "SELECT review_reason, count(*) FROM withdrawals WHERE review_reason IS NOT NULL"),
    ):
        rows = await conn.fetch(sql + " GROUP BY 1 ORDER BY 2 DESC")
        reasons = "; ".join(f"{row[1]} x {row[0][:90]}" for row in rows) or "none"
        figures.notes.append(f"{label}: {reasons}")


async def judge_ledger(figures: Figures, conn: asyncpg.Connection) -> None:
    differences = await find_differences(conn)
    figures.check("ledger zero-sum, balances equal entries, none negative (storage/reconcile.py)",
                  [f"{d.check} {d.subject}: {d.detail}" for d in differences], "no differences")  # fmt: skip


def judge_messages(figures: Figures, client: redis.Redis, namespace: str, logs: str) -> dict[str, int]:
    """Every queue empty; every dead letter's message id logged as dead-lettered with a reason."""
    left, unexplained, dead = [], [], {}
    for queue in QUEUES:
        for name in (queue, f"{queue}.DQ"):
            count = client.llen(f"{namespace}:{name}") + client.hlen(f"{namespace}:{name}.msgs")
            if count:
                left.append(f"{name}: {count}")
        dead_ids = client.hvals(f"{namespace}:{queue}.XQ.msgs")
        dead[queue] = len(dead_ids)
        for body in dead_ids:
            message_id = _message_id(body)
            if not any("message_dead_lettered" in line and "reason" in line for line in _lines_with(logs, message_id)):
                unexplained.append(f"{queue} {message_id}")
    figures.check("every message processed (queues empty)", left, "all queues empty")
    figures.check("every dead letter logged with a reason", unexplained,
                  f"{sum(dead.values())} dead letters, each with its reason")  # fmt: skip
    return dead


def _message_id(body: bytes) -> str:
    try:
        return str(json.loads(body)["message_id"])
    except (ValueError, KeyError, TypeError):
        return body[:80].decode(errors="replace")


def _lines_with(logs: str, text: str) -> list[str]:
    return [line for line in logs.splitlines() if text in line]
