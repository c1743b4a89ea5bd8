"""NowPaymentsClient against the simulator (and tiny aiohttp servers) over loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import ROUND_UP, Decimal

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from gateway.client import NowPaymentsClient
from gateway.errors import GatewayProtocolError, GatewayRejected, GatewayTransientError
from gateway.simulator import SimulatorConfig, SimulatorServer
from tests.integration.gateway.conftest import API_KEY, IPN_SECRET, Control


def order() -> str:
    return f"PAY_TEST_{uuid.uuid4().hex[:12]}"


def sim_client(url: str, key: str | None = API_KEY, **kwargs: float) -> NowPaymentsClient:
    options: dict = {"timeout": 5.0, "backoff_base": 0.01, **kwargs}
    return NowPaymentsClient(base_url=url, api_key=SecretStr(key) if key is not None else None, **options)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest_asyncio.fixture
async def tiny_server() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[str]]]:
    """Starts a throwaway aiohttp app on the test loop; returns its /v1 base URL."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", "/v1" + path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_status_ok(client: NowPaymentsClient) -> None:
    assert await client.status() is True


async def test_status_false_when_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with sim_client(f"http://127.0.0.1:{port}/v1", max_attempts=2) as gateway:
        assert await gateway.status() is False


async def test_create_and_get_round_trip_exact_decimals(client: NowPaymentsClient, control: Control) -> None:
    order_id = order()
    created = await client.create_payment(
        price_amount=Decimal("25.50"),
        price_currency="usd",
        pay_currency="btc",
        order_id=order_id,
        order_description="Deposit for user 42",
        ipn_callback_url="https://merchant.example/ipn/nowpayments",
    )
    expected_pay = (Decimal("25.50") / Decimal("97000.00")).quantize(Decimal("0.00000001"), rounding=ROUND_UP)
    assert created.status == "waiting"
    assert created.order_id == order_id
    assert created.price_amount == Decimal("25.50") and created.price_currency == "usd"
    assert created.pay_amount == expected_pay == Decimal("0.00026289")
    assert isinstance(created.pay_amount, Decimal)
    assert created.pay_currency == "btc" and created.network == "btc"
    assert created.pay_address and created.pay_address.startswith("bc1q")
    assert created.expiration_estimate_date is not None and created.expiration_estimate_date.tzinfo is not None
    assert created.payment_id.isdigit()

    stored = (await control.payments_for(order_id))[0]
    assert stored["payment_id"] == created.payment_id
    assert Decimal(stored["pay_amount"]) == created.pay_amount
    assert stored["ipn_callback_url"] == "https://merchant.example/ipn/nowpayments"

    fetched = await client.get_payment(created.payment_id)
    assert fetched.payment_id == created.payment_id
    assert fetched.pay_amount == created.pay_amount
    assert fetched.actually_paid == Decimal(0)
    assert fetched.pay_address == created.pay_address
    assert fetched.created_at == created.created_at


async def test_type_drift_across_repeated_gets(client: NowPaymentsClient) -> None:
    created = await client.create_payment(
        price_amount=Decimal("10"), price_currency="usd", pay_currency="ltc", order_id=order()
    )
    answers = [await client.get_payment(created.payment_id) for _ in range(6)]
    id_types = {type(a.raw["payment_id"]) for a in answers}
    purchase_types = {type(a.raw["purchase_id"]) for a in answers}
    amount_types = {type(a.raw["pay_amount"]) for a in answers}
    updated_types = {type(a.raw["updated_at"]) for a in answers}
    assert id_types == {str, int} and purchase_types == {str, int}
    assert amount_types == {str, Decimal}
    assert updated_types == {str, int}
    # Whatever the wire types, the parsed payments are identical.
    assert all(a == answers[0] for a in answers)
    assert answers[0].payment_id == created.payment_id
    assert answers[0].purchase_id == created.purchase_id
    assert answers[0].pay_amount == created.pay_amount == Decimal("0.0952381")


async def test_eighteen_decimal_places_kept_exact(client: NowPaymentsClient) -> None:
    created = await client.create_payment(
        price_amount=Decimal("10.00"), price_currency="usd", pay_currency="eth", order_id=order()
    )
    expected = (Decimal("10.00") / Decimal("3400.00")).quantize(Decimal(1).scaleb(-18), rounding=ROUND_UP)
    assert created.pay_amount == expected == Decimal("0.002941176470588236")
    assert (await client.get_payment(created.payment_id)).pay_amount == expected


async def test_price_amount_sent_as_exact_json_number(client: NowPaymentsClient, control: Control) -> None:
    order_id = order()
    await client.create_payment(
        price_amount=Decimal("12.345678901234567891"),
        price_currency="usd",
        pay_currency="usdttrc20",
        order_id=order_id,
    )
    stored = (await control.payments_for(order_id))[0]
    assert stored["price_amount"] == "12.345678901234567891"
    assert stored["pay_amount"] == "12.345679"  # 6 places, rounded up


