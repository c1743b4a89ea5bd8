"""`payments reconcile` as an OS process against the test's own scratch database.

Real records are made by the real stages (a settled deposit, a held and a rejected withdrawal);
then differences are planted by direct SQL with every trigger switched off for the session
(``session_replication_role = replica``), the way only a table owner could, and the command must
name each one and exit 1.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg

from tests.e2e.procs import Launcher, minimal_env
from tests.integration.pipeline.test_withdrawal_requests import fund, ref, withdraw
from tests.integration.stack import Stack

REDIS_DB0 = "redis://127.0.0.1:6379/0"


async def _records(database_url: str, namespace: str) -> dict[str, str]:
    """A funded user with one withdrawal still held and one rejected (its hold released)."""
    from services.decide_withdrawal import reject_withdrawal

    async with Stack(database_url, namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        held = (await withdraw(stack, user, "30.00"))["internal_withdrawal_id"]
        rejected = (await withdraw(stack, user, "20.00"))["internal_withdrawal_id"]
        await reject_withdrawal(stack.ctx, rejected, operator="test", note="planted for reconcile")
        async with stack.pool.acquire() as conn:
            payment_id = await conn.fetchval("SELECT id FROM payments WHERE user_id = $1", user)
    return {"user": user, "payment": payment_id, "held": held, "rejected": rejected}


async def _plant(database_url: str, ids: dict[str, str]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no trigger fires
            # a user balance moved without an entry
            await conn.execute(
                "UPDATE ledger_accounts SET balance = balance + 5 WHERE kind = 'user_available' AND user_id = $1",
                ids["user"],
            )
            # a one-sided ledger transaction
            tx = await conn.fetchval(
                "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ('adjustment:planted', 'adjustment')"
                " RETURNING id"
            )
            await conn.execute(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount)"
                " SELECT $1, id, 7 FROM ledger_accounts WHERE kind = 'gateway_clearing'",
                tx,
            )
            # the settled deposit loses its posting; the rejected withdrawal's release vanishes too
            for key in (f"deposit:{ids['payment']}", f"withdrawal:{ids['rejected']}:settle"):
                await conn.execute(
                    "UPDATE payments SET ledger_transaction_id = NULL WHERE ledger_transaction_id ="
                    " (SELECT id FROM ledger_transactions WHERE idempotency_key = $1)",
                    key,
                )
                await conn.execute(
                    "DELETE FROM ledger_entries WHERE transaction_id ="
                    " (SELECT id FROM ledger_transactions WHERE idempotency_key = $1)",
                    key,
                )
                await conn.execute("DELETE FROM ledger_transactions WHERE idempotency_key = $1", key)
            # a pending withdrawal whose hold looks completed
            await conn.execute(
                "INSERT INTO ledger_transactions (idempotency_key, type) VALUES ($1, 'withdrawal')",
                f"withdrawal:{ids['held']}:settle",
            )
    finally:
        await conn.close()


def test_reconcile_finds_nothing_in_a_consistent_ledger_then_names_every_planted_difference(
    launcher: Launcher, database_url, redis_namespace
):
    env = minimal_env(DATABASE_URL=database_url, REDIS_URL=REDIS_DB0, BROKER_NAMESPACE=redis_namespace)
    empty = launcher.run("reconcile", env=env, timeout=60)
    assert empty.popen.returncode == 0, empty.output
    assert empty.stdout.startswith("no differences")

    ids = asyncio.run(_records(database_url, redis_namespace))
    clean = launcher.run("reconcile", "--json", env=env, timeout=60)
    assert clean.popen.returncode == 0, clean.output
    assert json.loads(clean.stdout)["differences"] == []

    asyncio.run(_plant(database_url, ids))
    found = launcher.run("reconcile", "--json", env=env, timeout=60)
    assert found.popen.returncode == 1, found.output
    report = json.loads(found.stdout)
    pairs = {(d["check"], d["subject"]) for d in report["differences"]}
    assert {
        ("balance_differs_from_entries", f"user:{ids['user']}:available"),
        ("unbalanced_transaction", "adjustment:planted"),
        ("ledger_does_not_sum_to_zero", "all entries"),
        ("settled_payment_without_deposit_posting", ids["payment"]),
        ("withdrawal_settlement_differs", ids["rejected"]),
        ("withdrawal_settlement_differs", ids["held"]),
    } <= pairs, report
    assert "difference(s) found" in found.stderr

    # the same, for people: one line per difference under a header, on stdout
    table = launcher.run("reconcile", env=env, timeout=60)
    assert table.popen.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["check", "subject", "difference"]
    assert len(lines) == 1 + len(report["differences"])
    assert any(ids["rejected"] in line and "rejected but its hold was never posted" in line for line in lines)
