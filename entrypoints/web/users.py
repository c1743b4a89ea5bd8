"""A user's balance, ledger history, payments and withdrawals."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import json_response, path_id, qr_link_for, stage_context
from entrypoints.web.queries import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PaymentListQuery,
    TransactionsQuery,
    WithdrawalListQuery,
    decode_cursor,
    encode_cursor,
)
from services.views import balance_view, history_item_view, payment_view, withdrawal_view
from storage import ledger, payments, withdrawals


async def get_balance(request: web.Request) -> web.Response:
    async with stage_context(request).pool.acquire() as conn:
        balance = await ledger.user_balance(conn, path_id(request, "user_id"))
    return json_response(balance_view(balance))


async def get_transactions(request: web.Request) -> web.Response:
    """Newest first, ``limit`` at a time; ``before`` is the ``next_before`` of the previous page."""
    query = TransactionsQuery.from_query(request.query)
    limit = DEFAULT_PAGE if query.limit is None else min(MAX_PAGE, max(1, query.limit))
    user_id = path_id(request, "user_id")
    async with stage_context(request).pool.acquire() as conn:
        items = await ledger.user_history(conn, user_id, limit=limit, before_entry_id=query.before)
    page = [history_item_view(item) for item in items]
    next_before = items[-1].entry_id if len(items) == limit else None
    return json_response({"items": page, "next_before": next_before})


async def get_user_payments(request: web.Request) -> web.Response:
    """The user's payments, newest first, a page at a time (``next`` is the following page's cursor)."""
    user_id = path_id(request, "user_id")
    query = PaymentListQuery.from_query(request.query)
    async with stage_context(request).pool.acquire() as conn:
        page = await payments.list_for_user(
            conn, user_id, status=query.status, limit=query.limit, after=decode_cursor(query.cursor)
        )
    items = [payment_view(p, qr_code_url=qr_link_for(request, p.id)) for p in page.items]
    return json_response({"items": items, "next": encode_cursor(page.next)})


async def get_user_withdrawals(request: web.Request) -> web.Response:
    """The user's withdrawals, newest first, a page at a time (each without its events)."""
    user_id = path_id(request, "user_id")
    query = WithdrawalListQuery.from_query(request.query)
    async with stage_context(request).pool.acquire() as conn:
        page = await withdrawals.list_page(
            conn, user_id=user_id, status=query.status, limit=query.limit, after=decode_cursor(query.cursor)
        )
    return json_response({"items": [withdrawal_view(w) for w in page.items], "next": encode_cursor(page.next)})
