"""The simulator's scenarios and IPN delivery, checked by a local receiver using verify_ipn."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from gateway.client import NowPaymentsClient
from gateway.models import GatewayPayment
from gateway.signature import canonical_json
from gateway.simulator import SimulatorConfig, SimulatorServer
from tests.integration.gateway.conftest import API_KEY, IPN_SECRET, Control, Receiver, fresh_simulator


async def new_payment(
    client: NowPaymentsClient,
    receiver: Receiver | None,
    currency: str = "btc",
    amount: str = "40.00",
    case: str | None = None,
) -> GatewayPayment:
    return await client.create_payment(
        price_amount=Decimal(amount),
        price_currency="usd",
        pay_currency=currency,
        order_id=f"PAY_SIM_{uuid.uuid4().hex[:12]}",
        ipn_callback_url=receiver.url if receiver else None,
        case=case,
    )


async def test_play_paid_sends_signed_ipns_in_order(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    payment = await new_payment(client, receiver)
    result = await control.call("POST", f"/sim/payments/{payment.payment_id}/play", {"scenario": "paid"})
    assert result["steps"] == ["waiting", "confirming", "confirmed", "sending", "finished"]
    assert receiver.rejected == []
    assert receiver.statuses(payment.payment_id) == result["steps"]
    final = receiver.accepted[-1]
    assert final["actually_paid"] == payment.pay_amount
    assert isinstance(final["actually_paid"], Decimal)
    assert final["payin_hash"] and final["order_id"] == payment.order_id
    assert final["outcome_currency"] == "btc"
    # Bodies arrive already canonical (sorted, compact, JS numbers): the raw-bytes HMAC matches.
    for raw in receiver.raw_bodies:
        assert raw.decode() == canonical_json(json.loads(raw, parse_float=Decimal))

    log = await control.ipn_log(payment.payment_id)
    assert [(e["payment_status"], e["status"], e["ok"]) for e in log] == [(s, 200, True) for s in result["steps"]]

    polled = await client.get_payment(payment.payment_id)
    assert polled.status == "finished"
    assert polled.actually_paid == payment.pay_amount
    assert polled.payin_hash == final["payin_hash"]
    assert polled.outcome_amount is not None and polled.outcome_amount < polled.actually_paid


async def test_play_partial_and_over(client: NowPaymentsClient, control: Control, receiver: Receiver) -> None:
    partial = await new_payment(client, receiver, currency="usdttrc20", amount="25.00")
    await control.call("POST", f"/sim/payments/{partial.payment_id}/play", {"scenario": "partial"})
    assert receiver.statuses(partial.payment_id)[-1] == "partially_paid"
    assert (await client.get_payment(partial.payment_id)).actually_paid == Decimal("12.5")

    over = await new_payment(client, receiver, currency="usdttrc20", amount="25.00")
    await control.call("POST", f"/sim/payments/{over.payment_id}/play", {"scenario": "over"})
    polled = await client.get_payment(over.payment_id)
    assert polled.status == "finished" and polled.actually_paid == Decimal("37.5")
    assert receiver.rejected == []


async def test_a_retried_play_with_its_play_id_does_not_play_the_scenario_again(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    """A client that lost the answer of a slow play and retried it once played the scenario twice over one
    payment: its amount went 1.5x, 0, 1x, 1.5x, so a "finished" IPN reported less than had arrived (a soak saw it)."""
    over = await new_payment(client, receiver, currency="usdttrc20", amount="25.00")
    body = {"scenario": "over", "step_delay": 0.05, "play_id": "deposit-1"}
    path = f"/sim/payments/{over.payment_id}/play"
    first, retried = await asyncio.gather(control.call("POST", path, body), control.call("POST", path, body))
    assert retried == first
    assert receiver.statuses(over.payment_id) == ["waiting", "confirming", "confirmed", "sending", "finished"]
    assert [ipn["actually_paid"] for ipn in receiver.accepted][1:] == [Decimal("37.5")] * 4
    again = await control.call("POST", path, {**body, "scenario": "paid"})  # later, same play_id: still the one play
    assert again["ipn"] == first["ipn"]
    assert len(receiver.statuses(over.payment_id)) == 5


async def test_play_failed_expired_late(client: NowPaymentsClient, control: Control, receiver: Receiver) -> None:
    expected = {
        "failed": ["waiting", "failed"],
        "expired": ["waiting", "expired"],
        "late": ["waiting", "expired", "confirming", "confirmed", "sending", "finished"],
    }
    for scenario, statuses in expected.items():
        payment = await new_payment(client, receiver, currency="ltc")
        await control.call("POST", f"/sim/payments/{payment.payment_id}/play", {"scenario": scenario})
        assert receiver.statuses(payment.payment_id) == statuses
        assert (await client.get_payment(payment.payment_id)).status == statuses[-1]


async def test_set_status_backwards_and_without_ipn(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    payment = await new_payment(client, receiver, currency="xrp", amount="12")
    path = f"/sim/payments/{payment.payment_id}/status"
    done = await control.call("POST", path, {"status": "finished", "actually_paid": "5"})
    assert done["ipn"]["ok"] is True and done["payment"]["actually_paid"] == "5"
    stale = await control.call("POST", path, {"status": "confirming"})
    assert stale["payment"]["payment_status"] == "confirming"
    await control.call("POST", path, {"status": "sending", "send_ipn": False})
    assert receiver.statuses(payment.payment_id) == ["finished", "confirming"]
    assert (await client.get_payment(payment.payment_id)).status == "sending"
    # Each callback carries the memo and a strictly later updated_at.
    bodies = [b for b in receiver.accepted if str(b["payment_id"]) == payment.payment_id]
    assert all(b["payin_extra_id"] == payment.payin_extra_id for b in bodies)
    assert bodies[0]["updated_at"] < bodies[1]["updated_at"]


async def test_failed_delivery_is_retried_in_background(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    payment = await new_payment(client, receiver)
    receiver.fail_next = 1
    answer = await control.call("POST", f"/sim/payments/{payment.payment_id}/status", {"status": "confirming"})
    assert answer["ipn"]["status"] == 500 and answer["ipn"]["ok"] is False
    for _ in range(60):
        if receiver.statuses(payment.payment_id):
            break
        await asyncio.sleep(0.05)
    assert receiver.statuses(payment.payment_id) == ["confirming"]
    log = await control.ipn_log(payment.payment_id)
    assert [(e["attempt"], e["status"]) for e in log] == [(1, 500), (2, 200)]
    assert log[0]["body"] == log[1]["body"]


async def test_receiver_with_wrong_secret_rejects(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    receiver.secret = "not-the-simulator-secret"
    payment = await new_payment(client, receiver)
    answer = await control.call("POST", f"/sim/payments/{payment.payment_id}/status", {"status": "confirming"})
    assert answer["ipn"]["status"] == 400
    assert receiver.rejected == ["signature mismatch"]


async def test_payments_counted_by_order_id(client: NowPaymentsClient, control: Control) -> None:
    payment = await new_payment(client, None)
    listed = await control.payments_for(payment.order_id or "")
    assert [p["payment_id"] for p in listed] == [payment.payment_id]
    assert await control.payments_for("no-such-order") == []
    single = await control.call("GET", f"/sim/payments/{payment.payment_id}")
    assert single["payment_status"] == "waiting"


async def test_no_callback_url_means_no_ipn(client: NowPaymentsClient, control: Control) -> None:
    payment = await new_payment(client, None)
    answer = await control.call("POST", f"/sim/payments/{payment.payment_id}/play", {"scenario": "paid"})
    assert answer["ipn"] == []
    assert await control.ipn_log(payment.payment_id) == []


async def test_error_bodies_have_the_gateway_shape(sim: SimulatorServer, http: Any) -> None:
    async with http.get(sim.api_url + "/full-currencies", headers={"x-api-key": "nope"}) as response:
        assert response.status == 403
        assert await response.json() == {
            "status": False,
            "statusCode": 403,
            "code": "INVALID_API_KEY",
            "message": "Invalid api key",
        }
    async with http.post(sim.api_url + "/payment", headers={"x-api-key": API_KEY}, json={"price_amount": 5}) as r:
        body = await r.json()
        assert r.status == 400 and body["code"] == "INVALID_REQUEST_PARAMS" and body["statusCode"] == 400
        assert body["status"] is False and body["message"]


async def test_auto_advance_plays_the_sandbox_case(receiver: Receiver) -> None:
    with SimulatorServer(SimulatorConfig(ipn_secret=IPN_SECRET, auto_advance_seconds=0.02)) as auto:
        async with NowPaymentsClient(base_url=auto.api_url, api_key=SecretStr("k")) as gateway:
            paid = await new_payment(gateway, receiver, currency="eth", amount="30")
            partial = await new_payment(gateway, receiver, currency="eth", amount="30", case="partially_paid")
            for _ in range(100):
                if receiver.statuses(paid.payment_id)[-1:] == ["finished"] and receiver.statuses(partial.payment_id)[
                    -1:
                ] == ["partially_paid"]:
                    break
                await asyncio.sleep(0.05)
            assert receiver.statuses(paid.payment_id) == ["waiting", "confirming", "confirmed", "sending", "finished"]
            assert receiver.statuses(partial.payment_id) == ["waiting", "confirming", "partially_paid"]
            assert (await gateway.get_payment(paid.payment_id)).actually_paid == paid.pay_amount
    assert receiver.rejected == []


async def test_simulator_reprs_hide_secrets(sim: SimulatorServer) -> None:
    for text in (repr(sim), repr(sim.state)):
        assert IPN_SECRET not in text and API_KEY not in text


async def test_an_ipn_waiting_for_a_free_connection_is_not_timed_out(receiver: Receiver) -> None:
    """The IPN timeout is the merchant's time to answer. IPNs queued behind others for one of the
    simulator's connections are sent when one frees up: not failed, retried and sent twice."""
    receiver.answer_delay = 0.03  # far below the timeout; 40 IPNs queued on one connection wait far above it
    with fresh_simulator(auto_advance_seconds=0, ipn_connections=1, ipn_timeout_seconds=0.6) as sim:
        async with NowPaymentsClient(base_url=sim.api_url, api_key=SecretStr(API_KEY)) as gateway:
            paid = [await new_payment(gateway, receiver) for _ in range(40)]
            for _ in range(600):
                if all(receiver.statuses(p.payment_id)[-1:] == ["finished"] for p in paid):
                    break
                await asyncio.sleep(0.05)
        attempts = list(sim.state.ipn_log)
    failed = [(a["attempt"], a["error"], a["status"]) for a in attempts if not a["ok"]]
    assert failed == []
    assert len(attempts) == len(receiver.accepted) == 5 * len(paid)
    for p in paid:
        assert receiver.statuses(p.payment_id) == ["waiting", "confirming", "confirmed", "sending", "finished"]
