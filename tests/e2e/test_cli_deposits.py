"""`payments deposits held|release|dismiss` as OS processes against the test's own database.

The held deposit is made the real way (a settled completed payment that the gateway then reports
refunded in a signed IPN to the web app); the commands get a minimal environment and the test's own broker namespace.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from domain.payments import Payment
from services.commands import CreatePaymentRequest
from services.create_payment import create_payment
from services.settle_deposit import settle_deposit
from storage import ledger, payments
from storage.db import create_pool
from tests.e2e.procs import Launcher, minimal_env
from tests.integration.stack import Stack


async def _refunded_after_settlement(database_url: str, namespace: str) -> Payment:
    async with Stack(database_url, namespace, start_worker=False) as stack:
        request = CreatePaymentRequest(
            request_id=f"req-{uuid.uuid4().hex[:8]}",
            user_id=f"user-{uuid.uuid4().hex[:8]}",
            amount_usd=Decimal("25.00"),
            currency_code="btc",
            description="cli",
        )
        payment = await create_payment(stack.ctx, request)
        for status in ("finished", "refunded"):
            answer = await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/status", {"status": status})
            assert answer["ipn"] and answer["ipn"]["ok"], answer
            if status == "finished":
                assert (await settle_deposit(stack.ctx, payment.id)).credited
        held = await stack.payment(payment.id)
    assert held.hold_reason and held.hold_reason.startswith("gateway reports refunded"), held
    assert held.credit_usd == Decimal("25.00")
    return held


async def _read(database_url: str, payment_id: str) -> tuple[Payment, list[dict], Decimal]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            payment = await payments.get_payment(conn, payment_id)
            assert payment is not None
            events = await payments.list_events(conn, payment_id)
            balance = (await ledger.user_balance(conn, payment.user_id)).balance_usd
    finally:
        await pool.close()
    return payment, events, balance


def test_deposits_held_lists_a_refunded_deposit_and_dismiss_clears_it_with_who_and_why(
    launcher: Launcher, database_url, redis_namespace, broker_env
):
    held = asyncio.run(_refunded_after_settlement(database_url, redis_namespace))
    env = minimal_env(DATABASE_URL=database_url, **broker_env)

    listed = launcher.run("deposits", "held", env=env, timeout=60)
    assert listed.popen.returncode == 0, listed.output
    [line] = [line for line in listed.stdout.splitlines() if held.id in line]
    assert held.user_id in line and held.hold_reason in line and "completed" in line

    # Refused: dismissing without a note, and releasing (crediting) a refunded deposit.
    no_note = launcher.run("deposits", "dismiss", held.id, "--operator", "y", env=env, timeout=60)
    assert no_note.popen.returncode == 1 and "refused:" in no_note.stderr and "note" in no_note.stderr
    release = launcher.run("deposits", "release", held.id, "--note", "x", "--operator", "y", env=env, timeout=60)
    assert release.popen.returncode == 1 and "refunded or failed" in release.stderr, release.output
    assert asyncio.run(_read(database_url, held.id))[0].hold_reason == held.hold_reason

    dismissed = launcher.run("deposits", "dismiss", held.id, "--note", "x", "--operator", "y", env=env, timeout=60)
    assert dismissed.popen.returncode == 0, dismissed.output
    assert f"{held.id}: hold dismissed, nothing credited" in dismissed.stdout

    after, events, balance = asyncio.run(_read(database_url, held.id))
    assert after.hold_reason is None and after.credit_usd == Decimal("25.00")
    assert balance == Decimal("25.00")  # nothing credited, nothing reversed by the command
    assert events[-1]["source"] == "operator"
    assert events[-1]["detail"] == {"operator": "y", "note": "x", "dismissed_hold": held.hold_reason}

    empty = launcher.run("deposits", "held", env=env, timeout=60)
    assert empty.popen.returncode == 0, empty.output
    assert held.id not in empty.stdout
    again = launcher.run("deposits", "dismiss", held.id, "--note", "x", "--operator", "y", env=env, timeout=60)
    assert again.popen.returncode == 1 and "not held" in again.stderr
