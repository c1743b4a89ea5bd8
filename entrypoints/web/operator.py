"""The operator API: approve, reject or complete a withdrawal by hand; list withdrawals and held deposits."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import json_body, json_response, path_id, qr_link_for, stage_context
from entrypoints.web.queries import PageQuery, WithdrawalListQuery, decode_cursor, encode_cursor
from entrypoints.web.withdrawals import withdrawal_answer
from services.commands import OperatorDecisionBody
from services.decide_withdrawal import approve_withdrawal, complete_withdrawal_manually, reject_withdrawal
from services.views import payment_view, withdrawal_view
from storage import payments, withdrawals


async def _decision(request: web.Request) -> tuple[str, OperatorDecisionBody]:
    withdrawal_id = path_id(request, "withdrawal_id")
    return withdrawal_id, OperatorDecisionBody.from_body(await json_body(request))


async def post_approve(request: web.Request) -> web.Response:
    withdrawal_id, body = await _decision(request)
    withdrawal = await approve_withdrawal(
        stage_context(request), withdrawal_id, operator=body.operator, note=body.note or ""
    )
    return await withdrawal_answer(request, withdrawal)


async def post_reject(request: web.Request) -> web.Response:
    withdrawal_id, body = await _decision(request)
    withdrawal = await reject_withdrawal(
        stage_context(request), withdrawal_id, operator=body.operator, note=body.note or ""
    )
    return await withdrawal_answer(request, withdrawal)


async def post_complete(request: web.Request) -> web.Response:
    """The operator paid by hand: record the transaction hash and post the hold."""
    withdrawal_id, body = await _decision(request)
    withdrawal = await complete_withdrawal_manually(
        stage_context(request), withdrawal_id, tx_hash=body.tx_hash or "", operator=body.operator, note=body.note or ""
    )
    return await withdrawal_answer(request, withdrawal)


async def get_withdrawals(request: web.Request) -> web.Response:
    """Every user's withdrawals, newest first, optionally of one status (e.g. ``pending``: what awaits a decision)."""
    query = WithdrawalListQuery.from_query(request.query)
    async with stage_context(request).pool.acquire() as conn:
        page = await withdrawals.list_page(
            conn, user_id=None, status=query.status, limit=query.limit, after=decode_cursor(query.cursor)
        )
    return json_response({"items": [withdrawal_view(w) for w in page.items], "next": encode_cursor(page.next)})


async def get_held_deposits(request: web.Request) -> web.Response:
    """Deposits held for an operator (variance, late funds, refunds after a credit), oldest first."""
    query = PageQuery.from_query(request.query)
    async with stage_context(request).pool.acquire() as conn:
        page = await payments.list_held_page(conn, limit=query.limit, after=decode_cursor(query.cursor))
    items = [payment_view(p, qr_code_url=qr_link_for(request, p.id)) for p in page.items]
    return json_response({"items": items, "next": encode_cursor(page.next)})
