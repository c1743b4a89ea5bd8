"""Injected misbehaviour of the API: the armed `FaultRule`s decide, request by request, whether
the simulator answers late, answers an error instead of acting, or acts and then answers an
error. Rate draws come from the state's seeded fault generator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.simulator.config import FaultRule
from gateway.simulator.responses import fault_response
from gateway.simulator.state import ArmedFault, SimState


def _matches(rule: FaultRule, request: web.Request) -> bool:
    return request.path.startswith(rule.path_prefix) and (rule.method is None or rule.method == request.method)


def _fires(state: SimState, armed: ArmedFault) -> bool:
    if armed.rule.rate < 1 and state.fault_random.random() >= armed.rule.rate:
        return False
    if armed.remaining is not None:
        armed.remaining -= 1
    return True


def firing(state: SimState, request: web.Request) -> FaultRule | None:
    """The first armed rule that matches this request and fires on it (spending one of its
    count), or None; spent rules are disarmed."""
    chosen = None
    for armed in state.faults:
        if not armed.spent and _matches(armed.rule, request) and _fires(state, armed):
            chosen = armed.rule
            break
    state.faults[:] = [armed for armed in state.faults if not armed.spent]
    return chosen


async def serve_with_faults(
    state: SimState, request: web.Request, answer: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """`answer()` the request, unless a fault rule fires on it and says otherwise."""
    rule = firing(state, request)
    if rule is None:
        return await answer()
    if rule.delay:
        # Take the whole request first: a slow gateway has received it and will act on it even
        # if the caller gives up waiting (the ambiguous timeout).
        await request.read()
        await asyncio.sleep(rule.delay)
    if rule.status is None:
        return await answer()  # a pure delay: answer normally, late
    if rule.acted:
        await answer()
    return fault_response(rule.status)
