"""What every handler shares: the process's resources on the app, JSON answers, JSON bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import StreamReader, web

from domain.errors import InvalidRequest
from domain.signed_links import QrLinkSigner
from entrypoints.web.log_budget import LogBudget
from services.context import StageContext
from services.validation import MAX_REF_LENGTH
from services.views import qr_path


@dataclass
class WebRuntime:
    """Filled at startup on the server's loop (pool, gateway client, broker), or given by a test."""

    ctx: StageContext | None = None
    health_checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = field(default_factory=list)
    ipn_rejection_log: LogBudget = field(default_factory=LogBudget)
    ready_checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = field(default_factory=list)  # /readyz


MAX_BODY = 256 * 1024

RUNTIME = web.AppKey("runtime", WebRuntime)


def stage_context(request: web.Request) -> StageContext:
    """The use cases' context of the app serving ``request``."""
    ctx = request.app[RUNTIME].ctx
    assert ctx is not None, "web runtime not started"
    return ctx


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one shape of every error answer: ``{"error": code, "message": message}``."""
    return json_response({"error": code, "message": message}, status=status)


def qr_signer(request: web.Request) -> QrLinkSigner | None:
    """The signer of QR links, keyed from API_TOKEN; None when no token is set (then no link is signed)."""
    token = stage_context(request).settings.api_token
    return QrLinkSigner.from_secret(token.get_secret_value()) if token is not None else None


def qr_link_for(request: web.Request, payment_id: str) -> str | None:
    """The signed QR URL of ``payment_id``, relative to the API's base URL."""
    signer = qr_signer(request)
    if signer is None:
        return None
    return f"{qr_path(payment_id)}?{signer.query(payment_id, datetime.now(UTC))}"


def path_id(request: web.Request, name: str) -> str:
    """An id from the URL path, refused unless it could be one of ours (Postgres text cannot hold NUL)."""
    value = request.match_info[name]
    if not 1 <= len(value) <= MAX_REF_LENGTH:
        raise InvalidRequest(f"must be 1 to {MAX_REF_LENGTH} characters", field=name)
    if not value.isprintable():
        raise InvalidRequest("must not contain control characters", field=name)
    return value


async def _read_up_to(stream: StreamReader, limit: int) -> bytes:
    received = bytearray()
    while len(received) < limit:
        chunk = await stream.read(limit - len(received))
        if not chunk:
            break
        received += chunk
    return bytes(received)


async def read_body(request: web.Request, *, limit: int = MAX_BODY) -> bytes:
    """The whole body: 413 beyond ``limit`` bytes, 408 unless it all arrives within WEB_RECEIVE_TIMEOUT."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    timeout = stage_context(request).settings.web_receive_timeout
    try:
        async with asyncio.timeout(timeout):
            body = await _read_up_to(request.content, limit + 1)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {timeout:g} s") from None
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return body


async def json_body(request: web.Request) -> Any:
    """The request's body decoded as JSON, or `InvalidRequest` (also for bodies built to exhaust the parser)."""
    raw = await read_body(request)
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidRequest("body is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("body must be a JSON object") from None
    except ValueError:  # Python refuses integers of more than 4,300 digits
        raise InvalidRequest("body holds a number too long to read") from None
