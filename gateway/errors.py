"""Errors raised by the NOWPayments adapter.

The split matters to callers: a `GatewayTransientError` may succeed if tried again later,
a `GatewayRejected` will not (the same request gets the same answer), and a
`GatewayProtocolError` means the gateway said something we cannot understand.
None of these ever carries the API key, the IPN secret or any other credential.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: raised when talking to the payment gateway fails."""


class GatewayTransientError(GatewayError):
    """Raised on a network error, timeout, HTTP 5xx or 429, after the client's own retries were used up.

    For a request that creates something (POST /payment) this also covers the ambiguous
    case: the request may have reached the gateway and been acted upon.
    """


DUPLICATE_EXTERNAL_ID = "DUPLICATE_EXTERNAL_ID"
"""`GatewayRejected.code` when a payout's `unique_external_id` is already taken: the payout
exists (or existed) at the gateway; read it back with `find_payout_by_external_id`."""


class GatewayRejected(GatewayError):
    """Raised on a permanent 4xx answer: the gateway understood the request and refused it."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        self.http_status = http_status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {http_status} {code}: {message}")

    def __reduce__(self) -> tuple[type[GatewayRejected], tuple[int, str, str]]:
        return (type(self), (self.http_status, self.code, self.message))


class GatewayConfigurationError(GatewayError):
    """Raised when the client lacks what a call needs (e.g. payout email/password); nothing was sent."""


class GatewayProtocolError(GatewayError):
    """Raised on an answer whose body we cannot parse or which lacks fields we depend on."""


class CallbackRefused(Exception):
    """Base class: raised when an incoming gateway callback (IPN) is refused before anything is applied."""


class CallbacksDisabled(CallbackRefused):
    """Raised when an IPN arrives but no IPN secret is configured to check it with."""


class MalformedCallback(CallbackRefused):
    """Raised when an authentic IPN body is not the payment or payout status it should be."""


class InvalidSignature(CallbackRefused):
    """Raised when an IPN callback fails authentication. `reason` is short and safe to log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self) -> tuple[type[InvalidSignature], tuple[str]]:
        return (type(self), (self.reason,))
