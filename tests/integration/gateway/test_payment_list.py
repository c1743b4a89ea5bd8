"""The payment list, GET /v1/payment/ (issue 9's reconciliation reads it): behind the payout
login's JWT, paged from 0, sorted, filtered by creation date, shaped as the official Node
SDK's `listPayments` reads it; and the client's `list_payments` over it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest

from gateway.client import NowPaymentsClient
from gateway.errors import GatewayConfigurationError, GatewayRejected
from gateway.models import GatewayPayment
from gateway.simulator import SimulatorServer
from tests.integration.gateway.conftest import (
    API_KEY,
    PAYOUT_EMAIL,
    PAYOUT_PASSWORD,
    fresh_simulator,
    payout_login_client,
)


async def create(gateway: NowPaymentsClient, amount: str, order_id: str | None = None) -> GatewayPayment:
    return await gateway.create_payment(
        price_amount=Decimal(amount),
        price_currency="usd",
        pay_currency="usdttrc20",
        order_id=order_id or f"PAY_LIST_{uuid.uuid4().hex[:12]}",
    )


async def bearer(http: aiohttp.ClientSession, sim: SimulatorServer) -> str:
    login = {"email": PAYOUT_EMAIL, "password": PAYOUT_PASSWORD}
    async with http.post(sim.api_url + "/auth", json=login, headers={"x-api-key": API_KEY}) as response:
        token: str = (await response.json())["token"]
        return token


async def test_pages_sorts_and_counts() -> None:
    with fresh_simulator() as sim:
        async with payout_login_client(sim.api_url) as gateway:
            made = [await create(gateway, amount) for amount in ("30", "10", "50", "20", "40")]
            first = await gateway.list_payments(limit=2, page=0)
            assert (first.limit, first.page, first.pages_count, first.total) == (2, 0, 3, 5)
            pages = [first, await gateway.list_payments(limit=2, page=1), await gateway.list_payments(limit=2, page=2)]
            listed = [p.payment_id for page in pages for p in page.payments]
            assert listed == [p.payment_id for p in made]  # created_at ascending by default
            assert len(pages[2].payments) == 1
            beyond = await gateway.list_payments(limit=2, page=3)
            assert beyond.payments == () and beyond.total == 5

            by_price = await gateway.list_payments(sort_by="price_amount", order_by="desc")
            assert [p.price_amount for p in by_price.payments] == [Decimal(a) for a in ("50", "40", "30", "20", "10")]
            assert {p.order_id for p in by_price.payments} == {p.order_id for p in made}


async def test_filters_by_creation_date() -> None:
    with fresh_simulator() as sim:
        async with payout_login_client(sim.api_url) as gateway:
            payment = await create(gateway, "25")
            today = datetime.now(UTC).date()
            assert (await gateway.list_payments(date_from=today, date_to=today)).total == 1
            assert (await gateway.list_payments(date_from=today + timedelta(days=1))).total == 0
            assert (await gateway.list_payments(date_to=today - timedelta(days=1))).total == 0
            moment = payment.created_at
            assert moment is not None
            around = await gateway.list_payments(
                date_from=moment - timedelta(seconds=1), date_to=moment + timedelta(seconds=1)
            )
            assert [p.payment_id for p in around.payments] == [payment.payment_id]
            with pytest.raises(ValueError, match="timezone-aware"):
                await gateway.list_payments(date_from=datetime(2025, 1, 14, 12, 0))


async def test_entries_are_shaped_like_the_payment_status_answer(
    sim: SimulatorServer, http: aiohttp.ClientSession
) -> None:
    async with payout_login_client(sim.api_url) as gateway:
        payment = await create(gateway, "15")
    headers = {"x-api-key": API_KEY, "Authorization": "Bearer " + await bearer(http, sim)}
    async with http.get(
        sim.api_url + "/payment/", params={"limit": "500", "sortBy": "created_at", "orderBy": "desc"}, headers=headers
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert set(body) == {"data", "limit", "page", "pagesCount", "total"}
    assert body["limit"] == 500 and body["page"] == 0 and body["pagesCount"] >= 1
    entry = next(e for e in body["data"] if str(e["payment_id"]) == payment.payment_id)
    async with http.get(f"{sim.api_url}/payment/{payment.payment_id}", headers={"x-api-key": API_KEY}) as r:
        single = await r.json()
    assert set(entry) == set(single)
    assert entry["order_id"] == payment.order_id and entry["payment_status"] == "waiting"


async def test_needs_the_payout_login_and_the_key(sim: SimulatorServer, http: aiohttp.ClientSession) -> None:
    for path in ("/payment/", "/payment"):  # the docs' spelling and the Node SDK's
        async with http.get(sim.api_url + path, headers={"x-api-key": API_KEY}) as r:
            assert r.status == 401 and (await r.json())["code"] == "AUTH_REQUIRED"
    token = await bearer(http, sim)
    async with http.get(sim.api_url + "/payment/", headers={"Authorization": "Bearer " + token}) as r:
        assert r.status == 403 and (await r.json())["code"] == "INVALID_API_KEY"
    async with http.get(
        sim.api_url + "/payment/", headers={"Authorization": "Bearer not-a-token", "x-api-key": API_KEY}
    ) as r:
        assert r.status == 401
    async with NowPaymentsClient(base_url=sim.api_url, api_key=None) as keyless:
        with pytest.raises(GatewayConfigurationError):
            await keyless.list_payments()


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"page": "-1"},
        {"sortBy": "secret"},
        {"orderBy": "up"},
        {"dateFrom": "yesterday"},
    ],
)
async def test_bad_parameters_are_refused(
    sim: SimulatorServer, http: aiohttp.ClientSession, query: dict[str, str]
) -> None:
    headers = {"x-api-key": API_KEY, "Authorization": "Bearer " + await bearer(http, sim)}
    async with http.get(sim.api_url + "/payment/", params=query, headers=headers) as r:
        body = await r.json()
    assert r.status == 400 and body["code"] == "INVALID_REQUEST_PARAMS"
    assert next(iter(query)) in body["message"]


async def test_client_refuses_bad_arguments_before_calling(sim: SimulatorServer) -> None:
    async with payout_login_client(sim.api_url) as gateway:
        for bad in ({"limit": 0}, {"limit": 501}, {"page": -1}, {"order_by": "up"}):
            with pytest.raises(ValueError):
                await gateway.list_payments(**bad)  # type: ignore[arg-type]
        with pytest.raises(GatewayRejected) as refused:
            await gateway.list_payments(sort_by="nonsense")
        assert refused.value.http_status == 400
