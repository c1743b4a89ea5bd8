"""Fixtures: a simulator on loopback HTTP (own thread), clients, and a control session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from pydantic import SecretStr

from gateway.client import NowPaymentsClient
from gateway.simulator import SimulatorServer

IPN_SECRET = "sim-ipn-secret-0123456789"
API_KEY = "TEST-API-KEY-4b7e9c2d"


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(ipn_secret=IPN_SECRET, api_key=API_KEY) as server:
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
