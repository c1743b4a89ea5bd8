"""The web process stops once: a platform may send SIGTERM several times (to the whole process group).

aiohttp turns every SIGTERM into ``GracefulExit``; a second one arriving while the first shutdown is
still closing connections and pools breaks that cleanup off (exit status 1), and one arriving after
aiohttp has removed its handlers kills the process outright. So the first signal starts the shutdown
and from then on the process ignores SIGTERM and SIGINT until it exits.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web
from aiohttp.web_runner import GracefulExit

log = structlog.get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def stop_once_on_signals(_: web.Application) -> None:
    """on_startup hook: replace aiohttp's SIGTERM/SIGINT handlers by one that acts on the first signal only."""
    loop = asyncio.get_running_loop()
    stopping = False

    def first(name: str) -> None:
        nonlocal stopping
        if stopping:  # two signals read in one loop turn schedule this twice
            return
        stopping = True
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)  # so that nobody restores the default (fatal) action later
            signal.signal(sig, signal.SIG_IGN)
        log.info("web_stopping", signal=name)
        raise GracefulExit()

    try:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, first, sig.name)
    except (NotImplementedError, RuntimeError):  # not the main thread: whoever runs the loop handles signals
        pass
