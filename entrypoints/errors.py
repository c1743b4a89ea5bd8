"""One table from every error we raise to what each entrypoint says about it.

The web app's error middleware answers with the HTTP status and the code; the CLI prints the
message and exits with the exit code. Lookup walks the exception's MRO, so a subclass maps to
its own row when it has one and to its nearest listed base otherwise: the order of the rows
does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import InvalidRequest, InvalidTransition
from gateway.errors import (
    GatewayConfigurationError,
    GatewayError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
    InvalidSignature,
)
from services.apply_status import UnknownPayment
from services.decide_withdrawal import WithdrawalNotFound
from services.request_withdrawal import InsufficientFunds
from settings import SettingsError
from workers.dead_letters import DeadLetterNotFound


@dataclass(frozen=True)
class ErrorOutcome:
    http_status: int
    code: str
    exit_code: int


EXIT_OK = 0
EXIT_REFUSED = 1  # the request was understood and refused (bad input, not allowed now)
EXIT_USAGE = 2  # the command line or the configuration is wrong
EXIT_UNAVAILABLE = 3  # a service we depend on did not answer; trying again later may work
EXIT_NOT_FOUND = 4

ERRORS: dict[type[BaseException], ErrorOutcome] = {
    InvalidRequest: ErrorOutcome(400, "invalid_request", EXIT_REFUSED),
    InvalidTransition: ErrorOutcome(409, "invalid_transition", EXIT_REFUSED),
    InsufficientFunds: ErrorOutcome(409, "insufficient_funds", EXIT_REFUSED),
    WithdrawalNotFound: ErrorOutcome(404, "not_found", EXIT_NOT_FOUND),
    UnknownPayment: ErrorOutcome(404, "unknown_payment", EXIT_NOT_FOUND),
    DeadLetterNotFound: ErrorOutcome(404, "not_found", EXIT_NOT_FOUND),
    InvalidSignature: ErrorOutcome(401, "invalid_signature", EXIT_REFUSED),
    GatewayTransientError: ErrorOutcome(503, "gateway_unavailable", EXIT_UNAVAILABLE),
    GatewayProtocolError: ErrorOutcome(502, "gateway_protocol_error", EXIT_UNAVAILABLE),
    GatewayRejected: ErrorOutcome(502, "gateway_rejected", EXIT_REFUSED),
    GatewayConfigurationError: ErrorOutcome(503, "gateway_not_configured", EXIT_USAGE),
    GatewayError: ErrorOutcome(502, "gateway_error", EXIT_UNAVAILABLE),
    SettingsError: ErrorOutcome(500, "misconfigured", EXIT_USAGE),
}


def outcome_for(exc: BaseException) -> ErrorOutcome | None:
    """The row for ``exc``'s nearest listed class, or None for an error nobody declared (a bug: 500)."""
    for cls in type(exc).__mro__:
        row = ERRORS.get(cls)
        if row is not None:
            return row
    return None
