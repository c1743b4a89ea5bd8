"""Refresh the currency catalogue when a request names a coin we do not know, at most once a minute.

A fresh deploy, or a coin the merchant switched on at the gateway since the last sync, must not turn
valid deposits into dead letters; a flood of requests for a coin that does not exist must not turn
into a flood of gateway calls either. So, per process, refreshes are serialised and spaced by
``REFRESH_INTERVAL_SECONDS``, and none is made while the stored catalogue is that fresh (another
process just refreshed it). The sync itself is an idempotent upsert.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from gateway.client import NowPaymentsClient
from gateway.errors import GatewayError, GatewayTransientError
from services.sync_currencies import sync_currencies
from storage import currencies

log = structlog.get_logger(__name__)

REFRESH_INTERVAL_SECONDS = 60.0


class CatalogueRefresher:
    def __init__(self, interval_seconds: float = REFRESH_INTERVAL_SECONDS) -> None:
        self.interval = interval_seconds
        self._lock: asyncio.Lock | None = None
        self._last_attempt: float | None = None
        self._last_error: GatewayError | None = None

    async def refresh_for(self, pool: asyncpg.Pool, gateway: NowPaymentsClient, code: str) -> bool:
        """Refresh unless that was just done; True if this call synced.

        Raises ``GatewayTransientError`` while the latest attempt failed, so the caller retries later
        rather than refusing a coin the gateway may well know.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._last_attempt is not None and time.monotonic() - self._last_attempt < self.interval:
                self._raise_if_failed(code)
                return False
            async with pool.acquire() as conn:
                synced_at = await currencies.last_synced_at(conn)
            if synced_at is not None and datetime.now(UTC) - synced_at < timedelta(seconds=self.interval):
                return False
            self._last_attempt = time.monotonic()
            try:
                await sync_currencies(pool, gateway)
            except GatewayError as exc:
                self._last_error = exc
                log.warning("currency_catalogue_refresh_failed", currency=code, error=type(exc).__name__)
                self._raise_if_failed(code)
            self._last_error = None
            log.info("currency_catalogue_refreshed", reason=f"unknown currency {code!r}")
            return True

    def _raise_if_failed(self, code: str) -> None:
        if self._last_error is not None:
            raise GatewayTransientError(
                f"currency {code!r} is unknown and the catalogue could not be refreshed "
                f"({type(self._last_error).__name__}); will retry"
            ) from self._last_error
