"""IPN delivery: signs an entity's current state the way NOWPayments does and POSTs it to the
entity's callback; the first attempt is awaited, failed ones are retried in the background.

The state's `IpnDelivery` knobs make callbacks misbehave as real ones do (duplicated, delayed,
swapped with the next one); with every rate at 0 no random draw is made. Every POST attempt
is recorded in `state.ipn_log` (a duplicate is marked ``"duplicate": true``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError

from gateway.signature import canonical_json, sign
from gateway.simulator.kinds import E, Kind
from gateway.simulator.shapes import iso
from gateway.simulator.state import SimState, now

IPN_RETRY_DELAYS = (0.5, 1.0, 2.0)  # after the first attempt; 4 attempts in all


@dataclass(frozen=True, slots=True)
class _Callback:
    url: str
    body: bytes
    signature: str
    subject: Mapping[str, Any]  # {"payment_id": ..., "payment_status": ...} or the payout's


def _record(callback: _Callback, attempt: int, duplicate: bool) -> dict[str, Any]:
    return {
        "url": callback.url,
        "payment_id": None,
        "payout_id": None,
        **callback.subject,
        "attempt": attempt,
        "duplicate": duplicate,
        "status": None,
        "error": None,
        "ok": False,
        "body": callback.body.decode("utf-8"),
        "signature": callback.signature,
        "at": iso(now()),
    }


async def _post(state: SimState, callback: _Callback, attempt: int, *, duplicate: bool = False) -> dict[str, Any]:
    record = _record(callback, attempt, duplicate)
    session = state.http
    if session is None or session.closed:
        record["error"] = "simulator is shutting down"
        state.ipn_log.append(record)
        return record
    try:
        async with session.post(
            callback.url,
            data=callback.body,
            headers={"Content-Type": "application/json", "x-nowpayments-sig": callback.signature},
            allow_redirects=False,
        ) as response:
            await response.read()
            record["status"] = response.status
            record["ok"] = 200 <= response.status < 300
    except (ClientError, TimeoutError, OSError) as exc:
        record["error"] = type(exc).__name__
    state.ipn_log.append(record)
    return record


async def _retry(state: SimState, callback: _Callback) -> None:
    for attempt, delay in enumerate(IPN_RETRY_DELAYS, start=2):
        await asyncio.sleep(delay)
        record = await _post(state, callback, attempt)
        if record["ok"]:
            return


async def _send(state: SimState, callback: _Callback, *, duplicate: bool) -> dict[str, Any]:
    """The first attempt (and, if asked, its duplicate right after); retries in the background."""
    record = await _post(state, callback, 1)
    if duplicate:
        await _post(state, callback, 1, duplicate=True)
    if not record["ok"]:
        state.spawn(_retry(state, callback))
    return record


async def _send_later(state: SimState, callback: _Callback, delay: float, *, duplicate: bool) -> None:
    await asyncio.sleep(delay)
    await _send(state, callback, duplicate=duplicate)


@dataclass(frozen=True, slots=True)
class HeldIpn:
    """A callback held back until the entity's next one has been sent."""

    callback: _Callback
    duplicate: bool


async def _send_if_still_held(state: SimState, key: str, held: HeldIpn) -> None:
    """After `delay_seconds`, send a held callback that no later one has released."""
    await asyncio.sleep(state.ipn_delivery.delay_seconds)
    if state.held_ipns.get(key) is held:
        del state.held_ipns[key]
        await _send(state, held.callback, duplicate=held.duplicate)


def _draw(state: SimState, rate: float) -> bool:
    return rate > 0 and state.ipn_random.random() < rate


def _callback(state: SimState, kind: Kind[E], entity: E, url: str) -> _Callback:
    subject = {f"{kind.name}_id": str(kind.ident(entity)), f"{kind.name}_status": entity.status}
    body = canonical_json(kind.ipn_body(entity)).encode("utf-8")
    return _Callback(url, body, sign(body, state.config.ipn_secret), subject)


async def deliver(state: SimState, kind: Kind[E], entity: E) -> dict[str, Any] | None:
    """Send the entity's current state to its callback. Answers the first attempt's record, or
    None when there is no callback or the delivery knobs deferred it to the background."""
    url = entity.ipn_callback_url
    if not url:
        return None
    callback = _callback(state, kind, entity, url)
    knobs, key = state.ipn_delivery, kind.key(entity)
    held = state.held_ipns.pop(key, None)
    if held is None and _draw(state, knobs.reorder_rate):
        held = state.held_ipns[key] = HeldIpn(callback, _draw(state, knobs.duplicate_rate))
        state.spawn(_send_if_still_held(state, key, held))
        return None
    delayed = held is None and _draw(state, knobs.delay_rate)
    duplicate = _draw(state, knobs.duplicate_rate)
    if delayed:
        delay = state.ipn_random.uniform(0, knobs.delay_seconds)
        state.spawn(_send_later(state, callback, delay, duplicate=duplicate))
        return None
    record = await _send(state, callback, duplicate=duplicate)
    if held is not None:
        await _send(state, held.callback, duplicate=held.duplicate)  # the older news, after the newer
    return record
