"""The control API for payments and payouts (/sim/payments, /sim/payouts, not part of
NOWPayments): set a status, play a scenario, look an entity up or list them, and read the
logs of IPN deliveries and API requests. One implementation serves both kinds."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic

from aiohttp import web

from gateway.simulator.control_input import (
    ControlError,
    answers_control_errors,
    control_body,
    number,
    optional_string,
)
from gateway.simulator.ipn import deliver
from gateway.simulator.kinds import PAYMENTS, PAYOUTS, E, Kind
from gateway.simulator.payout_api import matching_payouts
from gateway.simulator.play import play
from gateway.simulator.responses import json_response
from gateway.simulator.state import SimPayment, SimPayout, SimState, state_of
from gateway.simulator.steps import apply_payout_status, apply_status


@dataclass(frozen=True, slots=True)
class _Controlled(Generic[E]):
    kind: Kind[E]
    # POST /sim/{name}s/{id}/status: reads the kind's own fields and applies the status.
    change: Callable[[E, str, Mapping[str, Any]], None]
    listed: Callable[[SimState, Mapping[str, str]], Iterable[E]]  # GET /sim/{name}s?...


def _change_payment(payment: SimPayment, status: str, body: Mapping[str, Any]) -> None:
    paid = None
    if body.get("actually_paid") is not None:
        try:
            paid = Decimal(str(body["actually_paid"]))
        except ArithmeticError:
            raise ControlError('"actually_paid" must be a decimal string') from None
        if not paid.is_finite() or paid < 0:
            raise ControlError('"actually_paid" must be a decimal string')
    apply_status(payment, status.strip(), paid)


def _change_payout(payout: SimPayout, status: str, body: Mapping[str, Any]) -> None:
    error = optional_string(body, "error")
    tx_hash = optional_string(body, "hash")
    apply_payout_status(payout, status, error=error, tx_hash=tx_hash)


def _listed_payments(state: SimState, query: Mapping[str, str]) -> list[SimPayment]:
    order_id = query.get("order_id")
    return [p for p in state.payments.values() if order_id is None or p.order_id == order_id]


def _listed_payouts(state: SimState, query: Mapping[str, str]) -> Iterable[SimPayout]:
    """Every payout (oldest first) matching ?unique_external_id= / ?batch_id= / ?status=."""
    return reversed(matching_payouts(state, query))


_CONTROLLED: tuple[_Controlled[Any], ...] = (
    _Controlled(PAYMENTS, _change_payment, _listed_payments),
    _Controlled(PAYOUTS, _change_payout, _listed_payouts),
)


def _entity(request: web.Request, kind: Kind[E]) -> E:
    raw_id = request.match_info[f"{kind.name}_id"]
    entity = kind.table(state_of(request)).get(int(raw_id)) if raw_id.isdigit() else None
    if entity is None:
        raise ControlError(f"no {kind.name} {raw_id}", status=404)
    return entity


async def _set_status(request: web.Request, controlled: _Controlled[E]) -> web.Response:
    """POST /sim/{kind}s/{id}/status: the kind's `change`, then the IPN unless "send_ipn" is false."""
    kind = controlled.kind
    entity = _entity(request, kind)
    body = await control_body(request)
    status = body.get("status")
    if not isinstance(status, str) or not status.strip():
        raise ControlError('"status" is required')
    controlled.change(entity, status, body)
    record = await deliver(state_of(request), kind, entity) if body.get("send_ipn", True) else None
    return json_response({kind.name: kind.view(entity), "ipn": record})


async def _play(request: web.Request, controlled: _Controlled[E]) -> web.Response:
    """POST /sim/{kind}s/{id}/play: run a scenario now and answer with every IPN sent.

    With a "play_id", a repeated call (a client retrying after a lost answer) does not play the
    scenario again over the first: it waits for the first play and answers as it did.
    """
    kind = controlled.kind
    entity = _entity(request, kind)
    body = await control_body(request)
    scenario = body.get("scenario", kind.default_scenario)
    if scenario not in kind.scenarios:
        raise ControlError(f'"scenario" must be one of {", ".join(kind.scenarios)}')
    step_delay = max(number(body, "step_delay", 0), 0.0)
    send_ipn = bool(body.get("send_ipn", True))
    play_id = optional_string(body, "play_id")
    state = state_of(request)
    key = f"{kind.key(entity)}:{play_id}"
    running = state.plays.get(key) if play_id is not None else None
    if running is None:
        running = asyncio.ensure_future(play(state, kind, entity, scenario, step_delay=step_delay, send_ipn=send_ipn))
        if play_id is not None:
            state.plays[key] = running
    deliveries = await asyncio.shield(running)  # a client that goes away does not stop the play
    return json_response({kind.name: kind.view(entity), "steps": kind.steps(scenario), "ipn": deliveries})


async def _get(request: web.Request, controlled: _Controlled[E]) -> web.Response:
    return json_response(controlled.kind.view(_entity(request, controlled.kind)))


async def _list(request: web.Request, controlled: _Controlled[E]) -> web.Response:
    kind = controlled.kind
    views = [kind.view(e) for e in controlled.listed(state_of(request), request.query)]
    return json_response({f"{kind.name}s": views, "count": len(views)})


async def _ipn_log(request: web.Request) -> web.Response:
    """GET /sim/ipn-log[?payment_id=|?payout_id=]: every POST attempt, oldest first."""
    payment_id = request.query.get("payment_id")
    payout_id = request.query.get("payout_id")
    entries = [
        e
        for e in state_of(request).ipn_log
        if (payment_id is None or e["payment_id"] == payment_id) and (payout_id is None or e["payout_id"] == payout_id)
    ]
    return json_response({"deliveries": entries})


async def _requests(request: web.Request) -> web.Response:
    """GET /sim/requests[?path_prefix=]: the API requests received (the last 10,000)."""
    prefix = request.query.get("path_prefix", "")
    entries = [e for e in state_of(request).requests if e["path"].startswith(prefix)]
    return json_response({"requests": entries})


def add_entity_routes(app: web.Application) -> None:
    """/sim/payments/{payment_id}/status, .../play, /sim/payments/{payment_id}, /sim/payments;
    the same under /sim/payouts; and the logs."""
    for controlled in _CONTROLLED:
        name = controlled.kind.name
        entity = f"/sim/{name}s/{{{name}_id}}"
        for method, path, handler in (
            ("POST", entity + "/status", _set_status),
            ("POST", entity + "/play", _play),
            ("GET", entity, _get),
            ("GET", f"/sim/{name}s", _list),
        ):
            answering = answers_control_errors(handler)
            app.router.add_route(method, path, functools.partial(answering, controlled=controlled))
    app.router.add_get("/sim/ipn-log", _ipn_log)
    app.router.add_get("/sim/requests", _requests)