async def test_memo_currency_returns_payin_extra_id(client: NowPaymentsClient) -> None:
    created = await client.create_payment(
        price_amount=Decimal("5"), price_currency="usd", pay_currency="xrp", order_id=order()
    )
    assert created.payin_extra_id is not None and created.payin_extra_id.isdigit()
    assert (await client.get_payment(created.payment_id)).payin_extra_id == created.payin_extra_id


async def test_full_currencies(client: NowPaymentsClient) -> None:
    currencies = {c.code: c for c in await client.full_currencies()}
    assert {"btc", "eth", "usdttrc20", "ltc", "trx", "xrp"} <= set(currencies)
    assert currencies["btc"].precision == 8 and currencies["eth"].precision == 18
    assert currencies["usdttrc20"].network == "trx" and currencies["usdttrc20"].precision == 6
    assert currencies["xrp"].extra_id_exists and currencies["xrp"].extra_id_regex
    assert not currencies["btc"].extra_id_exists
    assert [c for c in currencies.values() if not c.enabled]


async def test_merchant_coins_selected_currencies_shape(client: NowPaymentsClient) -> None:
    coins = await client.merchant_coins()
    assert "btc" in coins and "xrp" in coins
    assert all(code == code.lower() for code in coins)
    assert "doge" not in coins  # the disabled one


async def test_merchant_coins_currencies_shape() -> None:
    with SimulatorServer(SimulatorConfig(ipn_secret=IPN_SECRET, merchant_coins_key="currencies")) as other:
        async with sim_client(other.api_url, key="any-key") as gateway:
            assert "eth" in await gateway.merchant_coins()


async def test_merchant_coins_object_items(tiny_server: Callable) -> None:
    async def coins(request: web.Request) -> web.Response:
        return web.json_response({"currencies": [{"code": "BTC", "name": "Bitcoin"}, {"code": "usdttrc20"}]})

    url = await tiny_server({"/merchant/coins": coins})
    async with sim_client(url) as gateway:
        assert await gateway.merchant_coins() == ["btc", "usdttrc20"]


async def test_min_amount_and_estimate(client: NowPaymentsClient) -> None:
    minimum = await client.min_amount("btc")
    assert minimum.currency_from == "btc"
    assert minimum.min_amount == Decimal("0.00002062")
    assert minimum.fiat_equivalent == Decimal("2")
    estimated = await client.estimate(Decimal("100"), "usd", "btc")
    assert estimated == Decimal("0.00103092")
    assert isinstance(estimated, Decimal)


async def test_bad_api_key_rejected(sim: SimulatorServer) -> None:
    async with sim_client(sim.api_url, key="WRONG-KEY-123") as gateway:
        with pytest.raises(GatewayRejected) as info:
            await gateway.get_payment("123")
    assert info.value.http_status == 403
    assert info.value.code == "INVALID_API_KEY"
    assert info.value.message == "Invalid api key"
    assert "WRONG-KEY-123" not in str(info.value)


async def test_missing_api_key_rejected_but_status_needs_none(sim: SimulatorServer) -> None:
    async with sim_client(sim.api_url, key=None) as gateway:
        assert await gateway.status() is True
        with pytest.raises(GatewayRejected) as info:
            await gateway.full_currencies()
    assert info.value.code == "INVALID_API_KEY"


async def test_amount_below_minimum(client: NowPaymentsClient, control: Control) -> None:
    order_id = order()
    with pytest.raises(GatewayRejected) as info:
        await client.create_payment(
            price_amount=Decimal("1.00"), price_currency="usd", pay_currency="btc", order_id=order_id
        )
    assert info.value.http_status == 400
    assert info.value.code == "AMOUNT_MINIMAL_ERROR"
    assert "less than minimal" in info.value.message
    assert await control.payments_for(order_id) == []


@pytest.mark.parametrize("currency", ["notacoin", "doge"])
async def test_unknown_or_disabled_pay_currency(client: NowPaymentsClient, currency: str) -> None:
    with pytest.raises(GatewayRejected) as info:
        await client.create_payment(
            price_amount=Decimal("20"), price_currency="usd", pay_currency=currency, order_id=order()
        )
    assert (info.value.http_status, info.value.code) == (400, "INVALID_REQUEST_PARAMS")


async def test_unknown_payment_is_rejected(client: NowPaymentsClient) -> None:
    with pytest.raises(GatewayRejected) as info:
        await client.get_payment("1")
    assert info.value.http_status == 404


async def test_transient_500_on_get_is_retried(client: NowPaymentsClient, control: Control) -> None:
    created = await client.create_payment(
        price_amount=Decimal("20"), price_currency="usd", pay_currency="trx", order_id=order()
    )
    path = f"/v1/payment/{created.payment_id}"
    await control.fault(status=500, count=2, path_prefix=path)
    fetched = await client.get_payment(created.payment_id)
    assert fetched.payment_id == created.payment_id
    assert [r["status"] for r in await control.requests(path)] == [500, 500, 200]


