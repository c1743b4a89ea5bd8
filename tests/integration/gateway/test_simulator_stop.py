"""Stopping the in-process simulator while a request hangs in it (a "delay" fault longer than the test)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from gateway.simulator import SimulatorConfig, SimulatorServer
from tests.e2e.procs import wait_until
from tests.integration.gateway.conftest import API_KEY, IPN_SECRET


def _post(url: str, body: dict, headers: dict[str, str] | None = None) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        response.read()


def test_stop_ends_the_server_thread_while_a_request_hangs():
    sim = SimulatorServer(SimulatorConfig(ipn_secret=IPN_SECRET, api_key=API_KEY))
    sim.start()
    thread = sim._thread
    assert thread is not None
    _post(sim.url + "/sim/faults", {"path_prefix": "/v1/payment", "method": "POST", "count": 1, "delay": 120})
    outcome: list[BaseException | None] = []

    def hanging_call() -> None:
        try:
            _post(sim.api_url + "/payment", {"price_amount": 10, "price_currency": "usd", "pay_currency": "btc"},
                  {"x-api-key": API_KEY})  # fmt: skip
            outcome.append(None)
        except (OSError, urllib.error.URLError) as exc:
            outcome.append(exc)

    caller = threading.Thread(target=hanging_call, daemon=True)
    caller.start()

    def in_flight() -> bool:
        with urllib.request.urlopen(sim.url + "/sim/requests?path_prefix=/v1/payment", timeout=10) as response:  # noqa: S310
            return any("status" not in r for r in json.loads(response.read())["requests"])

    wait_until(in_flight, timeout=30, what="the payment creation hanging in the simulator")
    sim.stop()
    # stop() returned because the server is gone, not because it gave up waiting on its thread:
    # the hanging handler was cancelled, its caller got an error, and no thread was left behind.
    assert not thread.is_alive(), "the simulator's thread outlived stop()"
    caller.join(timeout=30)
    assert outcome and outcome[0] is not None, outcome
