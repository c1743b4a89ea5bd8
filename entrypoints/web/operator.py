"""The operator API: approve, reject or complete a withdrawal by hand."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import error_response, json_body, path_id, stage_context
from entrypoints.web.withdrawals import withdrawal_answer
from services.commands import OperatorDecisionBody
from services.decide_withdrawal import approve_withdrawal, complete_withdrawal_manually, reject_withdrawal
from services.validation import shown


async def post_operator_decision(request: web.Request) -> web.Response:
    withdrawal_id, action = path_id(request, "withdrawal_id"), request.match_info["action"]
    body = OperatorDecisionBody.from_body(await json_body(request))
    note = body.note or ""
    ctx = stage_context(request)
    if action == "approve":
        withdrawal = await approve_withdrawal(ctx, withdrawal_id, operator=body.operator, note=note)
    elif action == "reject":
        withdrawal = await reject_withdrawal(ctx, withdrawal_id, operator=body.operator, note=note)
    elif action == "complete":
        withdrawal = await complete_withdrawal_manually(
            ctx, withdrawal_id, tx_hash=body.tx_hash or "", operator=body.operator, note=note
        )
    else:
        return error_response(404, "not_found", f"no operator action {shown(action)}")
    return await withdrawal_answer(request, withdrawal)
