"""Bearer-token authentication for /v1/, and the one error middleware that answers every refusal."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from pydantic import SecretStr

from entrypoints.errors import outcome_for, public_message
from entrypoints.web.http import error_response, stage_context
from settings import SettingsError

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/v1/"
OPERATOR_PREFIX = "/v1/operator/"


def _bearer_matches(request: web.Request, token: SecretStr | None) -> bool:
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").encode() if header.startswith("Bearer ") else b""
    return token is not None and hmac.compare_digest(given, token.get_secret_value().encode())


@web.middleware
async def require_api_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer tokens, compared in constant time: OPERATOR_TOKEN for /v1/operator/, API_TOKEN for the rest of /v1/."""
    if request.path.startswith(API_PREFIX):
        settings = stage_context(request).settings
        token = settings.operator_token if request.path.startswith(OPERATOR_PREFIX) else settings.api_token
        if not _bearer_matches(request, token):
            return error_response(401, "unauthorized", "missing or invalid bearer token")
    return await handler(request)


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error listed in `entrypoints.errors.ERRORS` becomes its JSON answer; anything else is a bug."""
    try:
        return await handler(request)
    except (Exception, SettingsError) as exc:
        outcome = outcome_for(exc)
        if outcome is None:
            raise
        if outcome.http_status >= 500:
            log.warning("request_failed", path=request.path, code=outcome.code, error=type(exc).__name__)
        return error_response(outcome.http_status, outcome.code, public_message(exc, outcome))
