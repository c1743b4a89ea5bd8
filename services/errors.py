"""Errors the use cases raise, declared once; `entrypoints/errors.py` maps each to what callers see.

Those built on `InvalidRequest` are permanent (a message failing with one is dead-lettered, never
retried); the two "in progress" errors are neither: expected under duplicate delivery, they say another
holder's lease is live until ``until``. The stage has already made the scheduler come back by then, so
the actors finish the message (no retry spent, nothing dead-lettered) and other callers answer 409.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import InvalidRequest
from domain.rejections import Rejection


class NotFound(InvalidRequest):
    """Raised when a request names a record we do not have."""


class PaymentNotFound(NotFound):
    """Raised when no payment has the payment id or request id asked for."""


class WithdrawalNotFound(NotFound):
    """Raised when no withdrawal has the id asked for, or it belongs to another user."""


class UnknownPayment(NotFound):
    """Raised when the gateway reports on a payment we do not have (or under another order id)."""


class UnknownPayout(NotFound):
    """Raised when the gateway reports on a payout that matches none of our withdrawals."""


class UnknownCurrency(InvalidRequest):
    """Raised when a request names a coin our catalogue lacks, even after one refresh from the gateway."""


class InsufficientFunds(InvalidRequest):
    """Raised when the available balance does not cover a withdrawal's amount."""


class RequestIdReused(InvalidRequest):
    """Raised when a request_id already answers a request with other arguments (a payment, withdrawal or refusal)."""


class RequestAlreadyRefused(InvalidRequest):
    """Raised when a request_id was refused for good earlier: the same refusal is the answer again."""

    def __init__(self, rejection: Rejection) -> None:
        when = rejection.rejected_at.isoformat()
        super().__init__(f"request_id {rejection.request_id!r} was refused at {when}: {rejection.reason}")
        self.rejection = rejection


class LeaseHeld(Exception):
    """Base class: raised when another holder's lease is live until ``until``; the scheduler comes back by then."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class CreationInProgress(LeaseHeld):
    """Raised when another worker holds a payment's creation lease; the scheduler resumes it once it ends."""


class CreationOutcomePending(CreationInProgress):
    """Raised when an earlier attempt's gateway payment is not on the gateway's list yet but might still
    appear there: nothing is created before ``until``, when the scheduler resumes the creation."""


class PayoutInProgress(LeaseHeld):
    """Raised when another attempt holds a withdrawal's payout lease; the scheduler checks it once it ends."""
