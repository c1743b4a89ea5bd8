"""`payments events replay --since <event id|time>`: send committed events again, from a point on.

The events become pending with fresh attempts and keep their ids (a receiver that still has its
de-duplication record of an id ignores it). The scheduler's sweep enqueues their subjects, and
delivery sends each subject's events in their usual order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from domain.errors import InvalidRequest
from domain.notifications import EVENT_ID_PREFIX
from storage import outbox
from storage.db import transaction


@dataclass(frozen=True)
class ReplayReport:
    events: int
    subjects: int


def parse_since(text: str) -> str | datetime:
    """An event id (``evt_…``) or an ISO 8601 time (UTC when it names no offset)."""
    value = text.strip()
    if value.startswith(EVENT_ID_PREFIX):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{text!r} is neither an event id (evt_…) nor an ISO 8601 time", field="since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def replay_events(pool: asyncpg.Pool, since: str) -> ReplayReport:
    start = parse_since(since)
    async with transaction(pool) as conn:
        if isinstance(start, datetime):
            subjects = await outbox.mark_for_redelivery(conn, since_time=start)
        else:
            subjects = await outbox.mark_for_redelivery(conn, since_event=start)
    return ReplayReport(events=len(subjects), subjects=len(set(subjects)))
