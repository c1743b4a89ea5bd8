"""The clients: users who deposit (the simulator plays their payment) and then withdraw once.

Each user's deposits are sent through `POST /v1/deposits` (every message twice for some users);
once the gateway payment exists, the simulator plays the user's scenario with IPNs. When the
first (paid) deposit is credited the user asks for a withdrawal, which is then paid out, rejected
by an operator, cancelled by the user, or failed by the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from soak.http import Http, Unanswered
from soak.plan import DepositSpec, UserPlan, WithdrawalSpec

WALLET = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
WAIT_S = 300.0
PAYOUT_SCENARIO = {"paid_out": "finished", "gateway_failed": "failed"}


@dataclass
class Progress:
    deposits_sent: int = 0
    withdrawals_sent: int = 0
    withdrawal_ids: dict[str, str] = field(default_factory=dict)  # request_id -> WD_…
    provider_ids: dict[str, str] = field(default_factory=dict)  # request_id -> gateway payment id
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def problem(self, kind: str, example: str) -> None:
        self.problems[kind] += 1
        self.examples.setdefault(kind, example[:300])


DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class ProviderIds:
    """Which gateway payment each deposit got, read for all waiting deposits at once (one query
    every half second, on a fresh connection: the soak terminates connections on purpose)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.waiting: dict[str, asyncio.Future[str]] = {}

    async def wait(self, request_id: str) -> str:
        """The gateway payment's id, or "" if the payment failed before the gateway made one."""
        future = self.waiting.setdefault(request_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(future, timeout=WAIT_S)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.waiting:
                try:
                    await self._resolve()
                except DB_ERRORS:
                    pass
            await asyncio.sleep(0.5)

    async def _resolve(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT request_id, coalesce(provider_payment_id, '') AS provider_payment_id FROM payments"
                " WHERE request_id = ANY($1::text[]) AND (provider_payment_id IS NOT NULL OR status = 'failed')",
                list(self.waiting),
            )
        finally:
            await conn.close()
        for row in rows:
            future = self.waiting.pop(row["request_id"])
            if not future.done():
                future.set_result(row["provider_payment_id"])


async def _until(check, *, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise Unanswered(f"waited {WAIT_S:.0f} s for {what}")


class Driver:
    def __init__(self, http: Http, provider_ids: ProviderIds, progress: Progress, *, step_delay: float) -> None:
        self.http = http
        self.provider_ids = provider_ids
        self.progress = progress
        self.step_delay = step_delay

    async def run_user(self, plan: UserPlan) -> None:
        try:
            await asyncio.gather(*(self.deposit(spec) for spec in plan.deposits))
            await self.withdraw(plan.withdrawal)
        except Unanswered as exc:
            self.progress.problem("client_gave_up", str(exc))

    async def deposit(self, spec: DepositSpec) -> None:
        body = {"request_id": spec.request_id, "user_id": spec.user_id,
                "amount_usd": str(spec.amount_usd), "currency_code": "btc"}  # fmt: skip
        for _ in range(2 if spec.twice else 1):
            status, answer = await self.http.api("POST", "/v1/deposits", body)
            if status not in (200, 202):  # 202 accepted, 200 a replay answered with the payment
                self.progress.problem("deposit_refused", f"{spec.request_id}: {status} {answer}")
                return
        self.progress.deposits_sent += 1

        try:
            provider = await self.provider_ids.wait(spec.request_id)
        except TimeoutError:
            raise Unanswered(f"no gateway payment for {spec.request_id} after {WAIT_S:.0f} s") from None
        if not provider:
            self.progress.problem("deposit_failed_at_creation", spec.request_id)
            return
        self.progress.provider_ids[spec.request_id] = provider
        await self.http.sim("POST", f"/sim/payments/{provider}/play",
                            {"scenario": spec.scenario, "send_ipn": True, "step_delay": self.step_delay,
                             "play_id": spec.request_id})  # fmt: skip

    async def withdraw(self, spec: WithdrawalSpec) -> None:
        async def funded() -> bool:
            status, answer = await self.http.api("GET", f"/v1/users/{spec.user_id}/balance")
            return status == 200 and Decimal(answer["balance_usd"]) >= spec.amount_usd

        await _until(funded, what=f"{spec.user_id} funded", interval=1.0)
        body = {"request_id": spec.request_id, "user_id": spec.user_id, "amount_usd": str(spec.amount_usd),
                "currency_code": "btc", "wallet_address": WALLET}  # fmt: skip
        withdrawal_id = None
        for _ in range(2 if spec.twice else 1):
            status, answer = await self.http.api("POST", "/v1/withdrawals", body)
            if status not in (200, 201):
                self.progress.problem("withdrawal_refused", f"{spec.request_id}: {status} {answer}")
                return
            withdrawal_id = answer["internal_withdrawal_id"]
        assert withdrawal_id is not None
        self.progress.withdrawals_sent += 1
        self.progress.withdrawal_ids[spec.request_id] = withdrawal_id
        await self._decide(spec, withdrawal_id)

    async def _decide(self, spec: WithdrawalSpec, withdrawal_id: str) -> None:
        times = 2 if spec.twice else 1
        if spec.outcome == "cancelled":
            for _ in range(times):
                await self.http.api("POST", f"/v1/withdrawals/{withdrawal_id}/cancel",
                                    {"user_id": spec.user_id, "note": "soak: changed my mind"})  # fmt: skip
            return
        if spec.outcome == "rejected":
            for _ in range(times):
                await self.http.api("POST", f"/v1/operator/withdrawals/{withdrawal_id}/reject",
                                    {"operator": "soak", "note": "soak: refused"}, operator=True)  # fmt: skip
            return
        for _ in range(times):
            await self.http.api("POST", f"/v1/operator/withdrawals/{withdrawal_id}/approve",
                                {"operator": "soak", "note": "soak: checked"}, operator=True)  # fmt: skip

        async def payout() -> str | None:
            listed = await self.http.sim("GET", f"/sim/payouts?unique_external_id={withdrawal_id}")
            return listed["payouts"][0]["id"] if listed["payouts"] else None

        payout_id = await _until(payout, what=f"payout of {withdrawal_id}")
        await self.http.sim("POST", f"/sim/payouts/{payout_id}/play",
                            {"scenario": PAYOUT_SCENARIO[spec.outcome], "send_ipn": True,
                             "step_delay": self.step_delay, "play_id": spec.request_id})  # fmt: skip


async def drive(driver: Driver, plans: list[UserPlan], concurrency: int) -> None:
    """Every user's story, at most ``concurrency`` users at a time."""
    gate = asyncio.Semaphore(concurrency)
    stop = asyncio.Event()
    resolver = asyncio.create_task(driver.provider_ids.run(stop))

    async def one(plan: UserPlan) -> None:
        async with gate:
            await driver.run_user(plan)

    try:
        await asyncio.gather(*(one(plan) for plan in plans))
    finally:
        stop.set()
        await resolver
