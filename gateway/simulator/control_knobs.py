"""The control API's knobs for misbehaviour (not part of NOWPayments): API faults
(/sim/faults), IPN delivery (/sim/ipn-delivery) and the seed of their random draws (/sim/seed)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.simulator.config import FaultRule, IpnDelivery
from gateway.simulator.control_input import (
    ControlError,
    answers_control_errors,
    control_body,
    number,
    optional_int,
    optional_string,
)
from gateway.simulator.responses import json_response
from gateway.simulator.state import ArmedFault, state_of


def _fault_rule(body: dict[str, Any]) -> FaultRule:
    """A rule from a POST /sim/faults body. Without "count" or "rate" it fires once; with only
    "rate" it fires on that fraction of matching requests until cleared."""
    status = optional_int(body, "status", None, '"status" must be an HTTP error status')
    rate = number(body, "rate", 1.0)
    count = optional_int(body, "count", None if "rate" in body else 1, '"count" must be a positive integer')
    prefix = body.get("path_prefix", "/v1/")
    if not isinstance(prefix, str):
        raise ControlError('"path_prefix" must start with /v1')
    method = optional_string(body, "method")
    acted = body.get("acted", False)
    if not isinstance(acted, bool):
        raise ControlError('"acted" must be true or false')
    delay = max(number(body, "delay", 0), 0.0)
    try:
        return FaultRule(status, delay, prefix, method.upper() if method else None, count, rate, acted)
    except ValueError as exc:
        raise ControlError(str(exc)) from None


def _as_json(fields: dict[str, Any]) -> dict[str, Any]:
    """Floats as the Decimals they print as (gateway JSON writes no floats)."""
    return {k: Decimal(repr(v)) if isinstance(v, float) else v for k, v in fields.items()}


def _fault_view(armed: ArmedFault) -> dict[str, Any]:
    return _as_json({**dataclasses.asdict(armed.rule), "remaining": armed.remaining})


@answers_control_errors
async def _add_fault(request: web.Request) -> web.Response:
    rule = _fault_rule(await control_body(request))
    state = state_of(request)
    state.faults.append(ArmedFault.arm(rule))
    return json_response({"faults": len(state.faults)})


async def _list_faults(request: web.Request) -> web.Response:
    return json_response({"faults": [_fault_view(armed) for armed in state_of(request).faults]})


async def _clear_faults(request: web.Request) -> web.Response:
    state_of(request).faults.clear()
    return json_response({"faults": 0})


def _delivery_view(delivery: IpnDelivery) -> dict[str, Any]:
    return _as_json({**dataclasses.asdict(delivery), "faithful": delivery.faithful})


@answers_control_errors
async def _set_delivery(request: web.Request) -> web.Response:
    """POST /sim/ipn-delivery: change the given knobs, keep the others."""
    body = await control_body(request)
    state = state_of(request)
    known = {f.name for f in dataclasses.fields(IpnDelivery)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError(f"unknown knobs: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    changes = {key: number(body, key, 0) for key in body}
    try:
        state.ipn_delivery = dataclasses.replace(state.ipn_delivery, **changes)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return json_response(_delivery_view(state.ipn_delivery))


async def _get_delivery(request: web.Request) -> web.Response:
    return json_response(_delivery_view(state_of(request).ipn_delivery))


async def _faithful_delivery(request: web.Request) -> web.Response:
    state = state_of(request)
    state.ipn_delivery = IpnDelivery()
    return json_response(_delivery_view(state.ipn_delivery))


@answers_control_errors
async def _reseed(request: web.Request) -> web.Response:
    """POST /sim/seed {"seed": n}: restart the fault and IPN-delivery draws from `n`."""
    seed = optional_int(await control_body(request), "seed", None, '"seed" must be an integer')
    if seed is None:
        raise ControlError('"seed" is required')
    state_of(request).reseed(seed)
    return json_response({"seed": seed})


def add_knob_routes(app: web.Application) -> None:
    app.router.add_post("/sim/faults", _add_fault)
    app.router.add_get("/sim/faults", _list_faults)
    app.router.add_delete("/sim/faults", _clear_faults)
    app.router.add_post("/sim/ipn-delivery", _set_delivery)
    app.router.add_get("/sim/ipn-delivery", _get_delivery)
    app.router.add_delete("/sim/ipn-delivery", _faithful_delivery)
    app.router.add_post("/sim/seed", _reseed)
