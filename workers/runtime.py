"""Per worker process: the event loop for async actors and the resources stages share.

The asyncpg pool and the gateway client are created on dramatiq's event-loop thread after the
fork (never at import). If that fails the process exits at once: dramatiq would otherwise only
log the error and then fail every message it takes.
"""

from __future__ import annotations

import os

import structlog
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware.asyncio import AsyncIO

from services.context import StageContext, gateway_from_settings
from settings import Settings
from storage.db import create_pool
from workers.enqueue import ActorEnqueuer
from workers.stopping import IN_FLIGHT, begin_stop

log = structlog.get_logger(__name__)

BOOT_FAILURE_EXIT_CODE = 3

_context: StageContext | None = None


def current_context() -> StageContext:
    if _context is None:
        raise RuntimeError("the worker runtime has not booted")
    return _context


class StageRuntime(AsyncIO):
    """dramatiq's AsyncIO middleware plus our pool and gateway client on the same loop."""

    def __init__(self, settings: Settings, *, exit_on_boot_failure: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.exit_on_boot_failure = exit_on_boot_failure

    def before_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        IN_FLIGHT.stopping = False  # a process that runs a worker again (tests do) starts it unstopped
        super().before_worker_boot(broker, worker)
        try:
            get_event_loop_thread().run_coroutine(self._open(broker))  # type: ignore[union-attr]
        except BaseException as exc:
            log.critical("worker_boot_failed", error=type(exc).__name__, detail=str(exc)[:300])
            if self.exit_on_boot_failure:
                os._exit(BOOT_FAILURE_EXIT_CODE)
            raise

    def before_worker_shutdown(self, broker, worker):  # type: ignore[no-untyped-def]
        thread = get_event_loop_thread()
        if thread is not None:
            begin_stop(thread.loop)

    def after_worker_shutdown(self, broker, worker):  # type: ignore[no-untyped-def]
        thread = get_event_loop_thread()
        if thread is not None and _context is not None:
            thread.run_coroutine(self._close())
        super().after_worker_shutdown(broker, worker)

    async def _open(self, broker: object) -> None:
        global _context
        settings = self.settings
        settings.require("nowpayments_api_key")
        pool = await create_pool(
            settings.database_url.get_secret_value(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        gateway = gateway_from_settings(settings)
        _context = StageContext(pool=pool, gateway=gateway, settings=settings, enqueue=ActorEnqueuer(broker))
        log.info("worker_runtime_ready", gateway=settings.gateway_base_url)

    async def _close(self) -> None:
        global _context
        context, _context = _context, None
        if context is not None:
            await context.gateway.close()
            await context.pool.close()
