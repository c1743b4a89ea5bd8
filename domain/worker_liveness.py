"""When a worker process that stopped heartbeating may be taken for dead.

Silence proves death only over a window in which the process could have been heard: Redis must have
answered (us, and so presumably it) for a whole heartbeat timeout. Right after an outage every live
process's last beat is as old as the outage, and judging then would hand all their messages to others.
"""

from __future__ import annotations


def may_judge_liveness(reachable_since: float | None, now: float, timeout_s: float) -> bool:
    """True once Redis has answered without a break for ``timeout_s`` (``reachable_since``: the first
    answer after the last failure or slow answer, None while unreachable)."""
    return reachable_since is not None and now - reachable_since >= timeout_s


def reachable_since_after(
    previous: float | None,
    *,
    answered: bool,
    started: float,
    finished: float,
    slow_after_s: float,
    up_for_s: float | None = None,
) -> float | None:
    """The start of the unbroken window of Redis answers after one more call (``started``..``finished``).

    A failed call ends the window; an answer slower than ``slow_after_s`` (Redis stalled: processes could
    not beat either) restarts it at ``finished``; a prompt answer extends it, or starts it: at ``started``,
    or ``up_for_s`` earlier when the caller has seen no failure yet and Redis says it has been up that long
    (a scheduler that has just started need not wait a whole timeout on a Redis that never went away).
    """
    if not answered:
        return None
    if finished - started > slow_after_s:
        return finished
    if previous is not None:
        return previous
    return started - up_for_s if up_for_s is not None else started
