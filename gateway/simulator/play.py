"""Playing a scenario: an entity taken through its steps, with an IPN after each, on demand
(the control API) or by itself in the background (auto-advance)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.simulator.ipn import deliver
from gateway.simulator.kinds import E, Kind
from gateway.simulator.state import SimState


async def play(
    state: SimState,
    kind: Kind[E],
    entity: E,
    scenario: str,
    *,
    step_delay: float,
    send_ipn: bool,
    first_delay: bool = False,
) -> list[dict[str, Any]]:
    """Take the entity through a scenario's steps, `step_delay` apart, with an IPN after each;
    answers the IPN records (deferred deliveries have none)."""
    deliveries: list[dict[str, Any]] = []
    for index, step in enumerate(kind.scenarios[scenario]):
        if step_delay > 0 and (index > 0 or first_delay):
            await asyncio.sleep(step_delay)
        kind.apply_step(entity, step)
        if send_ipn:
            record = await deliver(state, kind, entity)
            if record is not None:
                deliveries.append(record)
    return deliveries


def auto_advance(state: SimState, kind: Kind[E], entity: E, scenario: str) -> None:
    """With `auto_advance_seconds`, play a new entity's scenario in the background."""
    seconds = state.config.auto_advance_seconds
    if seconds is not None:
        state.spawn(play(state, kind, entity, scenario, step_delay=seconds, send_ipn=True, first_delay=True))
