"""A whole deposit pipeline inside the test process, over real connections.

The NOWPayments simulator on its own thread (real HTTP), real dramatiq worker threads on a
real Redis broker, the real web app on loopback (the IPN fast path) and, on demand, the real
scheduler loop. Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import dramatiq
from aiohttp import web

from entrypoints.scheduler import run_scheduler
from entrypoints.web.app import WebRuntime, create_web_app
from gateway.simulator import SimulatorConfig, SimulatorServer
from services.context import StageContext, gateway_from_settings
from services.sync_currencies import sync_currencies
from settings import Settings, load_settings
from storage import ledger, payments
from tests.conftest import REDIS_URL
from tests.ports import free_port
from tests.secrets_guard import GUARD
from workers.actors import PipelineActors, declare_actors
from workers.broker import build_broker, queue_name
from workers.create_group import install_group_creation
from workers.enqueue import ActorEnqueuer
from workers.notification_actors import declare_notification_actors
from workers.runtime import StageRuntime
from workers.settle_group import install_group_settlement

API_KEY = "sim-api-key-for-tests"
IPN_SECRET = "sim-ipn-secret-for-tests"
API_TOKEN = "api-token-for-tests"
OPERATOR_TOKEN = "operator-token-for-tests"
PAYOUT_EMAIL = "payouts@example.test"
PAYOUT_PASSWORD = "payout-password-for-tests"



async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Wait until ``check()`` returns something truthy; fail with its last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class Stack:
    def __init__(
        self,
        database_url: str,
        namespace: str,
        *,
        ipn: bool = True,
        payouts: bool = False,
        worker_threads: int = 4,
        start_worker: bool = True,
        **overrides: Any,
    ) -> None:
        self.database_url = database_url
        self.namespace = namespace
        self.ipn = ipn
        self.payouts = payouts
        self.worker_threads = worker_threads
        self.start_worker = start_worker
        self.web_port = free_port()
        self.sim = SimulatorServer(
            SimulatorConfig(
                ipn_secret=IPN_SECRET, api_key=API_KEY, payout_email=PAYOUT_EMAIL, payout_password=PAYOUT_PASSWORD
            )
        )
        self.overrides = overrides
        self.settings: Settings
        self.pool: asyncpg.Pool
        self.broker: dramatiq.Broker
        self.actors: PipelineActors
        self.worker: dramatiq.Worker | None = None
        self.enqueue: ActorEnqueuer
        self.ctx: StageContext
        self._runner: web.AppRunner | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._scheduler_stop = asyncio.Event()
        self.http: aiohttp.ClientSession

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    async def __aenter__(self) -> Stack:
        self.sim.start()
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "redis_url": REDIS_URL,
            "broker_namespace": self.namespace,
            "api_token": API_TOKEN,
            "operator_token": OPERATOR_TOKEN,
            "nowpayments_email": PAYOUT_EMAIL if self.payouts else None,
            "nowpayments_password": PAYOUT_PASSWORD if self.payouts else None,
            "nowpayments_api_key": API_KEY,
            "nowpayments_ipn_secret": IPN_SECRET,
            "nowpayments_base_url": self.sim.api_url,
            "public_base_url": self.web_url if self.ipn else None,
            "payments_poll_first_delay": 0.2,
            "payments_poll_min_interval": 0.2,
            "payments_poll_max_interval": 1.0,
            "payments_scheduler_tick": 0.1,
            "log_format": "console",
        }
        values.update(self.overrides)
        self.settings = load_settings(**values)
        self.pool = await asyncpg_pool(self.database_url)
        self.gateway = gateway_from_settings(self.settings)
        await sync_currencies(self.pool, self.gateway)
        runtime = StageRuntime(self.settings, exit_on_boot_failure=False)
        self.broker = build_broker(self.settings, namespace=self.namespace, runtime=runtime)
        self.actors = declare_actors(self.broker)
        declare_notification_actors(self.broker)
        install_group_settlement(self.broker, self.settings)
        install_group_creation(self.broker, self.settings)
        self.enqueue = ActorEnqueuer(self.broker)
        self.ctx = StageContext(pool=self.pool, gateway=self.gateway, settings=self.settings, enqueue=self.enqueue)
        if self.start_worker:
            self.start_workers()
        self._runner = web.AppRunner(create_web_app(WebRuntime(ctx=self.ctx)))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.web_port).start()
        self.http = aiohttp.ClientSession()
        return self

    def start_workers(self) -> None:
        self.worker = dramatiq.Worker(self.broker, worker_threads=self.worker_threads, worker_timeout=50)
        self.worker.start()

    def start_scheduler(self) -> None:
        self._scheduler = asyncio.create_task(run_scheduler(self.settings, self.enqueue, stop=self._scheduler_stop))

    async def __aexit__(self, *exc: object) -> None:
        self._scheduler_stop.set()
        if self._scheduler is not None:
            await self._scheduler
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop, 10_000)
        await self.http.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.gateway.close()
        await self.pool.close()
        self.broker.close()
        self.sim.stop()

    # --- helpers for tests -------------------------------------------------------------------------------------

    async def sim_post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.sim.url + path, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def sim_get(self, path: str) -> Any:
        async with self.http.get(self.sim.url + path) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def api_post(
        self, path: str, body: dict[str, Any] | None = None, *, operator: bool = False
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN if operator else API_TOKEN}"}
        async with self.http.post(self.web_url + path, json=body or {}, headers=headers) as response:
            return response.status, _no_secrets(path, await response.json())

    async def api_get(self, path: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with self.http.get(self.web_url + path, headers=headers) as response:
            return response.status, _no_secrets(path, await response.json())

    async def payment_for_request(self, request_id: str, *, created: bool = True):
        async def check():
            async with self.pool.acquire() as conn:
                p = await payments.find_by_request_id(conn, request_id)
            return p if p and (not created or p.provider_payment_id or p.status.value == "failed") else None

        return await eventually(check)

    async def payment(self, payment_id: str):
        async with self.pool.acquire() as conn:
            return await payments.get_payment(conn, payment_id)

    async def balance(self, user_id: str) -> Decimal:
        async with self.pool.acquire() as conn:
            return (await ledger.user_balance(conn, user_id)).balance_usd

    async def wait_settled(self, payment_id: str, *, timeout: float = 20.0):
        async def check():
            p = await self.payment(payment_id)
            return p if p and p.settled_at else None

        return await eventually(check, timeout=timeout)

    async def wait_idle(self, *, timeout: float = 20.0) -> None:
        """Until the broker's queues are drained and in-flight messages finished."""
        for queue in ("create-payment", "poll-status", "settle-deposit"):
            await asyncio.to_thread(self.broker.join, queue_name(self.broker, queue), timeout=int(timeout * 1000))
        if self.worker is not None:
            await asyncio.to_thread(self.worker.join)


def _no_secrets(path: str, body: Any) -> Any:
    """Every answer the API gives a test, error bodies included, is checked for the test secrets."""
    leaked = GUARD.check(f"HTTP answer to {path}", json.dumps(body, default=str))
    assert not leaked, f"secrets in the answer to {path}: {leaked}"
    return body


async def asyncpg_pool(dsn: str) -> asyncpg.Pool:
    from storage.db import create_pool

    return await create_pool(dsn, min_size=1, max_size=20)
