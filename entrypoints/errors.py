"""One table from every error we raise to what each entrypoint says about it.

The web app's error middleware answers with the HTTP status and the code; the CLI prints the
message and exits with the exit code. Lookup walks the exception's MRO, so a subclass maps to
its own row when it has one and to its nearest listed base otherwise: the order of the rows
does not matter. Where a row has a ``public_message``, callers show it instead of the
exception's own text (which may name hosts, URLs or internals that are nobody else's business).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from domain.errors import InvalidRequest, InvalidTransition, LinkExpired, LinkSignatureInvalid
from entrypoints.startup import StartupError
from gateway.errors import (
    CallbacksDisabled,
    GatewayConfigurationError,
    GatewayError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
    InvalidSignature,
    MalformedCallback,
)
from services.errors import (
    InsufficientFunds,
    LeaseHeld,
    NotFound,
    RequestAlreadyRefused,
    RequestIdReused,
    UnknownPayment,
    UnknownPayout,
)
from settings import SettingsError
from workers.dead_letters import DeadLetterNotFound


@dataclass(frozen=True)
class ErrorOutcome:
    http_status: int
    code: str
    exit_code: int
    public_message: str | None = None


EXIT_OK = 0
EXIT_REFUSED = 1  # the request was understood and refused (bad input, not allowed now)
EXIT_USAGE = 2  # the command line or the configuration is wrong
EXIT_UNAVAILABLE = 3  # a service we depend on did not answer; trying again later may work
EXIT_NOT_FOUND = 4

_GATEWAY_DOWN = "NOWPayments did not answer; nothing was changed, try again"
_DATABASE_DOWN = "the database connection was interrupted; try again (repeating the same request is safe)"
_DATABASE_UNAVAILABLE = ErrorOutcome(503, "database_unavailable", EXIT_UNAVAILABLE, _DATABASE_DOWN)

ERRORS: dict[type[BaseException], ErrorOutcome] = {
    InvalidRequest: ErrorOutcome(400, "invalid_request", EXIT_REFUSED),
    InvalidTransition: ErrorOutcome(409, "invalid_transition", EXIT_REFUSED),
    InsufficientFunds: ErrorOutcome(409, "insufficient_funds", EXIT_REFUSED),
    RequestIdReused: ErrorOutcome(409, "request_id_reused", EXIT_REFUSED),
    RequestAlreadyRefused: ErrorOutcome(409, "request_refused", EXIT_REFUSED),
    NotFound: ErrorOutcome(404, "not_found", EXIT_NOT_FOUND),
    UnknownPayment: ErrorOutcome(404, "unknown_payment", EXIT_NOT_FOUND),
    DeadLetterNotFound: ErrorOutcome(404, "not_found", EXIT_NOT_FOUND),
    UnknownPayout: ErrorOutcome(404, "unknown_payout", EXIT_NOT_FOUND),
    LeaseHeld: ErrorOutcome(409, "in_progress", EXIT_UNAVAILABLE),  # CreationInProgress, PayoutInProgress
    InvalidSignature: ErrorOutcome(401, "invalid_signature", EXIT_REFUSED),
    LinkSignatureInvalid: ErrorOutcome(401, "invalid_link_signature", EXIT_REFUSED),
    LinkExpired: ErrorOutcome(403, "link_expired", EXIT_REFUSED),
    MalformedCallback: ErrorOutcome(400, "malformed", EXIT_REFUSED),
    CallbacksDisabled: ErrorOutcome(503, "ipn_disabled", EXIT_USAGE),
    GatewayTransientError: ErrorOutcome(503, "gateway_unavailable", EXIT_UNAVAILABLE, _GATEWAY_DOWN),
    GatewayProtocolError: ErrorOutcome(
        502, "gateway_protocol_error", EXIT_UNAVAILABLE, "NOWPayments answered something we could not understand"
    ),
    GatewayRejected: ErrorOutcome(502, "gateway_rejected", EXIT_REFUSED),
    GatewayConfigurationError: ErrorOutcome(
        503, "gateway_not_configured", EXIT_USAGE, "the payment gateway is not configured for this"
    ),
    GatewayError: ErrorOutcome(502, "gateway_error", EXIT_UNAVAILABLE, "the payment gateway failed"),
    SettingsError: ErrorOutcome(500, "misconfigured", EXIT_USAGE, "the service is misconfigured"),
    # A connection Postgres terminated or lost (the pool discards it), or a server that is not up.
    asyncpg.PostgresConnectionError: _DATABASE_UNAVAILABLE,
    asyncpg.exceptions.AdminShutdownError: _DATABASE_UNAVAILABLE,
    asyncpg.exceptions.CrashShutdownError: _DATABASE_UNAVAILABLE,
    asyncpg.exceptions.CannotConnectNowError: _DATABASE_UNAVAILABLE,
    # "cannot switch to state 15; another operation is in progress": a connection whose protocol
    # was left mid-operation when its server went away.
    asyncpg.InternalClientError: _DATABASE_UNAVAILABLE,
    ConnectionRefusedError: _DATABASE_UNAVAILABLE,
    StartupError: ErrorOutcome(503, "service_unavailable", EXIT_UNAVAILABLE, "a service this process needs is down"),
}


def outcome_for(exc: BaseException) -> ErrorOutcome | None:
    """The row for ``exc``'s nearest listed class, or None for an error nobody declared (a bug: 500)."""
    return outcome_for_type(type(exc))


def outcome_for_type(error: type[BaseException]) -> ErrorOutcome | None:
    """The row for the error class ``error`` (its own, or its nearest listed base's)."""
    for cls in error.__mro__:
        row = ERRORS.get(cls)
        if row is not None:
            return row
    return None


def public_message(exc: BaseException, outcome: ErrorOutcome) -> str:
    """What an entrypoint may show a caller about ``exc``."""
    return outcome.public_message or str(exc)
