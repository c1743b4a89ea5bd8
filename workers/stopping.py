"""Stopping a worker process the way a platform stops it.

Heroku (and honcho on Ctrl-C) sends SIGTERM to every process of a dyno, sometimes more than once,
and SIGKILLs whatever is left 30 s later. Under the dramatiq CLI a worker process then gets the
signal twice (once from the platform, once forwarded by dramatiq's master), and dramatiq's own
handler treats a second SIGTERM as "exit now": it raises SystemExit in the middle of
``Worker.stop``, so the event-loop thread and the pool are never closed and the process lingers
until the platform kills it. ``guard_stop_signals`` passes only the first signal on.

A stop must also be bounded while gateway calls hang: ``begin_stop`` gives the actors in flight a
grace period, then cancels them. A cancelled actor's message is put back on its queue for another
worker (not acked, not counted as a retry): every stage is safe to run again from any line.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import structlog
from dramatiq.middleware import CurrentMessage, SkipMessage

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# dramatiq's master waits for its worker processes; the platform kills 30 s after the first SIGTERM.
IN_FLIGHT_GRACE_SECONDS = 8.0  # actors still running this long after the stop began are cancelled
HARD_STOP_SECONDS = 22  # a worker process still alive this long after the first SIGTERM is ended (SIGALRM)


class _InFlight:
    """The actor coroutines running on this process's event loop, and the messages to put back."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self._requeue: set[str] = set()
        self._lock = threading.Lock()

    @contextmanager
    def tracked(self) -> Iterator[None]:
        """The current task is in flight (a stop gives it the grace, then cancels it) until the block ends."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self.tasks.discard(task)

    def mark_for_requeue(self, message_id: str) -> None:
        with self._lock:
            self._requeue.add(message_id)

    def take_requeue(self, message_id: str) -> bool:
        """True once for a message an interrupted actor gave back (its consumer requeues instead of acking)."""
        with self._lock:
            if message_id in self._requeue:
                self._requeue.discard(message_id)
                return True
            return False


IN_FLIGHT = _InFlight()


def interruptible(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
    """Wrap an async actor so that a stop can cancel it and its message goes back to the queue."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
        # dramatiq's event-loop thread runs us in a copy of the worker thread's context: the message is visible here.
        message = CurrentMessage.get_current_message()
        try:
            with IN_FLIGHT.tracked():
                return await fn(*args, **kwargs)
        except asyncio.CancelledError:
            if not IN_FLIGHT.stopping or message is None:
                raise
            IN_FLIGHT.mark_for_requeue(message.message_id)
            log.warning(
                "message_requeued_at_shutdown",
                queue=message.queue_name,
                actor=message.actor_name,
                message_id=message.message_id,
            )
            raise SkipMessage("interrupted by shutdown; requeued") from None

    return run


def begin_stop(loop: asyncio.AbstractEventLoop, grace_seconds: float = IN_FLIGHT_GRACE_SECONDS) -> None:
    """From any thread: let the actors in flight finish for ``grace_seconds``, then cancel the rest."""
    IN_FLIGHT.stopping = True

    async def cancel_after_grace() -> None:
        running = set(IN_FLIGHT.tasks)
        if running:
            log.info("worker_stopping", in_flight=len(running), grace_seconds=grace_seconds)
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("worker_stop_cancelled_in_flight", cancelled=len(pending))

    loop.call_soon_threadsafe(lambda: loop.create_task(cancel_after_grace()))


def guard_stop_signals(hard_stop_seconds: int = HARD_STOP_SECONDS) -> None:
    """In a dramatiq worker process: pass the first SIGTERM/SIGHUP to dramatiq's handler, ignore repeats,
    and have the kernel end the process if the stop overruns (the platform would SIGKILL it soon anyway).

    The handler takes no lock: Python runs signal handlers between bytecodes of the main thread, so a
    repeat can land while the main thread (or the first handler) holds a logging lock, and a handler that
    logged through structlog would then wait on that lock forever. Repeats are written to stderr directly,
    and the deadline is SIGALRM with its default action (nothing in this process uses SIGALRM).
    """
    # One token, taken by the first signal. list.pop is one C call: nested handlers cannot both take it.
    first_signal = [True]
    originals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def on_signal(signum: int, frame: Any) -> None:
        try:
            first_signal.pop()
        except IndexError:
            os.write(2, b'{"event": "stop_signal_repeated", "level": "info"}\n')
            return
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(hard_stop_seconds)
        original = originals[signal.Signals(signum)]
        if callable(original) and not _dramatiq_already_stopping(original):
            original(signum, frame)

    for sig in originals:
        signal.signal(sig, on_signal)


def _dramatiq_already_stopping(handler: Any) -> bool:
    """Whether dramatiq's worker-process handler already took a signal (one that came during boot, before
    this guard was installed): calling it again would be its "second signal, exit now". dramatiq 2.2.1
    keeps that state in the handler's closure variable ``running``."""
    code = getattr(handler, "__code__", None)
    cells = dict(zip(code.co_freevars, handler.__closure__ or (), strict=True)) if code else {}
    cell = cells.get("running")
    return cell is not None and cell.cell_contents is False
