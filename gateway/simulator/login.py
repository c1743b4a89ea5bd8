"""The payout account's sign-in (POST /v1/auth) and the JWTs it issues, which the payout API
and the payment list require as ``Authorization: Bearer``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from aiohttp import web

from gateway import wire
from gateway.simulator.params import read_json_object
from gateway.simulator.responses import AUTH_REQUIRED_MESSAGE, ApiError, bad_params, json_response
from gateway.simulator.state import SimState, state_of


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _issue_jwt(state: SimState) -> str:
    """A JWT-shaped token (HS256 over a random per-simulator key); the simulator remembers it."""
    now = time.time()
    ttl = state.config.jwt_ttl_seconds
    header = _b64url(wire.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"id": "5000000001", "jti": secrets.token_hex(8), "iat": int(now), "exp": int(now + ttl)}
    signing_input = header + "." + _b64url(wire.dumps(claims).encode())
    signature = _b64url(hmac.new(state.jwt_key, signing_input.encode(), hashlib.sha256).digest())
    token = signing_input + "." + signature
    moment = time.monotonic()
    for old in [t for t, expires in state.tokens.items() if expires <= moment]:
        del state.tokens[old]
    state.tokens[token] = moment + ttl
    return token


def require_bearer(state: SimState, request: web.Request) -> None:
    """Refuse (401 AUTH_REQUIRED) a request without a live token from POST /v1/auth."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "AUTH_REQUIRED", AUTH_REQUIRED_MESSAGE)
    expires = state.tokens.get(token)
    if expires is None:
        raise ApiError(401, "AUTH_REQUIRED", "Invalid token")
    if expires <= time.monotonic():
        del state.tokens[token]
        raise ApiError(401, "AUTH_REQUIRED", "jwt expired")


def _same_secret(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def sign_in(request: web.Request) -> web.Response:
    """POST /v1/auth {email, password} → {"token"}."""
    state = state_of(request)
    body = await read_json_object(request)
    email = body.get("email")
    password = body.get("password")
    if not isinstance(email, str) or not email.strip():
        raise bad_params('"email" is required')
    if not isinstance(password, str) or not password:
        raise bad_params('"password" is required')
    # Both compared, always, so the answer time does not tell which one was wrong.
    expected_email = (state.config.payout_email or "").strip().lower() or None
    email_ok = _same_secret(email.strip().lower(), expected_email)
    password_ok = _same_secret(password, state.config.payout_password)
    if not (email_ok and password_ok):
        raise ApiError(403, "INVALID_CREDENTIALS", "Invalid email or password")
    return json_response({"token": _issue_jwt(state)})
