"""Withdrawals as the calling system sees them: request (quoted and held at once), read, cancel."""

from __future__ import annotations

from aiohttp import web

from domain.withdrawals import Withdrawal
from entrypoints.web.http import json_body, json_response, path_id, stage_context
from entrypoints.web.presenters import withdrawal_event_view, withdrawal_view
from services.commands import CancelWithdrawalBody, WithdrawalRequest
from services.decide_withdrawal import cancel_withdrawal
from services.errors import WithdrawalNotFound
from services.request_withdrawal import request_withdrawal
from storage import withdrawals


async def withdrawal_answer(request: web.Request, withdrawal: Withdrawal, status: int = 200) -> web.Response:
    """The withdrawal with its events, as every withdrawal route answers it."""
    async with stage_context(request).pool.acquire() as conn:
        events = await withdrawals.list_events(conn, withdrawal.id)
    return json_response({**withdrawal_view(withdrawal), "events": [withdrawal_event_view(e) for e in events]}, status)


async def post_withdrawal(request: web.Request) -> web.Response:
    """Validate, quote and hold at once: 201 with the withdrawal (200 for a replay), or a clear 4xx and nothing held."""
    withdrawal_request = WithdrawalRequest.from_body(await json_body(request))
    result = await request_withdrawal(stage_context(request), withdrawal_request)
    return await withdrawal_answer(request, result.withdrawal, 201 if result.created else 200)


async def get_withdrawal(request: web.Request) -> web.Response:
    async with stage_context(request).pool.acquire() as conn:
        withdrawal = await withdrawals.get_withdrawal(conn, path_id(request, "withdrawal_id"))
    if withdrawal is None:
        raise WithdrawalNotFound("no such withdrawal")
    return await withdrawal_answer(request, withdrawal)


async def post_withdrawal_cancel(request: web.Request) -> web.Response:
    withdrawal_id = path_id(request, "withdrawal_id")
    body = CancelWithdrawalBody.from_body(await json_body(request) if request.can_read_body else {})
    withdrawal = await cancel_withdrawal(
        stage_context(request), withdrawal_id, user_id=body.user_id, note=body.note or ""
    )
    return await withdrawal_answer(request, withdrawal)
