"""The mass payouts API: POST /v1/payout, GET /v1/payout/{id}, GET /v1/payout (all behind the
payout login's JWT), POST /v1/payout/validate-address and GET /v1/payout/fee (API key only).

A payout with a `unique_external_id` already used is refused (400 DUPLICATE_EXTERNAL_ID)
and nothing is created; a batch is created whole or not at all."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from aiohttp import web

from gateway import wire
from gateway.simulator import params
from gateway.simulator.catalogue import SimCurrency, min_crypto, plain
from gateway.simulator.kinds import PAYOUTS
from gateway.simulator.login import require_bearer
from gateway.simulator.play import auto_advance
from gateway.simulator.responses import ApiError, bad_params, json_response
from gateway.simulator.shapes import payout_wire
from gateway.simulator.state import SimPayout, SimState, now, state_of


def _address_problem(currency: SimCurrency, address: str, extra_id: str | None) -> str | None:
    """Why the gateway would refuse this destination (catalogue wallet/extra_id rules), or None."""
    if "\n" in address or not re.search(currency.wallet_regex, address):
        return f"Invalid payout_address: {currency.code} {address}"
    if extra_id is not None:
        if currency.extra_id_regex is None:
            return f"Currency {currency.code} does not support extra_id"
        if "\n" in extra_id or not re.search(currency.extra_id_regex, extra_id):
            return f"Invalid extra_id: {currency.code} {extra_id}"
    return None


@dataclass(frozen=True, slots=True)
class _WithdrawalRequest:
    currency: SimCurrency
    address: str
    amount: Decimal
    extra_id: str | None
    ipn_callback_url: str | None
    unique_external_id: str | None


def _payout_amount(item: Mapping[str, Any], currency: SimCurrency) -> Decimal:
    amount = params.positive_amount(item.get("amount"), "amount")
    with localcontext() as ctx:
        ctx.prec = 60
        if amount != amount.quantize(currency.quantum):
            raise bad_params(f'"amount" must have at most {currency.precision} decimals')
    return amount


def _withdrawal_request(state: SimState, item: object, seen: set[str]) -> _WithdrawalRequest:
    if not isinstance(item, dict):
        raise bad_params('"withdrawals" items must be objects')
    currency = params.crypto(item.get("currency"), "currency")
    address = params.required_text(item, "address")
    amount = _payout_amount(item, currency)
    extra_id = params.optional_text(item, "extra_id")
    problem = _address_problem(currency, address, extra_id)
    if problem is not None:
        raise ApiError(400, "BAD_CREATE_WITHDRAWAL", problem)
    minimum = min_crypto(currency)
    if amount < minimum:
        message = f"Withdrawal amount is less than minimal {wire.decimal_text(minimum)}"
        raise ApiError(400, "AMOUNT_MINIMAL_ERROR", message)
    callback = params.callback_url(item)
    external_id = params.optional_text(item, "unique_external_id")
    if external_id is not None:
        if external_id in state.payout_by_external_id or external_id in seen:
            message = f'Withdrawal with unique_external_id "{external_id}" already exists'
            raise ApiError(400, "DUPLICATE_EXTERNAL_ID", message)
        seen.add(external_id)
    return _WithdrawalRequest(currency, address, amount, extra_id, callback, external_id)


def _new_payout(state: SimState, batch_id: int, created_at: datetime, wanted: _WithdrawalRequest) -> SimPayout:
    payout = SimPayout(
        payout_id=state.payout_id(),
        batch_id=batch_id,
        status="CREATING",
        address=wanted.address,
        currency=wanted.currency.code,
        amount=wanted.amount,
        extra_id=wanted.extra_id,
        ipn_callback_url=wanted.ipn_callback_url,
        unique_external_id=wanted.unique_external_id,
        created_at=created_at,
    )
    state.payouts[payout.payout_id] = payout
    if payout.unique_external_id is not None:
        state.payout_by_external_id[payout.unique_external_id] = payout.payout_id
    return payout


async def create_payout(request: web.Request) -> web.Response:
    state = state_of(request)
    require_bearer(state, request)
    body = await params.read_json_object(request)
    items = body.get("withdrawals")
    if not isinstance(items, list) or not items:
        raise bad_params('"withdrawals" must be a non-empty array')
    seen: set[str] = set()
    wanted = [_withdrawal_request(state, item, seen) for item in items]  # all valid, or nothing is made
    batch_id, moment = state.batch_id(), now()
    created = [_new_payout(state, batch_id, moment, w) for w in wanted]
    for payout in created:
        auto_advance(state, PAYOUTS, payout, "finished")
    return json_response({"id": str(batch_id), "withdrawals": [payout_wire(p) for p in created]})


async def get_payout(request: web.Request) -> web.Response:
    state = state_of(request)
    require_bearer(state, request)
    raw_id = request.match_info["payout_id"]
    if not raw_id.isdigit():
        raise bad_params('"id" must be a number')
    wanted = int(raw_id)
    single = state.payouts.get(wanted)
    items = [single] if single is not None else [p for p in state.payouts.values() if p.batch_id == wanted]
    if not items:
        raise ApiError(404, "PAYOUT_NOT_FOUND", "Payout not found")
    state.payout_answers += 1
    n = state.payout_answers
    withdrawals = [payout_wire(p, drift=n) for p in items]
    # The gateway answers with the withdrawals as a bare list, or wrapped in their batch.
    if n % 2 == 1:
        return json_response(withdrawals)
    return json_response({"id": str(items[0].batch_id), "withdrawals": withdrawals})


def matching_payouts(state: SimState, query: Mapping[str, str]) -> list[SimPayout]:
    """Payouts matching ?unique_external_id= / ?batch_id= / ?status=, newest first."""
    external_id = query.get("unique_external_id")
    batch_id = query.get("batch_id")
    status = query.get("status")
    return [
        p
        for p in sorted(state.payouts.values(), key=lambda p: (p.created_at, p.payout_id), reverse=True)
        if (external_id is None or p.unique_external_id == external_id)
        and (batch_id is None or str(p.batch_id) == batch_id)
        and (status is None or p.status == status.upper())
    ]


async def list_payouts(request: web.Request) -> web.Response:
    """GET /v1/payout: newest first, paged (limit, page from 0); filters batch_id, status and,
    beyond the real API, unique_external_id."""
    state = state_of(request)
    require_bearer(state, request)
    limit = max(params.page_param(request.query, "limit", 10, 500), 1)
    page = params.page_param(request.query, "page", 0, 1_000_000)
    matching = matching_payouts(state, request.query)[page * limit : (page + 1) * limit]
    state.payout_answers += 1
    return json_response({"payouts": [payout_wire(p, drift=state.payout_answers) for p in matching]})


async def validate_address(request: web.Request) -> web.Response:
    body = await params.read_json_object(request)
    currency = params.crypto(body.get("currency"), "currency")
    address = params.required_text(body, "address")
    problem = _address_problem(currency, address, params.optional_text(body, "extra_id"))
    if problem is not None:
        raise ApiError(400, "BAD_ADDRESS_VALIDATION_REQUEST", problem)
    return web.Response(status=200, text="OK", content_type="text/plain")


async def payout_fee(request: web.Request) -> web.Response:
    currency = params.crypto(request.query.get("currency"), "currency")
    params.positive_amount(request.query.get("amount"), "amount")
    return json_response({"currency": currency.code, "fee": plain(currency.payout_fee)})
