"""Acceptance (#3): asking for a withdrawal: validation, fee quote, the hold at once, replays, races.

Everything runs on the real stack (simulator over HTTP, Redis broker, Postgres ledger, the web app
on loopback). The helpers at the top are shared with the payout and decision tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import dramatiq
from structlog.testing import capture_logs

from services.commands import CreatePaymentRequest, WithdrawalRequest
from services.create_payment import create_payment as create_payment_stage
from services.poll_status import poll_status as poll_status_stage
from services.request_withdrawal import request_withdrawal as request_withdrawal_stage
from services.settle_deposit import settle_deposit as settle_deposit_stage
from storage import currencies, ledger
from tests.integration.stack import Stack, eventually

BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
ETH_ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"
XRP_ADDRESS = "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe"
DOGE_ADDRESS = "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"
QUEUE = "process-withdrawal"


# --- shared helpers ------------------------------------------------------------------------------------------


def ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def fund(stack: Stack, user: str, amount: str) -> None:
    """Credit ``user`` through a real deposit: created at the simulator, paid, polled and settled by the stages.

    Works whether or not the stack's workers run (the stages are called on ``stack.ctx``).
    """
    request = CreatePaymentRequest(
        request_id=ref("dep"), user_id=user, amount_usd=Decimal(amount), currency_code="btc", description="funding"
    )
    payment = await create_payment_stage(stack.ctx, request)
    assert payment.provider_payment_id, payment
    await stack.sim_post(f"/sim/payments/{payment.provider_payment_id}/play", {"scenario": "paid", "send_ipn": False})
    await poll_status_stage(stack.ctx, payment.id)
    await settle_deposit_stage(stack.ctx, payment.id)
    assert await stack.balance(user) >= Decimal(amount)


def withdrawal_body(
    user: str,
    amount: str,
    *,
    currency: str = "btc",
    address: str = BTC_ADDRESS,
    extra_id: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id or ref("wd"),
        "user_id": user,
        "amount_usd": amount,
        "currency_code": currency,
        "wallet_address": address,
    }
    if extra_id is not None:
        body["extra_id"] = extra_id
    return body


async def withdraw(stack: Stack, user: str, amount: str, **kwargs: Any) -> dict[str, Any]:
    """POST /v1/withdrawals that must be accepted (201); returns the withdrawal as the API shows it."""
    status, body = await stack.api_post("/v1/withdrawals", withdrawal_body(user, amount, **kwargs))
    assert status == 201, body
    return body


async def money(stack: Stack, user: str) -> tuple[Decimal, Decimal, Decimal]:
    """(available, held, total_withdrawn) read in one statement."""
    async with stack.pool.acquire() as conn:
        b = await ledger.user_balance(conn, user)
    return b.balance_usd, b.held_usd, b.total_withdrawn


async def postings(stack: Stack, withdrawal_id: str) -> list[str]:
    """The ledger transactions written for one withdrawal, named hold / complete / release.

    Completion and release share the key ``withdrawal:<id>:settle`` (so only one can exist); the
    transaction type tells them apart.
    """
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT idempotency_key, type FROM ledger_transactions WHERE idempotency_key LIKE $1 ORDER BY id",
            f"withdrawal:{withdrawal_id}:%",
        )
    names = {("hold", "withdrawal"): "hold", ("settle", "withdrawal"): "complete", ("settle", "refund"): "release"}
    return [names[(r["idempotency_key"].rsplit(":", 1)[1], r["type"])] for r in rows]


async def events(stack: Stack, withdrawal_id: str) -> list[tuple[str | None, str, str, str]]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT from_status, to_status, actor, note FROM withdrawal_events WHERE withdrawal_id = $1 ORDER BY id",
            withdrawal_id,
        )
    return [(r["from_status"], r["to_status"], r["actor"], r["note"]) for r in rows]


async def no_violations(stack: Stack) -> None:
    async with stack.pool.acquire() as conn:
        assert await ledger.invariant_violations(conn) == []


async def count(stack: Stack, sql: str, *args: Any) -> int:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval(sql, *args)


def queue_state(stack: Stack, queue: str = QUEUE) -> dict[str, int]:
    client, ns = stack.broker.client, stack.namespace
    return {
        "ready": client.llen(f"{ns}:{queue}"),
        "stored": client.hlen(f"{ns}:{queue}.msgs"),
        "delayed": client.hlen(f"{ns}:{queue}.DQ.msgs"),
        "dead": client.zcard(f"{ns}:{queue}.XQ"),
    }


def dead_letters(stack: Stack, queue: str = QUEUE) -> list[dict[str, Any]]:
    client, ns = stack.broker.client, stack.namespace
    ids = client.zrange(f"{ns}:{queue}.XQ", 0, -1)
    return [json.loads(raw) for raw in client.hmget(f"{ns}:{queue}.XQ.msgs", ids)] if ids else []


def enqueue_three_times(stack: Stack, message: dramatiq.Message) -> None:
    """The same message (same message_id, args, kwargs) queued three times, as a redelivering broker would."""
    for _ in range(3):
        stack.broker.enqueue(message)
    client, ns, queue = stack.broker.client, stack.namespace, message.queue_name
    stored = [json.loads(raw) for raw in client.hvals(f"{ns}:{queue}.msgs")]
    assert client.llen(f"{ns}:{queue}") == 3
    assert {m["message_id"] for m in stored} == {message.message_id}
    assert len({m["options"]["redis_message_id"] for m in stored}) == 3


async def wait_idle(stack: Stack, queue: str = QUEUE, timeout: float = 20.0) -> None:
    """Until ``queue`` (ready, delayed and in flight) is empty and the workers have nothing running."""
    await asyncio.to_thread(stack.broker.join, queue, timeout=int(timeout * 1000))
    if stack.worker is not None:
        await asyncio.to_thread(stack.worker.join)


# --- fee quoting -----------------------------------------------------------------------------------------------

FEES = {
    "payments_withdrawal_network_fees": {"btc": Decimal("2.50"), "eth": Decimal("15.00")},
    "payments_withdrawal_network_fee_usd": Decimal("1.00"),
    "payments_withdrawal_service_fee_usd": Decimal("0.50"),
    "payments_withdrawal_service_fee_percent": Decimal("1.25"),
}


async def test_fee_quote_is_per_currency_fixed_plus_percent_rounded_half_up_and_shown_by_get(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, start_worker=False, **FEES) as stack:
        user = ref("user")
        await fund(stack, user, "200.00")
        cases = [
            # currency, address, amount → network, service, total, final
            ("btc", BTC_ADDRESS, "33.33", "2.50", "0.92", "3.42", "29.91"),  # 0.50 + 0.416625 → 0.92
            ("btc", BTC_ADDRESS, "10.00", "2.50", "0.63", "3.13", "6.87"),  # 0.50 + 0.125 → 0.63 (half up)
            ("ltc", "ltc1qg82tnxwzpq2f2ug6ywk8q9pmrqvgvgjt3zh4q5", "20.00", "1.00", "0.75", "1.75", "18.25"),
        ]
        held = Decimal(0)
        for currency, address, amount, network, service, total, final in cases:
            created = await withdraw(stack, user, amount, currency=currency, address=address)
            status, shown = await stack.api_get(f"/v1/withdrawals/{created['internal_withdrawal_id']}")
            assert status == 200, shown
            for view in (created, shown):
                assert view["internal_withdrawal_id"].startswith("WD")
                assert (
                    view["status"],
                    view["amount_usd"],
                    view["network_fee_usd"],
                    view["service_fee_usd"],
                    view["total_fee_usd"],
                    view["final_amount_usd"],
                ) == ("pending", amount, network, service, total, final), (currency, amount, view)
            held += Decimal(amount)
            # The whole requested amount is held, fees included: they are taken when the hold is posted.
            assert await money(stack, user) == (Decimal("200.00") - held, held, Decimal(0))
        await no_violations(stack)


async def test_fees_that_eat_the_whole_amount_are_refused_and_nothing_is_held(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False, **FEES) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        # eth: 15.00 network + (0.50 + 1.25 % of 15.70 = 0.69625 → 0.70) = 15.70: nothing left to send.
        status, body = await stack.api_post(
            "/v1/withdrawals", withdrawal_body(user, "15.70", currency="eth", address=ETH_ADDRESS)
        )
        assert status == 400 and body["error"] == "invalid_request", body
        assert "fees of $15.70 exceed the amount of $15.70" in body["message"], body
        # One cent more leaves one cent to send: accepted.
        accepted = await withdraw(stack, user, "15.71", currency="eth", address=ETH_ADDRESS)
        assert (accepted["network_fee_usd"], accepted["service_fee_usd"]) == ("15.00", "0.70")
        assert (accepted["total_fee_usd"], accepted["final_amount_usd"]) == ("15.70", "0.01")
        assert await count(stack, "SELECT count(*) FROM withdrawals") == 1
        assert await money(stack, user) == (Decimal("84.29"), Decimal("15.71"), Decimal(0))


# --- (e) bad input -------------------------------------------------------------------------------------------


async def test_bad_requests_get_a_clear_error_and_hold_nothing(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False, **FEES) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        async with stack.pool.acquire() as conn:
            ledger_before = await conn.fetchval("SELECT count(*) FROM ledger_transactions")
        cases: list[tuple[str, dict[str, Any], int, str, str]] = [
            (
                "address fails the regex",
                {"wallet_address": ETH_ADDRESS},
                400,
                "invalid_request",
                "address does not match the BTC address format",
            ),
            (
                "address with a space",
                {"wallet_address": BTC_ADDRESS[:10] + " " + BTC_ADDRESS[10:]},
                400,
                "invalid_request",
                "must not contain spaces",
            ),
            ("empty address", {"wallet_address": "  "}, 400, "invalid_request", "wallet address is required"),
            (
                "missing memo",
                {"currency_code": "xrp", "wallet_address": XRP_ADDRESS},
                400,
                "invalid_request",
                "this currency needs a memo/tag",
            ),
            (
                "blank memo",
                {"currency_code": "xrp", "wallet_address": XRP_ADDRESS, "extra_id": "  "},
                400,
                "invalid_request",
                "this currency needs a memo/tag",
            ),
            (
                "memo failing its regex",
                {"currency_code": "xrp", "wallet_address": XRP_ADDRESS, "extra_id": "tag-1"},
                400,
                "invalid_request",
                "memo/tag does not match the XRP memo/tag format",
            ),
            (
                "below the minimum",
                {"amount_usd": "9.99"},
                400,
                "invalid_request",
                "$9.99 is below the minimum withdrawal of $10.00",
            ),
            (
                "above the maximum",
                {"amount_usd": "50000.01"},
                400,
                "invalid_request",
                "above the maximum withdrawal of $50,000.00",
            ),
            (
                "fees above the amount",
                {"currency_code": "eth", "wallet_address": ETH_ADDRESS, "amount_usd": "12.00"},
                400,
                "invalid_request",
                "fees of $15.65 exceed the amount of $12.00",
            ),
            ("unknown currency", {"currency_code": "zzz"}, 400, "invalid_request", "unknown currency 'zzz'"),
            (
                "currency the gateway disabled",
                {"currency_code": "doge", "wallet_address": DOGE_ADDRESS},
                400,
                "invalid_request",
                "currency 'doge' is not active",
            ),
            ("more than two decimals", {"amount_usd": "10.001"}, 400, "invalid_request", "decimal places"),
            ("amount as a JSON number", {"amount_usd": 25}, 400, "invalid_request", "decimal string"),
            ("negative amount", {"amount_usd": "-25.00"}, 400, "invalid_request", "not a plain decimal number"),
            ("missing wallet_address", {"wallet_address": None}, 400, "invalid_request", "wallet_address"),
        ]
        for name, override, want_status, want_error, want_text in cases:
            body = {**withdrawal_body(user, "25.00"), **override}
            if override.get("wallet_address", "") is None:
                del body["wallet_address"]
            status, answer = await stack.api_post("/v1/withdrawals", body)
            assert (status, answer.get("error")) == (want_status, want_error), (name, answer)
            assert want_text in answer["message"], (name, answer)

        # A currency an operator switched off is refused too, and accepted again once switched back on.
        async with stack.pool.acquire() as conn:
            assert await currencies.set_operator_active(conn, "btc", False)
        status, answer = await stack.api_post("/v1/withdrawals", withdrawal_body(user, "25.00"))
        assert (status, answer["error"]) == (400, "invalid_request") and "'btc' is not active" in answer["message"]

        # A user with nothing on the platform: insufficient funds, not a crash, and no account is left behind.
        stranger = ref("nobody")
        async with stack.pool.acquire() as conn:
            await currencies.set_operator_active(conn, "btc", True)
        status, answer = await stack.api_post("/v1/withdrawals", withdrawal_body(stranger, "25.00"))
        assert (status, answer["error"]) == (409, "insufficient_funds"), answer
        assert "does not cover $25.00" in answer["message"]
        # More than the balance for a funded user.
        status, answer = await stack.api_post("/v1/withdrawals", withdrawal_body(user, "100.01"))
        assert (status, answer["error"]) == (409, "insufficient_funds"), answer

        assert await count(stack, "SELECT count(*) FROM withdrawals") == 0
        assert await count(stack, "SELECT count(*) FROM withdrawal_events") == 0
        assert await count(stack, "SELECT count(*) FROM ledger_transactions") == ledger_before
        assert await money(stack, user) == (Decimal("100.00"), Decimal(0), Decimal(0))
        assert await money(stack, stranger) == (Decimal(0), Decimal(0), Decimal(0))
        await no_violations(stack)


async def test_bad_request_withdrawal_messages_are_dead_lettered_with_their_reason_and_hold_nothing(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "50.00")
        actor = stack.actors.request_withdrawal
        bad = {
            "bad address": (
                actor.message(ref("wd"), user, "20.00", "btc", "not-an-address"),
                "address does not match the BTC address format",
            ),
            "missing memo": (
                actor.message(
                    request_id=ref("wd"),
                    user_id=user,
                    amount_usd="20.00",
                    currency_code="xrp",
                    wallet_address=XRP_ADDRESS,
                ),
                "this currency needs a memo/tag",
            ),
            "below minimum": (
                actor.message(ref("wd"), user, "5.00", "btc", BTC_ADDRESS),
                "below the minimum withdrawal",
            ),
            "unknown currency": (actor.message(ref("wd"), user, "20.00", "zzz", BTC_ADDRESS), "unknown currency"),
            "inactive currency": (actor.message(ref("wd"), user, "20.00", "doge", DOGE_ADDRESS), "is not active"),
            "insufficient funds": (actor.message(ref("wd"), user, "50.01", "btc", BTC_ADDRESS), "insufficient funds"),
            "no balance at all": (
                actor.message(ref("wd"), ref("nobody"), "20.00", "btc", BTC_ADDRESS),
                "insufficient funds",
            ),
            "missing argument": (
                actor.message(ref("wd"), user, "20.00", "btc"),
                "missing required argument(s): wallet_address",
            ),
            "float amount": (actor.message(ref("wd"), user, 20.0, "btc", BTC_ADDRESS), "decimal string"),
        }
        with capture_logs() as logs:
            for message, _ in bad.values():
                stack.broker.enqueue(message)
            stack.start_workers()

            async def all_dead():
                return queue_state(stack)["dead"] == len(bad)

            await eventually(all_dead)
            await wait_idle(stack)
        reasons = {e["message_id"]: e["reason"] for e in logs if e["event"] == "message_dead_lettered"}
        for name, (message, why) in bad.items():
            assert why in reasons.get(message.message_id, ""), (name, reasons.get(message.message_id))
        # Refused input is never retried: each was dead-lettered on its first delivery.
        assert all(m.get("options", {}).get("retries", 0) == 0 for m in dead_letters(stack))
        assert await count(stack, "SELECT count(*) FROM withdrawals") == 0
        assert await count(stack, "SELECT count(*) FROM ledger_transactions WHERE type <> 'deposit'") == 0
        assert await money(stack, user) == (Decimal("50.00"), Decimal(0), Decimal(0))
        await no_violations(stack)


# --- replays -------------------------------------------------------------------------------------------------


async def test_replayed_request_id_returns_the_same_withdrawal_and_different_arguments_are_refused(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        body = withdrawal_body(user, "40.00")
        status, first = await stack.api_post("/v1/withdrawals", body)
        assert status == 201, first
        wid = first["internal_withdrawal_id"]

        # The same request again, in an equivalent spelling: 200 with the same withdrawal, nothing new held.
        for same in (body, {**body, "amount_usd": "40", "wallet_address": f"  {BTC_ADDRESS} ", "currency_code": "BTC"}):
            status, again = await stack.api_post("/v1/withdrawals", same)
            assert status == 200, again
            assert again["internal_withdrawal_id"] == wid and again["status"] == "pending"
        # ... and through the message path too (the stage reports it as not created).
        replay = await request_withdrawal_stage(stack.ctx, WithdrawalRequest.from_message((), body))
        assert (replay.created, replay.withdrawal.id) == (False, wid)

        for different in (
            {"amount_usd": "41.00"},
            {"wallet_address": "bc1q" + "x" * 38},
            {"currency_code": "ltc", "wallet_address": "ltc1qg82tnxwzpq2f2ug6ywk8q9pmrqvgvgjt3zh4q5"},
        ):
            status, refused = await stack.api_post("/v1/withdrawals", {**body, **different})
            assert (status, refused["error"]) == (409, "request_id_reused"), (different, refused)
            assert "already used for withdrawal" in refused["message"] and wid in refused["message"]
            assert "different arguments" in refused["message"]

        assert await count(stack, "SELECT count(*) FROM withdrawals") == 1
        assert await postings(stack, wid) == ["hold"]
        assert [e[1] for e in await events(stack, wid)] == ["pending"]
        assert await money(stack, user) == (Decimal("60.00"), Decimal("40.00"), Decimal(0))


async def test_replay_through_the_actor_is_a_no_op_and_a_mismatch_is_dead_lettered(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, worker_threads=4) as stack:
        user, request_id = ref("user"), ref("wd")
        await fund(stack, user, "30.00")
        args = {
            "request_id": request_id,
            "user_id": user,
            "amount_usd": "30.00",
            "currency_code": "btc",
            "wallet_address": BTC_ADDRESS,
        }
        stack.actors.request_withdrawal.send(**args)

        async def held():
            return (await money(stack, user))[1] == Decimal("30.00")

        await eventually(held)
        stack.actors.request_withdrawal.send(request_id, user, "30.00", "btc", BTC_ADDRESS)  # positional replay
        with capture_logs() as logs:
            mismatch = stack.actors.request_withdrawal.send(**{**args, "amount_usd": "20.00"})

            async def dead():
                return queue_state(stack)["dead"] == 1

            await eventually(dead)
            await wait_idle(stack)
        [dead_letter] = dead_letters(stack)
        assert dead_letter["message_id"] == mismatch.message_id
        [logged] = [e for e in logs if e["event"] == "message_dead_lettered"]
        assert "different arguments" in logged["reason"]
        assert await count(stack, "SELECT count(*) FROM withdrawals") == 1
        assert await count(stack, "SELECT count(*) FROM ledger_transactions WHERE type = 'withdrawal'") == 1
        assert await money(stack, user) == (Decimal(0), Decimal("30.00"), Decimal(0))


# --- (a) the race for the whole balance -----------------------------------------------------------------------


async def _watch_balance(stack: Stack, user: str, total: Decimal, stop: asyncio.Event) -> list[tuple[Decimal, ...]]:
    """Sample (available, held) in one statement until ``stop``; every sample must be sane."""
    samples = []
    while not stop.is_set():
        available, held, _ = await money(stack, user)
        samples.append((available, held))
        assert available >= 0 and held >= 0 and available + held == total, (available, held)
        await asyncio.sleep(0)
    return samples


async def test_twenty_concurrent_http_requests_for_the_whole_balance_accept_exactly_one(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "50.00")
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_balance(stack, user, Decimal("50.00"), stop))
        answers = await asyncio.gather(
            *(stack.api_post("/v1/withdrawals", withdrawal_body(user, "50.00")) for _ in range(20))
        )
        stop.set()
        samples = await watcher
        assert len(samples) > 1

        accepted = [body for status, body in answers if status == 201]
        refused = [(status, body) for status, body in answers if status != 201]
        assert len(accepted) == 1, answers
        assert len(refused) == 19
        for status, body in refused:
            assert (status, body["error"]) == (409, "insufficient_funds"), body
            assert "insufficient funds" in body["message"]
        wid = accepted[0]["internal_withdrawal_id"]
        assert await count(stack, "SELECT count(*) FROM withdrawals") == 1
        assert await count(stack, "SELECT count(*) FROM withdrawal_events") == 1
        assert await postings(stack, wid) == ["hold"]
        assert await count(stack, "SELECT count(*) FROM ledger_transactions WHERE type = 'withdrawal'") == 1
        assert await money(stack, user) == (Decimal("0.00"), Decimal("50.00"), Decimal(0))
        await no_violations(stack)


async def test_twenty_concurrent_request_messages_for_the_whole_balance_accept_exactly_one(
    database_url, redis_namespace
):
    async with Stack(database_url, redis_namespace, worker_threads=20, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "50.00")
        messages = [
            stack.actors.request_withdrawal.message(ref("wd"), user, "50.00", "btc", BTC_ADDRESS) for _ in range(20)
        ]
        for message in messages:
            stack.broker.enqueue(message)
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_balance(stack, user, Decimal("50.00"), stop))
        with capture_logs() as logs:
            stack.start_workers()  # all twenty prefetched together, so they race

            async def settled():
                return queue_state(stack)["dead"] == 19 or None

            await eventually(settled)
            await wait_idle(stack)
        stop.set()
        await watcher

        dead = [e for e in logs if e["event"] == "message_dead_lettered"]
        assert len(dead) == 19 and all("insufficient funds" in e["reason"] for e in dead), dead
        async with stack.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, request_id, status FROM withdrawals")
        assert len(rows) == 1 and rows[0]["status"] == "pending"
        accepted = {m.message_id for m in messages} - {e["message_id"] for e in dead}
        assert len(accepted) == 1
        assert rows[0]["request_id"] == next(m for m in messages if m.message_id in accepted).args[0]
        assert await postings(stack, rows[0]["id"]) == ["hold"]
        assert await money(stack, user) == (Decimal("0.00"), Decimal("50.00"), Decimal(0))
        await no_violations(stack)


async def test_concurrent_replays_of_one_request_id_create_one_withdrawal(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, start_worker=False) as stack:
        user = ref("user")
        await fund(stack, user, "100.00")
        body = withdrawal_body(user, "30.00")
        answers = await asyncio.gather(*(stack.api_post("/v1/withdrawals", body) for _ in range(10)))
        assert sorted(status for status, _ in answers) == [200] * 9 + [201], answers
        assert len({answer["internal_withdrawal_id"] for _, answer in answers}) == 1
        wid = answers[0][1]["internal_withdrawal_id"]
        assert await postings(stack, wid) == ["hold"]
        assert await count(stack, "SELECT count(*) FROM withdrawal_events") == 1
        assert await money(stack, user) == (Decimal("70.00"), Decimal("30.00"), Decimal(0))
