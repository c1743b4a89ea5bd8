"""The web process stops once: a platform may send SIGTERM several times (to the whole process group).

aiohttp turns every SIGTERM into ``GracefulExit``; a second one arriving while the first shutdown is
still closing connections and pools breaks that cleanup off and exits with status 1. After the
first signal, later ones are only logged.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web
from aiohttp.web_runner import GracefulExit

log = structlog.get_logger(__name__)


async def stop_once_on_signals(_: web.Application) -> None:
    """on_startup hook: replace aiohttp's SIGTERM/SIGINT handlers by ones that act on the first signal only."""
    loop = asyncio.get_running_loop()

    def repeated(name: str) -> None:
        log.info("stop_signal_repeated", signal=name)

    def first(name: str) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, repeated, sig.name)
        log.info("web_stopping", signal=name)
        raise GracefulExit()

    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, first, sig.name)
    except (NotImplementedError, RuntimeError):  # not the main thread: whoever runs the loop handles signals
        pass
