"""A bound on how often one kind of warning is logged, so a flood of bad requests cannot flood the log."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogBudget:
    """At most ``burst`` lines per ``period`` seconds; the lines held back are counted into the next one let through."""

    def __init__(self, burst: int = 10, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = burst
        self._period = period
        self._clock = clock
        self._window_start = clock()
        self._spent = 0
        self._held_back = 0

    def spend(self) -> int | None:
        """None when this line must be dropped; otherwise how many were dropped since the last one logged."""
        now = self._clock()
        if now - self._window_start >= self._period:
            self._window_start, self._spent = now, 0
        if self._spent >= self._burst:
            self._held_back += 1
            return None
        self._spent += 1
        held_back, self._held_back = self._held_back, 0
        return held_back
