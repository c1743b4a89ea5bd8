"""What `GET /v1/events?after=<event id>&limit=` answers: committed events after a cursor, in a stable order."""

from __future__ import annotations

from typing import Any

import asyncpg

from storage import outbox

DEFAULT_PAGE = 100


async def read_events(pool: asyncpg.Pool, after: str | None, limit: int = DEFAULT_PAGE) -> dict[str, Any]:
    """A page of event bodies and the cursor to read on from (the same ``after`` when nothing is new).

    A reader that stores ``next_after`` and comes back with it reads every event exactly once, in order,
    however long it was away. An unknown ``after`` is an `InvalidRequest` (400).
    """
    async with pool.acquire() as conn:
        events = await outbox.list_events_after(conn, after, limit)
    return {
        "events": [event.body for event in events],
        "next_after": events[-1].id if events else after,
    }
