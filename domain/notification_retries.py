"""When a failed notification is tried again, and when we stop trying.

The schedule is a list of delays in seconds, one per failed attempt; past its end the last delay
repeats (the cap). A share of random jitter spreads retries so a receiver coming back is not hit by
every event at the same second. Delivery stops only after ``give_up_after`` seconds of failures,
counted from the first attempt (an event waiting behind its subject's earlier events does not age).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

JITTER_SHARE = 0.1


def retry_delay(
    failed_attempts: int, schedule: Sequence[float], *, rand: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after the ``failed_attempts``-th failure (1 = the first one).

    ``rand`` is a number in [0, 1) (the caller draws it, so this stays pure): the delay is moved by up to
    ``JITTER_SHARE`` either way. A receiver's ``Retry-After`` is honoured up to the schedule's cap.
    """
    if failed_attempts < 1:
        raise ValueError("failed_attempts counts from 1")
    if not schedule:
        raise ValueError("the retry schedule is empty")
    cap = max(schedule)
    base = schedule[min(failed_attempts, len(schedule)) - 1]
    delay = base * (1 + JITTER_SHARE * (2 * rand - 1))
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return max(0.0, min(delay, cap))


def gives_up(first_attempt_at: datetime, now: datetime, give_up_after: float) -> bool:
    """True once failures have lasted ``give_up_after`` seconds since the first attempt."""
    return now - first_attempt_at >= timedelta(seconds=give_up_after)
