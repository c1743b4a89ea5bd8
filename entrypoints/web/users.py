"""A user's balance and ledger history."""

from __future__ import annotations

import re

from aiohttp import web

from domain.errors import InvalidRequest
from entrypoints.web.http import json_response, path_id, stage_context
from entrypoints.web.presenters import balance_view, history_item_view
from storage import ledger

MAX_PAGE = 100
MAX_ENTRY_ID = 2**63 - 1  # ledger entry ids are Postgres bigint
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _query_integer(request: web.Request, name: str) -> int | None:
    """An integer query parameter small enough for a bigint, or None when absent."""
    text = request.query.get(name)
    if text is None:
        return None
    if not _INTEGER.fullmatch(text):
        raise InvalidRequest("must be an integer", field=name)
    return int(text)


async def get_balance(request: web.Request) -> web.Response:
    async with stage_context(request).pool.acquire() as conn:
        balance = await ledger.user_balance(conn, path_id(request, "user_id"))
    return json_response(balance_view(balance))


async def get_transactions(request: web.Request) -> web.Response:
    """Newest first, ``limit`` at a time; ``before`` is the ``next_before`` of the previous page."""
    asked = _query_integer(request, "limit")
    limit = 20 if asked is None else min(MAX_PAGE, max(1, asked))
    before = _query_integer(request, "before")
    if before is not None and not 1 <= before <= MAX_ENTRY_ID:
        raise InvalidRequest(f"must be between 1 and {MAX_ENTRY_ID}", field="before")
    async with stage_context(request).pool.acquire() as conn:
        items = await ledger.user_history(conn, path_id(request, "user_id"), limit=limit, before_entry_id=before)
    page = [history_item_view(item) for item in items]
    next_before = items[-1].entry_id if len(items) == limit else None
    return json_response({"items": page, "next_before": next_before})
