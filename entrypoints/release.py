"""The release phase (`payments release`, the Procfile's `release:` line): what a fresh deploy needs.

1. Migrations, under their advisory lock (safe when two releases overlap).
2. The currency catalogue from the gateway. A failed sync keeps an existing catalogue (the release
   goes on, the failure is logged); with no catalogue at all it fails the release, because every
   deposit would then be refused as an unknown currency.

Everything is logged (one JSON object per line with LOG_FORMAT=json); a failure is one line.
"""

from __future__ import annotations

import asyncio

import structlog

from entrypoints.startup import StartupError, open_database
from gateway.errors import GatewayError
from services.context import gateway_from_settings
from services.sync_currencies import sync_currencies
from settings import Settings
from storage.db import create_pool
from storage.migrate import migrate

log = structlog.get_logger(__name__)


class CatalogueUnavailable(Exception):
    """The gateway could not give us its currencies."""


async def _migrate(settings: Settings) -> list[str]:
    conn = await open_database(settings)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _sync_catalogue(settings: Settings) -> None:
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            known = await conn.fetchval("SELECT count(*) FROM currencies")
        try:
            if settings.nowpayments_api_key is None:
                raise CatalogueUnavailable("NOWPAYMENTS_API_KEY is not set")
            async with gateway_from_settings(settings) as gateway:
                synced = await sync_currencies(pool, gateway)
            if not synced:
                raise CatalogueUnavailable("the gateway listed no currencies")
        except (GatewayError, CatalogueUnavailable) as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            if not known:
                raise StartupError(
                    f"release failed: there is no currency catalogue yet and the sync from the gateway failed"
                    f" ({reason}); check NOWPAYMENTS_API_KEY and the gateway (NOWPAYMENTS_SANDBOX,"
                    f" NOWPAYMENTS_BASE_URL), then release again"
                ) from None
            log.warning("release_currencies_sync_failed", kept_currencies=known, reason=reason)
            return
        log.info("release_currencies_synced", count=len(synced), enabled=sum(c.gateway_enabled for c in synced))
    finally:
        await pool.close()


async def run_release(settings: Settings) -> None:
    applied = await _migrate(settings)
    log.info("release_migrated", applied=applied, up_to_date=not applied)
    await _sync_catalogue(settings)
    log.info("release_done")


def release(settings: Settings) -> int:
    asyncio.run(run_release(settings))
    return 0
