"""Errors the domain raises. `InvalidRequest` is permanent: retrying the same input cannot succeed."""


class DomainError(Exception):
    """Base class: raised when a rule is broken, detected without any I/O."""


class InvalidRequest(DomainError):
    """Raised when the input itself is wrong (bad amount, unknown field, mismatched replay...).

    Never retried: a message failing with this goes straight to the dead-letter queue.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class InvalidTransition(DomainError):
    """Raised when a state machine is asked to move somewhere it may not go."""


class LinkSignatureInvalid(DomainError):
    """Raised when a signed link's signature is missing, malformed, forged, or was made for another payment."""


class LinkExpired(DomainError):
    """Raised when a signed link is authentic but its expiry has passed."""
