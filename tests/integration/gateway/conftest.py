"""Fixtures: a simulator on loopback HTTP (own thread), clients, a control session, and an
IPN receiver that verifies callbacks like production would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from gateway.client import NowPaymentsClient
from gateway.errors import InvalidSignature
from gateway.signature import verify_ipn
from gateway.simulator import SimulatorConfig, SimulatorServer

IPN_SECRET = "sim-ipn-secret-0123456789"
API_KEY = "TEST-API-KEY-4b7e9c2d"
PAYOUT_EMAIL = "treasury-ops@example.test"
PAYOUT_PASSWORD = "payout-Pa55word-7f3a91"


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(
        ipn_secret=IPN_SECRET, api_key=API_KEY, payout_email=PAYOUT_EMAIL, payout_password=PAYOUT_PASSWORD
    )
    with SimulatorServer(config) as server:
        yield server


class Control:
    """Drives the simulator's /sim control API over HTTP from the test's event loop."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._session.request(method, self.base_url + path, json=body) as response:
            payload = await response.json()
            assert response.status == 200, payload
            return payload

    async def fault(self, **spec: Any) -> None:
        await self.call("POST", "/sim/faults", spec)

    async def clear_faults(self) -> None:
        await self.call("DELETE", "/sim/faults")

    async def requests(self, path_prefix: str) -> list[dict[str, Any]]:
        return (await self.call("GET", f"/sim/requests?path_prefix={path_prefix}"))["requests"]

    async def payments_for(self, order_id: str) -> list[dict[str, Any]]:
        return (await self.call("GET", f"/sim/payments?order_id={order_id}"))["payments"]

    async def ipn_log(self, payment_id: str) -> list[dict[str, Any]]:
        return (await self.call("GET", f"/sim/ipn-log?payment_id={payment_id}"))["deliveries"]

    async def payouts_for(self, unique_external_id: str) -> list[dict[str, Any]]:
        return (await self.call("GET", f"/sim/payouts?unique_external_id={unique_external_id}"))["payouts"]

    async def payout_ipn_log(self, payout_id: str) -> list[dict[str, Any]]:
        return (await self.call("GET", f"/sim/ipn-log?payout_id={payout_id}"))["deliveries"]


@pytest_asyncio.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


@pytest_asyncio.fixture
async def control(sim: SimulatorServer, http: aiohttp.ClientSession) -> AsyncIterator[Control]:
    ctl = Control(http, sim.url)
    yield ctl
    await ctl.clear_faults()


@pytest_asyncio.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[NowPaymentsClient]:
    async with NowPaymentsClient(
        base_url=sim.api_url, api_key=SecretStr(API_KEY), timeout=5.0, backoff_base=0.01
    ) as gateway:
        yield gateway


@pytest_asyncio.fixture
async def payout_client(sim: SimulatorServer) -> AsyncIterator[NowPaymentsClient]:
    async with NowPaymentsClient(
        base_url=sim.api_url,
        api_key=SecretStr(API_KEY),
        timeout=5.0,
        backoff_base=0.01,
        email=PAYOUT_EMAIL,
        password=SecretStr(PAYOUT_PASSWORD),
    ) as gateway:
        yield gateway


@dataclass
class Receiver:
    """A tiny IPN endpoint on the test's loop that verifies every callback like production would."""

    url: str = ""
    secret: str = IPN_SECRET
    accepted: list[dict[str, Any]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fail_next: int = 0
    answer_delay: float = 0.0  # seconds each callback takes to be answered

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="try later")
        try:
            parsed = verify_ipn(raw, request.headers.get("x-nowpayments-sig"), SecretStr(self.secret))
        except InvalidSignature as exc:
            self.rejected.append(exc.reason)
            return web.Response(status=400, text=exc.reason)
        assert request.headers["Content-Type"].startswith("application/json")
        self.accepted.append(parsed)
        self.raw_bodies.append(raw)
        return web.json_response({"ok": True})

    def statuses(self, payment_id: str) -> list[str]:
        return [b["payment_status"] for b in self.accepted if str(b.get("payment_id")) == payment_id]

    def payout_bodies(self, payout_id: str) -> list[dict[str, Any]]:
        return [b for b in self.accepted if "payment_id" not in b and str(b.get("id")) == payout_id]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/ipn/nowpayments", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/ipn/nowpayments"
    yield rec
    await runner.cleanup()


@contextmanager
def fresh_simulator(**overrides: Any) -> Iterator[SimulatorServer]:
    """A simulator of the test's own (payments, faults and draws not shared with other tests),
    with the shared credentials unless `overrides` says otherwise."""
    options: dict[str, Any] = {
        "ipn_secret": IPN_SECRET,
        "api_key": API_KEY,
        "payout_email": PAYOUT_EMAIL,
        "payout_password": PAYOUT_PASSWORD,
        **overrides,
    }
    with SimulatorServer(SimulatorConfig(**options)) as server:
        yield server


def payout_login_client(url: str, **options: Any) -> NowPaymentsClient:
    """A client with the API key and the payout login, quick to give up on failures."""
    settings: dict[str, Any] = {"timeout": 5.0, "backoff_base": 0.01, **options}
    return NowPaymentsClient(
        base_url=url,
        api_key=SecretStr(API_KEY),
        email=PAYOUT_EMAIL,
        password=SecretStr(PAYOUT_PASSWORD),
        **settings,
    )
