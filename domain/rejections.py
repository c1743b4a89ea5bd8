"""A request refused for good: what was refused, why, and when. The answer to that request_id from then on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MAX_REASON_LENGTH = 500


class RequestKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"


@dataclass(frozen=True)
class Rejection:
    kind: RequestKind
    request_id: str
    request_fingerprint: str | None  # None when the refused arguments could not be read
    error: str
    reason: str
    field: str | None
    rejected_at: datetime

    def matches(self, fingerprint: str | None) -> bool:
        """True when ``fingerprint`` names the same arguments this refusal was for."""
        return fingerprint is not None and fingerprint == self.request_fingerprint


def bounded_reason(reason: str) -> str:
    """A reason short enough to keep (the column holds at most MAX_REASON_LENGTH characters)."""
    if len(reason) <= MAX_REASON_LENGTH:
        return reason
    return reason[: MAX_REASON_LENGTH - 1] + "…"
