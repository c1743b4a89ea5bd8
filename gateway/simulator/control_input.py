"""Reading the control API's requests (/sim, ours, not the gateway's): a JSON object body and
its fields, refused with ``{"error": ...}`` and HTTP 400 through `ControlError`."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway import wire
from gateway.simulator.responses import control_error

ControlHandler = Callable[..., Awaitable[web.Response]]


class ControlError(Exception):
    """Raised when a control request cannot be done; answered with its status and message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def answers_control_errors(handler: ControlHandler) -> ControlHandler:
    """Wraps a control handler so a `ControlError` it raises becomes its answer."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request, **kwargs: Any) -> web.Response:
        try:
            return await handler(request, **kwargs)
        except ControlError as exc:
            return control_error(exc.status, exc.message)

    return wrapped


async def control_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = wire.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ControlError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


def number(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ControlError(f'"{key}" must be a number')
    try:
        result = float(value)
    except ValueError:
        raise ControlError(f'"{key}" must be a number') from None
    if not math.isfinite(result):
        raise ControlError(f'"{key}" must be a number')
    return result


def optional_string(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f'"{key}" must be a string')
    return value


def optional_int(body: Mapping[str, Any], key: str, default: int | None, problem: str) -> int | None:
    value = body.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ControlError(problem)
    return value
