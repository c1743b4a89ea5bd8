"""A user's balance and ledger history."""

from __future__ import annotations

from aiohttp import web

from domain.errors import InvalidRequest
from entrypoints.web.http import json_response, path_id, stage_context
from entrypoints.web.presenters import balance_view, history_item_view
from storage import ledger

MAX_PAGE = 100


async def get_balance(request: web.Request) -> web.Response:
    async with stage_context(request).pool.acquire() as conn:
        balance = await ledger.user_balance(conn, path_id(request, "user_id"))
    return json_response(balance_view(balance))


async def get_transactions(request: web.Request) -> web.Response:
    """Newest first, ``limit`` at a time; ``before`` is the ``next_before`` of the previous page."""
    try:
        limit = min(MAX_PAGE, max(1, int(request.query.get("limit", "20"))))
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        raise InvalidRequest("limit and before must be integers") from None
    async with stage_context(request).pool.acquire() as conn:
        items = await ledger.user_history(conn, path_id(request, "user_id"), limit=limit, before_entry_id=before)
    page = [history_item_view(item) for item in items]
    next_before = items[-1].entry_id if len(items) == limit else None
    return json_response({"items": page, "next_before": next_before})
