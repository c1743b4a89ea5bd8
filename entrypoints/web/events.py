"""`GET /v1/events`: every announced event after a cursor, for a system that missed some."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import json_response, stage_context
from entrypoints.web.queries import EventsQuery
from services.answers import EventPage
from services.read_events import read_events


async def get_events(request: web.Request) -> web.Response:
    """Events in the order they committed; store ``next_after`` and come back with it to miss nothing."""
    query = EventsQuery.from_query(request.query)
    page = await read_events(stage_context(request).pool, query.after, query.limit)
    return json_response(EventPage.model_validate(page).model_dump(mode="json"))
