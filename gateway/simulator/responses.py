"""Answers the simulator gives besides payloads: the gateway's error body (DESIGN.md §6),
JSON answers in the gateway's number spelling, and the control API's plain errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import wire

AUTH_REQUIRED_MESSAGE = "Authorization header is empty (Bearer JWTtoken is required)"


class ApiError(Exception):
    """Raised by an API handler to answer with the gateway's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_params(message: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST_PARAMS", message)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=wire.dumps(body), content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"status": False, "statusCode": status, "code": code, "message": message}, status=status)


def auth_required(message: str = AUTH_REQUIRED_MESSAGE) -> web.Response:
    return error_response(401, "AUTH_REQUIRED", message)


def fault_response(status: int) -> web.Response:
    """The body the gateway gives with an injected error status."""
    if status == 401:
        return auth_required()
    if status == 429:
        return error_response(429, "TOO_MANY_REQUESTS", "Too many requests")
    if status == 503:
        return error_response(503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable")
    if status >= 500:
        return error_response(status, "INTERNAL_ERROR", "Internal server error")
    return error_response(status, f"HTTP_{status}", "Injected fault")


def control_error(status: int, message: str) -> web.Response:
    """An error of the control API (/sim), which is ours, not the gateway's."""
    return json_response({"error": message}, status=status)
