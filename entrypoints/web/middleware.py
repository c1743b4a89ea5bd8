"""Bearer-token authentication for /v1/ (or a signed link where a route allows one), and the one error
middleware that answers every refusal."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from aiohttp import web
from pydantic import SecretStr

from entrypoints.errors import outcome_for, public_message
from entrypoints.web.http import error_response, qr_signer, stage_context
from entrypoints.web.queries import QrLinkQuery
from entrypoints.web.routes import OPERATOR_PREFIX, Auth, route_of
from settings import SettingsError

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/v1/"


def _bearer_matches(request: web.Request, token: SecretStr | None) -> bool:
    """``Authorization: Bearer <token>``, the scheme in any case (RFC 9110 §11.1)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token is None or scheme.lower() != "bearer" or not given.isascii():
        return False  # a token is ASCII; aiohttp keeps other header bytes as unencodable surrogates
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


@web.middleware
async def require_api_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer tokens, compared in constant time: OPERATOR_TOKEN for /v1/operator/, API_TOKEN for the rest of /v1/."""
    if request.path.startswith(API_PREFIX):
        settings = stage_context(request).settings
        token = settings.operator_token if request.path.startswith(OPERATOR_PREFIX) else settings.api_token
        if not _bearer_matches(request, token) and not _signed_link_opens(request):
            return error_response(401, "unauthorized", "missing or invalid bearer token")
    return await handler(request)


def _signed_link_opens(request: web.Request) -> bool:
    """True for a valid signed link on a route that takes one; raises for a forged or expired one."""
    route = route_of(request)
    if route is None or route.auth is not Auth.API_OR_QR_LINK:
        return False
    link = QrLinkQuery.from_query(request.query)
    if link.expires is None and link.signature is None:
        return False  # no link given: the bearer token was needed
    signer = qr_signer(request)
    if signer is None:
        return False
    signer.verify(request.match_info["payment_id"], link.expires, link.signature, datetime.now(UTC))
    return True


# aiohttp's own refusals (no such route, wrong method, body too large...), in the words of ours.
_FRAMEWORK_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
}


def _framework_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _FRAMEWORK_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    if exc.status == 404:
        message = "no such route"
    elif exc.status == 405:
        message = f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', 'none')}"
    else:
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    response = error_response(exc.status, code, message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    if exc.status == 408:
        response.force_close()  # what is left of the body is never read
    return response


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error listed in `entrypoints.errors.ERRORS`, and aiohttp's own, becomes a JSON answer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _framework_error(request, exc)
    except (Exception, SettingsError) as exc:
        outcome = outcome_for(exc)
        if outcome is None:
            raise
        if outcome.http_status >= 500:
            log.warning("request_failed", path=request.path, code=outcome.code, error=type(exc).__name__)
        return error_response(outcome.http_status, outcome.code, public_message(exc, outcome))
