"""Withdrawals as the calling system sees them: request (quoted and held at once), read, cancel."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.rejections import RequestKind
from domain.withdrawals import Withdrawal
from entrypoints.web.http import json_body, json_response, path_id, stage_context
from services.commands import CancelWithdrawalBody, WithdrawalRequest
from services.decide_withdrawal import cancel_withdrawal
from services.errors import RequestAlreadyRefused, WithdrawalNotFound
from services.request_withdrawal import request_withdrawal
from services.views import refused_replay_view, rejection_view, withdrawal_detail
from storage import rejections, withdrawals


async def withdrawal_body(
    request: web.Request, withdrawal: Withdrawal, *, refused_replay: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The withdrawal with its events, as every withdrawal route answers it."""
    async with stage_context(request).pool.acquire() as conn:
        events = await withdrawals.list_events(conn, withdrawal.id)
    return withdrawal_detail(withdrawal, events, refused_replay=refused_replay)


async def withdrawal_answer(request: web.Request, withdrawal: Withdrawal, status: int = 200) -> web.Response:
    return json_response(await withdrawal_body(request, withdrawal), status)


async def post_withdrawal(request: web.Request) -> web.Response:
    """Validate, quote and hold at once: 201 with the withdrawal (200 for a replay), or a clear 4xx and nothing held.

    A replay of a request a worker refused is answered with that refusal (200, ``"status": "rejected"``).
    """
    withdrawal_request = WithdrawalRequest.from_body(await json_body(request))
    try:
        result = await request_withdrawal(stage_context(request), withdrawal_request)
    except RequestAlreadyRefused as exc:
        return json_response(rejection_view(exc.rejection))
    return await withdrawal_answer(request, result.withdrawal, 201 if result.created else 200)


async def get_withdrawal_by_request(request: web.Request) -> web.Response:
    """The withdrawal made for this request_id, or the refusal a worker recorded for it."""
    request_id = path_id(request, "request_id")
    async with stage_context(request).pool.acquire() as conn:
        withdrawal = await withdrawals.find_by_request_id(conn, request_id)
        rejection = await rejections.find_rejection(conn, RequestKind.WITHDRAWAL, request_id)
    if withdrawal is None and rejection is None:
        raise WithdrawalNotFound("no withdrawal for this request_id (yet)")
    if withdrawal is None:
        assert rejection is not None
        return json_response(rejection_view(rejection))
    replay = refused_replay_view(rejection) if rejection is not None else None
    return json_response(await withdrawal_body(request, withdrawal, refused_replay=replay))


async def get_withdrawal(request: web.Request) -> web.Response:
    async with stage_context(request).pool.acquire() as conn:
        withdrawal = await withdrawals.get_withdrawal(conn, path_id(request, "withdrawal_id"))
    if withdrawal is None:
        raise WithdrawalNotFound("no such withdrawal")
    return await withdrawal_answer(request, withdrawal)


async def post_withdrawal_cancel(request: web.Request) -> web.Response:
    """The owner cancels while pending: ``user_id`` is required, and someone else's withdrawal is a 404."""
    withdrawal_id = path_id(request, "withdrawal_id")
    body = CancelWithdrawalBody.from_body(await json_body(request) if request.can_read_body else {})
    withdrawal = await cancel_withdrawal(
        stage_context(request), withdrawal_id, user_id=body.user_id, note=body.note or ""
    )
    return await withdrawal_answer(request, withdrawal)