async def test_429_on_create_is_retried_without_double_creation(client: NowPaymentsClient, control: Control) -> None:
    order_id = order()
    before = len(await control.requests("/v1/payment"))
    await control.fault(status=429, count=2, path_prefix="/v1/payment", method="POST")
    created = await client.create_payment(
        price_amount=Decimal("20"), price_currency="usd", pay_currency="btc", order_id=order_id
    )
    assert created.order_id == order_id
    statuses = [r["status"] for r in (await control.requests("/v1/payment"))[before:]]
    assert statuses == [429, 429, 201]
    assert len(await control.payments_for(order_id)) == 1


async def test_500_on_create_is_not_retried(client: NowPaymentsClient, control: Control) -> None:
    order_id = order()
    before = len(await control.requests("/v1/payment"))
    await control.fault(status=500, count=1, path_prefix="/v1/payment", method="POST")
    with pytest.raises(GatewayTransientError):
        await client.create_payment(
            price_amount=Decimal("20"), price_currency="usd", pay_currency="btc", order_id=order_id
        )
    assert len((await control.requests("/v1/payment"))[before:]) == 1


async def test_create_timeout_is_not_retried_and_left_to_caller(sim: SimulatorServer, control: Control) -> None:
    order_id = order()
    before = len(await control.requests("/v1/payment"))
    await control.fault(delay=1.0, count=1, path_prefix="/v1/payment", method="POST")
    async with sim_client(sim.api_url, timeout=0.3) as gateway:
        with pytest.raises(GatewayTransientError) as info:
            await gateway.create_payment(
                price_amount=Decimal("20"), price_currency="usd", pay_currency="btc", order_id=order_id
            )
    assert "no answer" in str(info.value)
    assert len((await control.requests("/v1/payment"))[before:]) == 1  # one attempt only
    # The slow request still created the payment: exactly the ambiguity the caller must reconcile.
    for _ in range(50):
        if await control.payments_for(order_id):
            break
        await asyncio.sleep(0.05)
    assert len(await control.payments_for(order_id)) == 1


async def test_get_timeout_is_retried(sim: SimulatorServer, control: Control) -> None:
    async with sim_client(sim.api_url, timeout=0.3) as gateway:
        created = await gateway.create_payment(
            price_amount=Decimal("20"), price_currency="usd", pay_currency="btc", order_id=order()
        )
        await control.fault(delay=1.0, count=1, path_prefix=f"/v1/payment/{created.payment_id}")
        assert (await gateway.get_payment(created.payment_id)).payment_id == created.payment_id


async def test_persistent_503_gives_transient_error(client: NowPaymentsClient, control: Control) -> None:
    await control.fault(status=503, count=10, path_prefix="/v1/full-currencies")
    before = len(await control.requests("/v1/full-currencies"))
    with pytest.raises(GatewayTransientError) as info:
        await client.full_currencies()
    assert "503" in str(info.value)
    assert len((await control.requests("/v1/full-currencies"))[before:]) == 3


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with sim_client(f"http://127.0.0.1:{port}/v1") as gateway:
        with pytest.raises(GatewayTransientError):
            await gateway.get_payment("1")


async def test_unparseable_success_body_is_protocol_error(tiny_server: Callable) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async def plain_400(request: web.Request) -> web.Response:
        return web.Response(status=400, text="Bad Request")

    async def no_code(request: web.Request) -> web.Response:
        return web.json_response({"message": "nope"}, status=422)

    url = await tiny_server({"/full-currencies": html, "/payment/{id}": plain_400, "/estimate": no_code})
    async with sim_client(url) as gateway:
        with pytest.raises(GatewayProtocolError):
            await gateway.full_currencies()
        with pytest.raises(GatewayRejected) as info:
            await gateway.get_payment("5")
        assert (info.value.code, info.value.message) == ("HTTP_400", "Bad Request")
        with pytest.raises(GatewayRejected) as info:
            await gateway.estimate(Decimal("1"), "usd", "btc")
        assert (info.value.http_status, info.value.code, info.value.message) == (422, "HTTP_422", "nope")


async def test_error_message_never_echoes_the_key(tiny_server: Callable) -> None:
    async def echo(request: web.Request) -> web.Response:
        key = request.headers.get("x-api-key", "")
        return web.json_response({"code": "INVALID_API_KEY", "message": f"key {key} is bad"}, status=403)

    url = await tiny_server({"/full-currencies": echo})
    async with sim_client(url) as gateway:
        with pytest.raises(GatewayRejected) as info:
            await gateway.full_currencies()
    assert API_KEY not in str(info.value) and API_KEY not in info.value.message


async def test_repr_hides_key() -> None:
    gateway = sim_client("http://127.0.0.1:1/v1")
    assert API_KEY not in repr(gateway) and API_KEY not in str(gateway)
    assert "<set>" in repr(gateway)
    await gateway.close()


async def test_float_amount_refused(client: NowPaymentsClient) -> None:
    with pytest.raises(TypeError):
        await client.create_payment(
            price_amount=10.5,
            price_currency="usd",
            pay_currency="btc",
            order_id=order(),  # type: ignore[arg-type]
        )
