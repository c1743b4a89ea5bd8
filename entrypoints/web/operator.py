"""The operator API: approve, reject or complete a withdrawal by hand."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import json_body, path_id, stage_context
from entrypoints.web.withdrawals import withdrawal_answer
from services.commands import OperatorDecisionBody
from services.decide_withdrawal import approve_withdrawal, complete_withdrawal_manually, reject_withdrawal


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
