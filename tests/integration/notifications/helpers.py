"""Writing events the way a stage does (inside its own transaction) and settings for delivery tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.read_events import read_events
from settings import Settings, load_settings
from storage import outbox
from storage.db import transaction
from tests.conftest import REDIS_URL
from tests.integration.stack import eventually


def deposit_view(payment_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"internal_payment_id": payment_id, "status": status, "amount_usd": "25.00", **extra}


async def write_event(
    pool: asyncpg.Pool, event_type: str, view: dict[str, Any], *, dedupe_key: str | None = None
) -> str | None:
    async with transaction(pool) as conn:
        return await outbox.add_event(conn, event_type, view, now=datetime.now(UTC), dedupe_key=dedupe_key)


async def write_story(pool: asyncpg.Pool, payment_id: str) -> list[str]:
    """A deposit's life as four events, in order; returns their ids."""
    ids = []
    for event_type, status in (
        ("deposit.pending", "pending"),
        ("deposit.confirming", "confirming"),
        ("deposit.completed", "completed"),
        ("deposit.credited", "completed"),
    ):
        event_id = await write_event(pool, event_type, deposit_view(payment_id, status))
        assert event_id is not None
        ids.append(event_id)
    return ids


async def visible_ids(pool: asyncpg.Pool, after: str | None, count: int) -> list[str]:
    """Wait until ``count`` events after ``after`` are readable (any write transaction running anywhere on
    the server holds readers back a moment), then return their ids in read order."""

    async def check() -> list[str] | None:
        ids = [event["id"] for event in (await read_events(pool, after, limit=1000))["events"]]
        return ids if len(ids) >= count else None

    return await eventually(check, timeout=60)


def delivery_settings(database_url: str, receiver_url: str, secret: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "nowpayments_api_key": "unused-by-delivery",
        "notify_webhook_url": receiver_url,
        "notify_webhook_secret": secret,
        "notify_webhook_timeout": 5.0,
        "notify_lease_seconds": 6.0,
        "notify_retry_schedule": [0.05, 0.1, 0.2],
        "notify_give_up_after": 600.0,
        "notify_requeue_after": 1.0,
        "payments_scheduler_tick": 0.05,
        "log_format": "console",
    }
    values.update(overrides)
    return load_settings(**values)
