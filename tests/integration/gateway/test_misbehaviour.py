"""The simulator's knobs for a crash soak (issue 9): API faults on a seeded fraction of calls
(5xx, timeouts, errors after acting) and IPNs delivered duplicated, delayed and out of order.
Loopback HTTP only; every simulator here is the test's own, so draws and counts are its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from gateway.client import NowPaymentsClient
from gateway.errors import GatewayTransientError
from gateway.models import GatewayPayment
from gateway.simulator import FaultRule, IpnDelivery, SimulatorConfig, SimulatorServer
from tests.integration.gateway.conftest import API_KEY, IPN_SECRET, Control, Receiver, fresh_simulator


async def statuses_of_calls(http: aiohttp.ClientSession, sim: SimulatorServer, calls: int) -> list[int]:
    found = []
    for _ in range(calls):
        async with http.get(sim.api_url + "/full-currencies", headers={"x-api-key": API_KEY}) as response:
            await response.read()
            found.append(response.status)
    return found


async def new_payment(gateway: NowPaymentsClient, receiver: Receiver | None = None) -> GatewayPayment:
    return await gateway.create_payment(
        price_amount=Decimal("40"),
        price_currency="usd",
        pay_currency="btc",
        order_id=f"PAY_KNOB_{uuid.uuid4().hex[:12]}",
        ipn_callback_url=receiver.url if receiver else None,
    )


async def arrived(receiver: Receiver, payment_id: str, count: int) -> list[str]:
    """The statuses received for the payment once `count` have arrived (or what came in 5 s)."""
    for _ in range(100):
        if len(receiver.statuses(payment_id)) >= count:
            break
        await asyncio.sleep(0.05)
    return receiver.statuses(payment_id)


# -- API faults -------------------------------------------------------------------------------


async def test_a_rate_fault_fires_on_a_seeded_reproducible_fraction(http: aiohttp.ClientSession) -> None:
    rule = FaultRule(status=503, rate=0.3, count=None, path_prefix="/v1/full-currencies")
    runs = []
    for _ in range(2):
        with fresh_simulator(seed=7, faults=(rule,)) as sim:
            runs.append(await statuses_of_calls(http, sim, 60))
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}
    assert 5 <= runs[0].count(503) <= 35
    with fresh_simulator(seed=8, faults=(rule,)) as sim:
        assert await statuses_of_calls(http, sim, 60) != runs[0]


async def test_reseeding_through_the_control_api_replays_the_draws(http: aiohttp.ClientSession) -> None:
    with fresh_simulator() as sim:
        control = Control(http, sim.url)
        await control.fault(status=500, rate=0.5, path_prefix="/v1/full-currencies")
        listed = (await control.call("GET", "/sim/faults"))["faults"]
        assert listed == [
            {
                "status": 500,
                "delay": 0.0,
                "path_prefix": "/v1/full-currencies",
                "method": None,
                "count": None,
                "rate": 0.5,
                "acted": False,
                "remaining": None,
            }
        ]
        await control.call("POST", "/sim/seed", {"seed": 42})
        first = await statuses_of_calls(http, sim, 30)
        await control.call("POST", "/sim/seed", {"seed": 42})
        assert await statuses_of_calls(http, sim, 30) == first
        assert {200, 500} == set(first)
        await control.clear_faults()
        assert set(await statuses_of_calls(http, sim, 5)) == {200}


async def test_a_count_and_a_rate_together_stop_after_the_count(http: aiohttp.ClientSession) -> None:
    with fresh_simulator(seed=3) as sim:
        control = Control(http, sim.url)
        await control.fault(status=502, rate=0.5, count=3, path_prefix="/v1/full-currencies")
        seen = await statuses_of_calls(http, sim, 40)
        assert seen.count(502) == 3
        assert (await control.call("GET", "/sim/faults"))["faults"] == []


async def test_an_acted_fault_does_the_work_and_answers_an_error(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    await control.fault(status=500, acted=True, path_prefix="/v1/payment", method="POST")
    order_id = f"PAY_KNOB_{uuid.uuid4().hex[:12]}"
    with pytest.raises(GatewayTransientError):
        await client.create_payment(
            price_amount=Decimal("40"), price_currency="usd", pay_currency="btc", order_id=order_id
        )
    assert len(await control.payments_for(order_id)) == 1  # made, though the caller was told 500

    await control.fault(status=500, path_prefix="/v1/payment", method="POST")
    other = f"PAY_KNOB_{uuid.uuid4().hex[:12]}"
    with pytest.raises(GatewayTransientError):
        await client.create_payment(
            price_amount=Decimal("40"), price_currency="usd", pay_currency="btc", order_id=other
        )
    assert await control.payments_for(other) == []  # refused before acting


async def test_a_delay_past_the_callers_timeout_is_a_timeout_on_a_fraction_of_calls() -> None:
    rule = FaultRule(delay=1.0, rate=1.0, count=None, path_prefix="/v1/merchant/coins")
    with fresh_simulator(faults=(rule,)) as sim:
        async with NowPaymentsClient(
            base_url=sim.api_url, api_key=SecretStr(API_KEY), timeout=0.2, backoff_base=0.01, max_attempts=1
        ) as gateway:
            with pytest.raises(GatewayTransientError):
                await gateway.merchant_coins()
            assert await gateway.full_currencies()  # other paths answer at once


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"status": 503, "rate": 0}, '"rate"'),
        ({"status": 503, "rate": 1.5}, '"rate"'),
        ({"status": 503, "rate": "often"}, '"rate"'),
        ({"delay": 1, "acted": True}, '"acted"'),
        ({"status": 503, "acted": "yes"}, '"acted"'),
        ({"status": 200}, '"status"'),
        ({"status": 503, "count": 0}, '"count"'),
        ({"status": 503, "path_prefix": "/sim"}, '"path_prefix"'),
        ({"rate": 0.5}, '"status", a "delay"'),
    ],
)
async def test_bad_fault_specs_are_refused(
    control: Control, http: aiohttp.ClientSession, spec: Any, problem: str
) -> None:
    async with http.post(control.base_url + "/sim/faults", json=spec) as response:
        body = await response.json()
    assert response.status == 400 and problem in body["error"]
    assert (await control.call("GET", "/sim/faults"))["faults"] == []


def test_config_refuses_bad_knobs() -> None:
    with pytest.raises(ValueError, match="rate"):
        FaultRule(status=503, rate=2)
    with pytest.raises(ValueError, match="duplicate_rate"):
        IpnDelivery(duplicate_rate=-0.1)
    with pytest.raises(ValueError, match="delay_seconds"):
        IpnDelivery(delay_seconds=0)
    with pytest.raises(ValueError, match="ipn_secret"):
        SimulatorConfig(ipn_secret="")
    assert "seed=5" in repr(SimulatorConfig(ipn_secret=IPN_SECRET, api_key=API_KEY, seed=5))
    assert IPN_SECRET not in repr(SimulatorConfig(ipn_secret=IPN_SECRET, api_key=API_KEY))


# -- IPN delivery -----------------------------------------------------------------------------


@asynccontextmanager
async def payment_on_own_simulator(receiver: Receiver, **config: Any) -> AsyncIterator[tuple[Control, str]]:
    """A control session on a simulator of the test's own, and a payment there reporting to
    `receiver`."""
    with fresh_simulator(**config) as sim:
        async with (
            aiohttp.ClientSession() as http,
            NowPaymentsClient(base_url=sim.api_url, api_key=SecretStr(API_KEY)) as gateway,
        ):
            payment = await new_payment(gateway, receiver)
            yield Control(http, sim.url), payment.payment_id


async def test_duplicated_callbacks_arrive_twice(receiver: Receiver) -> None:
    async with payment_on_own_simulator(receiver, ipn_delivery=IpnDelivery(duplicate_rate=1.0)) as (control, pid):
        answer = await control.call("POST", f"/sim/payments/{pid}/status", {"status": "confirming"})
        assert answer["ipn"]["ok"] is True
        assert receiver.statuses(pid) == ["confirming", "confirming"]
        log = await control.ipn_log(pid)
        assert [(e["attempt"], e["duplicate"]) for e in log] == [(1, False), (1, True)]
        assert log[0]["body"] == log[1]["body"] and log[0]["signature"] == log[1]["signature"]
    assert receiver.rejected == []


async def test_reordered_callbacks_arrive_swapped_in_pairs(
    client: NowPaymentsClient, control: Control, receiver: Receiver
) -> None:
    payment = await new_payment(client, receiver)
    knobs = await control.call("POST", "/sim/ipn-delivery", {"reorder_rate": 1, "delay_seconds": 0.2})
    assert knobs["reorder_rate"] == 1 and knobs["faithful"] is False
    try:
        played = await control.call("POST", f"/sim/payments/{payment.payment_id}/play", {"scenario": "paid"})
    finally:
        await control.call("DELETE", "/sim/ipn-delivery")
    assert [r["payment_status"] for r in played["ipn"]] == ["confirming", "sending"]
    # waiting is held until confirming has gone, confirmed until sending has; finished, with
    # nothing after it, leaves when delay_seconds are up.
    assert await arrived(receiver, payment.payment_id, 5) == [
        "confirming",
        "waiting",
        "sending",
        "confirmed",
        "finished",
    ]
    assert receiver.rejected == []


async def test_delayed_callbacks_all_arrive_later(receiver: Receiver) -> None:
    knobs = IpnDelivery(delay_rate=1.0, delay_seconds=0.3)
    async with payment_on_own_simulator(receiver, seed=11, ipn_delivery=knobs) as (control, pid):
        played = await control.call("POST", f"/sim/payments/{pid}/play", {"scenario": "paid"})
        assert played["ipn"] == []  # all deferred to the background
        got = await arrived(receiver, pid, 5)
        assert len(await control.ipn_log(pid)) == 5
    assert sorted(got) == sorted(["waiting", "confirming", "confirmed", "sending", "finished"])
    assert receiver.rejected == []


async def test_delivery_knobs_are_read_changed_and_reset(control: Control, http: aiohttp.ClientSession) -> None:
    assert (await control.call("GET", "/sim/ipn-delivery"))["faithful"] is True
    changed = await control.call("POST", "/sim/ipn-delivery", {"duplicate_rate": 0.25, "delay_rate": 0.5})
    assert (changed["duplicate_rate"], changed["delay_rate"], changed["reorder_rate"]) == (0.25, 0.5, 0.0)
    kept = await control.call("POST", "/sim/ipn-delivery", {"delay_seconds": 2})
    assert (kept["duplicate_rate"], kept["delay_seconds"]) == (0.25, 2.0)
    for bad in ({"duplicate_rate": 2}, {"sometimes": 1}, {"delay_seconds": 0}, {"delay_rate": "x"}):
        async with http.post(control.base_url + "/sim/ipn-delivery", json=bad) as response:
            assert response.status == 400 and (await response.json())["error"]
    reset = await control.call("DELETE", "/sim/ipn-delivery")
    assert reset["faithful"] is True
    assert await control.call("GET", "/sim/ipn-delivery") == reset
