"""`payments reconcile --gateway` as an OS process: pages through the simulator's payment list, names the
orphan of one of our orders, records it once, and exits 1 while it is unresolved."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from tests.e2e.procs import Launcher, minimal_env
from tests.integration.stack import API_KEY, PAYOUT_EMAIL, PAYOUT_PASSWORD, Stack


def _reconcile(launcher: Launcher, env: dict[str, str], *args: str):
    proc = launcher.run("reconcile", "--gateway", *args, env=env, timeout=60)
    return proc.popen.returncode, proc


async def test_reconcile_gateway_names_the_orphan_and_exits_1(launcher: Launcher, database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, payouts=True) as stack:
        env = minimal_env(
            DATABASE_URL=database_url,
            REDIS_URL="redis://127.0.0.1:6379/0",
            NOWPAYMENTS_API_KEY=API_KEY,
            NOWPAYMENTS_BASE_URL=stack.sim.api_url,
            NOWPAYMENTS_EMAIL=PAYOUT_EMAIL,
            NOWPAYMENTS_PASSWORD=PAYOUT_PASSWORD,
        )
        stack.actors.create_payment.send(
            request_id=f"req-{uuid.uuid4().hex[:8]}", user_id="u-orphan", amount_usd="30.00", currency_code="btc"
        )
        await stack.wait_idle()
        clean, proc = await asyncio.to_thread(_reconcile, launcher, env)
        assert clean == 0, proc.output
        assert "no differences" in proc.stdout and "no gateway orphans" in proc.stdout

        async with stack.pool.acquire() as conn:
            payment_id = await conn.fetchval("SELECT id FROM payments WHERE user_id = 'u-orphan'")
        orphan = await stack.gateway.create_payment(
            price_amount=Decimal("30.00"), price_currency="usd", pay_currency="btc", order_id=payment_id
        )
        await stack.sim_post(f"/sim/payments/{orphan.payment_id}/status", {"status": "confirming", "send_ipn": False})

        code, proc = await asyncio.to_thread(_reconcile, launcher, env, "--json")
        assert code == 1, proc.output
        report = json.loads(proc.stdout)
        assert [(o["provider_payment_id"], o["payment_id"], o["funds_received"]) for o in report["orphans"]] == [
            (orphan.payment_id, payment_id, True)
        ]
        assert report["differences"] == []
        assert "1 unresolved gateway orphan(s)" in proc.stderr
        again, proc = await asyncio.to_thread(_reconcile, launcher, env)
        assert again == 1 and "funds received: held for review, never credited" in proc.stdout
        async with stack.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM gateway_orphans") == 1
            assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0


def test_reconcile_gateway_without_the_payout_login_stops_naming_it(launcher: Launcher, database_url):
    env = minimal_env(DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:6379/0", NOWPAYMENTS_API_KEY="k")
    proc = launcher.run("reconcile", "--gateway", env=env, timeout=60)
    assert proc.popen.returncode == 2, proc.output
    assert "NOWPAYMENTS_EMAIL" in proc.stderr
