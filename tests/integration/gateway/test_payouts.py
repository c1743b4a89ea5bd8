"""Payouts (mass payouts API): JWT sign-in, create/get/find, duplicates, address checks, fees,
signed payout IPNs, faults, and secrets kept out of reprs, errors and logs. Loopback HTTP only."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from gateway.client import NowPaymentsClient
from gateway.errors import (
    DUPLICATE_EXTERNAL_ID,
    GatewayConfigurationError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
)
from gateway.models import GatewayPayout
from gateway.signature import canonical_json
from gateway.simulator import CATALOGUE, SimulatorServer
from tests.integration.gateway.conftest import API_KEY, IPN_SECRET, PAYOUT_EMAIL, PAYOUT_PASSWORD, Control, Receiver
from tests.integration.gateway.conftest import fresh_simulator as own_simulator

SECRETS = (API_KEY, PAYOUT_EMAIL, PAYOUT_PASSWORD, IPN_SECRET)


def external_id() -> str:
    return f"WD_TEST_{uuid.uuid4().hex[:12]}"


def make_client(url: str, **kwargs: Any) -> NowPaymentsClient:
    options: dict[str, Any] = {
        "timeout": 5.0,
        "backoff_base": 0.01,
        "email": PAYOUT_EMAIL,
        "password": SecretStr(PAYOUT_PASSWORD),
        **kwargs,
    }
    return NowPaymentsClient(base_url=url, api_key=SecretStr(API_KEY), **options)


@asynccontextmanager
async def control_for(server: SimulatorServer) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield Control(session, server.url)


async def count(ctl: Control, path: str, method: str | None = None, status: int | None = None) -> int:
    return sum(
        1
        for r in await ctl.requests(path)
        if r["path"] == path and (method is None or r["method"] == method) and (status is None or r["status"] == status)
    )


async def new_payout(
    gateway: NowPaymentsClient,
    *,
    currency: str = "btc",
    amount: str = "0.0005",
    uid: str | None = None,
    ipn_callback_url: str | None = None,
    extra_id: str | None = None,
) -> GatewayPayout:
    return await gateway.create_payout(
        address=CATALOGUE[currency].address(),
        currency=currency,
        amount=Decimal(amount),
        unique_external_id=uid or external_id(),
        extra_id=extra_id,
        ipn_callback_url=ipn_callback_url,
    )


# -- sign-in -------------------------------------------------------------------------------


async def test_signs_in_once_and_reuses_the_token() -> None:
    with own_simulator() as server:
        async with control_for(server) as ctl, make_client(server.api_url) as gateway:
            created = await new_payout(gateway)
            await gateway.get_payout(created.payout_id)
            await gateway.find_payout_by_external_id(created.unique_external_id or "")
            await new_payout(gateway)
            assert await count(ctl, "/v1/auth") == 1
            assert await count(ctl, "/v1/payout", "POST", 200) == 2
            # Fee and address checks need only the API key: no sign-in for them.
            fresh = make_client(server.api_url)
            async with fresh:
                await fresh.payout_fee("btc", Decimal("0.01"))
                await fresh.validate_address("btc", CATALOGUE["btc"].address())
            assert await count(ctl, "/v1/auth") == 1


async def test_token_is_refreshed_after_max_age_without_a_401() -> None:
    with own_simulator() as server:
        async with control_for(server) as ctl, make_client(server.api_url, token_max_age=0.6) as gateway:
            created = await new_payout(gateway)
            await gateway.get_payout(created.payout_id)
            assert await count(ctl, "/v1/auth") == 1
            await asyncio.sleep(0.7)
            await gateway.get_payout(created.payout_id)
            assert await count(ctl, "/v1/auth") == 2
            assert [r for r in await ctl.requests("/v1/payout") if r["status"] == 401] == []


async def test_expired_token_answered_401_is_refreshed_once() -> None:
    with own_simulator(jwt_ttl_seconds=0.8) as server:
        async with control_for(server) as ctl, make_client(server.api_url) as gateway:
            created = await new_payout(gateway)
            await asyncio.sleep(0.9)
            # The client still trusts its token (max age 240 s); the gateway says it expired.
            polled = await gateway.get_payout(created.payout_id)
            assert polled.payout_id == created.payout_id
            assert await count(ctl, "/v1/auth") == 2
            gets = [r["status"] for r in await ctl.requests(f"/v1/payout/{created.payout_id}")]
            assert gets == [401, 200]


async def test_concurrent_callers_share_one_sign_in() -> None:
    with own_simulator(jwt_ttl_seconds=0.8) as server:
        async with control_for(server) as ctl, make_client(server.api_url) as gateway:
            first = await asyncio.gather(*(new_payout(gateway) for _ in range(6)))
            assert await count(ctl, "/v1/auth") == 1
            await asyncio.sleep(0.9)
            # Every one of these is refused with the expired token; one sign-in serves them all.
            polled = await asyncio.gather(*(gateway.get_payout(p.payout_id) for p in first))
            assert [p.payout_id for p in polled] == [p.payout_id for p in first]
            assert await count(ctl, "/v1/auth") == 2


async def test_401_mid_flight_signs_in_again_and_creates_once(control: Control, sim: SimulatorServer) -> None:
    async with make_client(sim.api_url) as gateway:
        await gateway.payout_fee("btc", Decimal("0.01"))
        before = await count(control, "/v1/auth")
        await gateway.find_payout_by_external_id(external_id())  # signs in
        assert await count(control, "/v1/auth") == before + 1
        await control.fault(status=401, count=1, path_prefix="/v1/payout", method="POST")
        uid = external_id()
        created = await new_payout(gateway, uid=uid)
        assert created.unique_external_id == uid
        assert await count(control, "/v1/auth") == before + 2
        assert len(await control.payouts_for(uid)) == 1


async def test_persistent_401_gives_up_after_one_new_sign_in() -> None:
    with own_simulator() as server:
        async with control_for(server) as ctl, make_client(server.api_url) as gateway:
            await ctl.fault(status=401, count=5, path_prefix="/v1/payout", method="POST")
            uid = external_id()
            with pytest.raises(GatewayRejected) as caught:
                await new_payout(gateway, uid=uid)
            assert caught.value.http_status == 401 and caught.value.code == "AUTH_REQUIRED"
            assert await count(ctl, "/v1/auth") == 2
            assert await count(ctl, "/v1/payout", "POST") == 2
            assert await ctl.payouts_for(uid) == []


async def test_wrong_credentials_are_refused_without_echoing_them(sim: SimulatorServer) -> None:
    wrong_password = "not-the-Pa55word-0000"
    async with make_client(sim.api_url, password=SecretStr(wrong_password)) as gateway:
        with pytest.raises(GatewayRejected) as caught:
            await new_payout(gateway)
    assert caught.value.http_status == 403 and caught.value.code == "INVALID_CREDENTIALS"
    for text in (str(caught.value), repr(caught.value), caught.value.message):
        for secret in (*SECRETS, wrong_password):
            assert secret not in text


async def test_payouts_without_credentials_send_nothing() -> None:
    with own_simulator() as server:
        async with control_for(server) as ctl:
            async with NowPaymentsClient(base_url=server.api_url, api_key=SecretStr(API_KEY)) as gateway:
                with pytest.raises(GatewayConfigurationError):
                    await new_payout(gateway)
                with pytest.raises(GatewayConfigurationError):
                    await gateway.find_payout_by_external_id("x")
            assert await ctl.requests("/v1/") == []
    with pytest.raises(ValueError, match="both"):
        NowPaymentsClient(base_url="http://127.0.0.1:1/v1", api_key=None, email=PAYOUT_EMAIL)
    with pytest.raises(TypeError):
        NowPaymentsClient(base_url="http://127.0.0.1:1/v1", api_key=None, email="a@b.c", password="plain")  # type: ignore[arg-type]


# -- create / get / find ----------------------------------------------------------------------


async def test_create_get_and_find(payout_client: NowPaymentsClient, control: Control) -> None:
    uid = external_id()
    address = CATALOGUE["xrp"].address()
    created = await payout_client.create_payout(
        address=address,
        currency="XRP",
        amount=Decimal("25.123456"),
        unique_external_id=uid,
        extra_id="123456789",
    )
    assert created.status == "CREATING"
    assert created.amount == Decimal("25.123456") and isinstance(created.amount, Decimal)
    assert created.currency == "xrp" and created.address == address and created.extra_id == "123456789"
    assert created.unique_external_id == uid and created.batch_id and created.batch_id != created.payout_id
    assert created.hash is None and created.error is None and created.created_at is not None

    # The simulator varies the answer's container (list / batch object) and field types.
    for _ in range(4):
        polled = await payout_client.get_payout(created.payout_id)
        assert polled == created
    by_batch = await payout_client.get_payout(created.batch_id or "")
    assert by_batch.payout_id == created.payout_id

    found = await payout_client.find_payout_by_external_id(uid)
    assert found == created
    assert await payout_client.find_payout_by_external_id(external_id()) is None

    at_gateway = await control.payouts_for(uid)
    assert [p["id"] for p in at_gateway] == [created.payout_id]
    assert at_gateway[0]["amount"] == "25.123456"


async def test_status_changes_are_seen_by_get(payout_client: NowPaymentsClient, control: Control) -> None:
    created = await new_payout(payout_client, currency="usdttrc20", amount="12.5")
    result = await control.call("POST", f"/sim/payouts/{created.payout_id}/play", {"scenario": "finished"})
    assert result["steps"] == ["WAITING", "PROCESSING", "SENDING", "FINISHED"]
    done = await payout_client.get_payout(created.payout_id)
    assert done.status == "FINISHED" and done.hash and done.error is None
    assert done.updated_at is not None and done.created_at is not None and done.updated_at > done.created_at

    failed = await new_payout(payout_client, currency="usdttrc20", amount="12.5")
    await control.call("POST", f"/sim/payouts/{failed.payout_id}/play", {"scenario": "failed", "send_ipn": False})
    polled = await payout_client.get_payout(failed.payout_id)
    assert polled.status == "FAILED" and polled.error

    rejected = await new_payout(payout_client, currency="usdttrc20", amount="12.5")
    answer = await control.call(
        "POST", f"/sim/payouts/{rejected.payout_id}/status", {"status": "rejected", "error": "Address is blocked"}
    )
    assert answer["payout"]["status"] == "REJECTED" and answer["ipn"] is None
    polled = await payout_client.get_payout(rejected.payout_id)
    assert (polled.status, polled.error) == ("REJECTED", "Address is blocked")


async def test_duplicate_external_id_is_refused_and_paid_once(
    payout_client: NowPaymentsClient, control: Control
) -> None:
    uid = external_id()
    first = await new_payout(payout_client, uid=uid, amount="0.0005")
    with pytest.raises(GatewayRejected) as caught:
        await new_payout(payout_client, uid=uid, amount="0.0007")
    assert caught.value.code == DUPLICATE_EXTERNAL_ID and caught.value.http_status == 400
    at_gateway = await control.payouts_for(uid)
    assert len(at_gateway) == 1 and at_gateway[0]["id"] == first.payout_id and at_gateway[0]["amount"] == "0.0005"
    # The caller reconciles by reading it back.
    assert await payout_client.find_payout_by_external_id(uid) == first


async def test_invalid_payout_requests_are_refused(payout_client: NowPaymentsClient, control: Control) -> None:
    uid = external_id()
    with pytest.raises(GatewayRejected) as caught:
        await payout_client.create_payout(
            address="not-an-address", currency="btc", amount=Decimal("0.001"), unique_external_id=uid
        )
    assert caught.value.code == "BAD_CREATE_WITHDRAWAL"
    with pytest.raises(GatewayRejected) as caught:
        await new_payout(payout_client, uid=uid, amount="0.00000001")
    assert caught.value.code == "AMOUNT_MINIMAL_ERROR"
    with pytest.raises(GatewayRejected) as caught:
        await new_payout(payout_client, uid=uid, amount="0.000500001")  # more decimals than BTC has
    assert caught.value.code == "INVALID_REQUEST_PARAMS"
    assert await control.payouts_for(uid) == []  # refused requests create nothing, nor burn the id
    await new_payout(payout_client, uid=uid)
    assert len(await control.payouts_for(uid)) == 1
    with pytest.raises(TypeError):
        await payout_client.create_payout(
            address="x",
            currency="btc",
            amount=0.001,  # type: ignore[arg-type]
            unique_external_id=external_id(),
        )
    with pytest.raises(ValueError):
        await new_payout(payout_client, uid="  ")


async def test_ambiguous_timeout_is_not_retried_and_reconciles(sim: SimulatorServer, control: Control) -> None:
    async with make_client(sim.api_url, timeout=0.5) as gateway:
        await gateway.find_payout_by_external_id(external_id())  # sign in before the fault
        await control.fault(delay=1.0, count=1, path_prefix="/v1/payout", method="POST")
        uid = external_id()
        with pytest.raises(GatewayTransientError):
            await new_payout(gateway, uid=uid)
        # The gateway got the request and acts on it late; the client did not send it twice.
        found = None
        for _ in range(60):
            found = await gateway.find_payout_by_external_id(uid)
            if found is not None:
                break
            await asyncio.sleep(0.05)
        assert found is not None and found.unique_external_id == uid
        with pytest.raises(GatewayRejected) as caught:
            await new_payout(gateway, uid=uid)
        assert caught.value.code == DUPLICATE_EXTERNAL_ID
        assert len(await control.payouts_for(uid)) == 1


async def test_5xx_on_create_is_not_retried_but_429_is() -> None:
    with own_simulator() as server:
        async with control_for(server) as ctl, make_client(server.api_url) as gateway:
            await ctl.fault(status=500, count=1, path_prefix="/v1/payout", method="POST")
            with pytest.raises(GatewayTransientError):
                await new_payout(gateway)
            assert await count(ctl, "/v1/payout", "POST") == 1

            await ctl.fault(status=429, count=1, path_prefix="/v1/payout", method="POST")
            uid = external_id()
            await new_payout(gateway, uid=uid)
            assert await count(ctl, "/v1/payout", "POST") == 3
            assert len(await ctl.payouts_for(uid)) == 1

            # Reads are retried through 5xx like any GET.
            await ctl.fault(status=503, count=2, path_prefix="/v1/payout", method="GET")
            assert await gateway.find_payout_by_external_id(uid) is not None


# -- address check and fee ----------------------------------------------------------------------


async def test_validate_address(payout_client: NowPaymentsClient) -> None:
    assert await payout_client.validate_address("btc", CATALOGUE["btc"].address()) is True
    assert await payout_client.validate_address("BTC", "bc1-not-really") is False
    assert await payout_client.validate_address("eth", CATALOGUE["btc"].address()) is False
    xrp = CATALOGUE["xrp"].address()
    assert await payout_client.validate_address("xrp", xrp) is True
    assert await payout_client.validate_address("xrp", xrp, "1234") is True
    assert await payout_client.validate_address("xrp", xrp, "memo-text") is False
    assert await payout_client.validate_address("btc", CATALOGUE["btc"].address(), "1234") is False


async def test_validate_address_other_errors_raise(sim: SimulatorServer, control: Control) -> None:
    async with NowPaymentsClient(base_url=sim.api_url, api_key=SecretStr("wrong-key")) as gateway:
        with pytest.raises(GatewayRejected) as caught:
            await gateway.validate_address("btc", CATALOGUE["btc"].address())
        assert caught.value.http_status == 403
    async with make_client(sim.api_url, max_attempts=2) as gateway:
        await control.fault(status=500, count=2, path_prefix="/v1/payout/validate-address")
        with pytest.raises(GatewayTransientError):
            await gateway.validate_address("btc", CATALOGUE["btc"].address())


async def test_validate_address_accepts_a_json_ok() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response("OK")

    app = web.Application()
    app.router.add_post("/v1/payout/validate-address", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with make_client(f"http://127.0.0.1:{runner.addresses[0][1]}/v1") as gateway:
            assert await gateway.validate_address("btc", "bc1qanything") is True
    finally:
        await runner.cleanup()


async def test_payout_fee_is_an_exact_decimal(payout_client: NowPaymentsClient) -> None:
    eth = await payout_client.payout_fee("eth", Decimal("0.5"))
    assert isinstance(eth, Decimal) and eth == Decimal("0.000731966158472103")
    assert str(eth) == "0.000731966158472103"
    assert await payout_client.payout_fee("USDTTRC20", Decimal("100")) == Decimal("1.1")
    with pytest.raises(GatewayRejected):
        await payout_client.payout_fee("nope", Decimal("1"))
    with pytest.raises(ValueError):
        await payout_client.payout_fee("btc", Decimal("0"))


# -- payout IPNs ---------------------------------------------------------------------------------


async def test_payout_ipns_are_signed_and_verifiable(
    payout_client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    created = await new_payout(payout_client, currency="ltc", amount="0.25", ipn_callback_url=receiver.url)
    result = await control.call("POST", f"/sim/payouts/{created.payout_id}/play", {"scenario": "finished"})
    assert receiver.rejected == []
    bodies = receiver.payout_bodies(created.payout_id)
    assert [b["status"] for b in bodies] == result["steps"]
    for raw in receiver.raw_bodies:
        assert raw.decode() == canonical_json(json.loads(raw, parse_float=Decimal))
    final = GatewayPayout.from_wire(bodies[-1])
    assert final.status == "FINISHED" and final.hash and final.amount == Decimal("0.25")
    assert final.unique_external_id == created.unique_external_id and final.batch_id == created.batch_id
    assert final.updated_at is not None
    log = await control.payout_ipn_log(created.payout_id)
    assert [(e["payout_status"], e["status"], e["ok"]) for e in log] == [(s, 200, True) for s in result["steps"]]
    assert (await payout_client.get_payout(created.payout_id)).hash == final.hash


async def test_payout_ipn_with_wrong_secret_is_rejected(
    payout_client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    receiver.secret = "not-the-simulator-secret"
    created = await new_payout(payout_client, ipn_callback_url=receiver.url)
    answer = await control.call("POST", f"/sim/payouts/{created.payout_id}/status", {"status": "failed"})
    assert answer["ipn"]["status"] == 400 and receiver.rejected == ["signature mismatch"]


async def test_auto_advance_finishes_payouts(receiver: Receiver) -> None:
    with own_simulator(auto_advance_seconds=0.02) as server:
        async with make_client(server.api_url) as gateway:
            created = await new_payout(gateway, ipn_callback_url=receiver.url)
            for _ in range(100):
                if [b["status"] for b in receiver.payout_bodies(created.payout_id)][-1:] == ["FINISHED"]:
                    break
                await asyncio.sleep(0.05)
            statuses = [b["status"] for b in receiver.payout_bodies(created.payout_id)]
            assert statuses == ["WAITING", "PROCESSING", "SENDING", "FINISHED"]
            assert (await gateway.get_payout(created.payout_id)).status == "FINISHED"


# -- secrets ----------------------------------------------------------------------------------------


async def test_secrets_stay_out_of_reprs_errors_and_logs(
    sim: SimulatorServer, control: Control, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_client(sim.api_url, timeout=0.5, max_attempts=2) as gateway:
        created = await new_payout(gateway)
        token = gateway._jwt.get_secret_value() if gateway._jwt is not None else ""
        assert token.count(".") == 2
        errors: list[BaseException] = []
        await control.fault(status=401, count=2, path_prefix="/v1/payout", method="POST")
        await control.fault(status=500, count=3, path_prefix="/v1/payout/", method="GET")
        for call in (
            lambda: new_payout(gateway),
            lambda: gateway.get_payout(created.payout_id),
            lambda: new_payout(gateway, uid=created.unique_external_id),
        ):
            try:
                await call()
            except Exception as exc:
                errors.append(exc)
        assert len(errors) == 3
        token = gateway._jwt.get_secret_value() if gateway._jwt is not None else token
        texts = [repr(gateway), str(gateway), caplog.text, *(f"{e!s} {e!r}" for e in errors)]
    for text in texts:
        for secret in (*SECRETS, token):
            assert secret not in text
    assert "<set>" in repr(gateway)
    for text in (repr(sim), repr(sim.state)):
        for secret in (*SECRETS, token):
            assert secret not in text


async def test_gateway_text_echoing_credentials_is_scrubbed() -> None:
    async def auth(request: web.Request) -> web.Response:
        return web.json_response({"token": "header.payload.sig-123"})

    async def payout(request: web.Request) -> web.Response:
        body = {
            "status": False,
            "statusCode": 400,
            "code": "INVALID_REQUEST_PARAMS",
            "message": f"bad {PAYOUT_EMAIL} {PAYOUT_PASSWORD} {request.headers['Authorization']} {API_KEY}",
        }
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/v1/auth", auth)
    app.router.add_post("/v1/payout", payout)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with make_client(f"http://127.0.0.1:{runner.addresses[0][1]}/v1") as gateway:
            with pytest.raises(GatewayRejected) as caught:
                await new_payout(gateway)
    finally:
        await runner.cleanup()
    text = f"{caught.value} {caught.value!r} {caught.value.message}"
    for secret in (*SECRETS, "header.payload.sig-123"):
        assert secret not in text
    assert "***" in text


async def test_find_filters_and_pages_when_the_gateway_ignores_the_filter() -> None:
    """Against a gateway that lists everything (as the real GET /payout may), the client
    filters each page itself and stops at the first page holding the payout."""

    def withdrawal(n: int, uid: str) -> dict[str, Any]:
        return {"id": str(5_000_000_000 + n), "status": "FINISHED", "amount": "1", "unique_external_id": uid}

    pages_seen: list[str] = []
    duplicate = {"on": False}

    async def auth(request: web.Request) -> web.Response:
        return web.json_response({"token": "a.b.c"})

    async def listing(request: web.Request) -> web.Response:
        page = int(request.query["page"])
        pages_seen.append(request.query["page"])
        limit = int(request.query["limit"])
        if page == 0:
            items = [withdrawal(i, f"other-{i}") for i in range(limit)]
        elif page == 1:
            items = [withdrawal(limit + 1, "wanted"), withdrawal(limit + 2, "other")]
            if duplicate["on"]:
                items.append(withdrawal(limit + 3, "wanted"))
        else:
            items = []
        return web.json_response({"payouts": items})

    app = web.Application()
    app.router.add_post("/v1/auth", auth)
    app.router.add_get("/v1/payout", listing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with make_client(f"http://127.0.0.1:{runner.addresses[0][1]}/v1") as gateway:
            found = await gateway.find_payout_by_external_id("wanted")
            assert found is not None and found.payout_id == "5000000101"
            assert pages_seen == ["0", "1"]
            assert await gateway.find_payout_by_external_id("never") is None
            duplicate["on"] = True
            with pytest.raises(GatewayProtocolError):
                await gateway.find_payout_by_external_id("wanted")
    finally:
        await runner.cleanup()


async def test_generated_deposit_addresses_pass_payout_validation(payout_client: NowPaymentsClient) -> None:
    for currency in CATALOGUE.values():
        if currency.enabled:
            for _ in range(5):
                assert await payout_client.validate_address(currency.code, currency.address()) is True
