"""The gateway's payment endpoints: POST /v1/payment, GET /v1/payment/{id}, and the payment
list GET /v1/payment/ (behind the payout login's JWT, as the official Node SDK's
`listPayments` calls it)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal, localcontext
from typing import Any

from aiohttp import web

from gateway import wire
from gateway.simulator.catalogue import SimCurrency, plain
from gateway.simulator.kinds import PAYMENTS
from gateway.simulator.login import require_bearer
from gateway.simulator.params import (
    callback_url,
    crypto,
    optional_text,
    page_param,
    positive_amount,
    read_json_object,
    usd_rate,
)
from gateway.simulator.play import auto_advance
from gateway.simulator.responses import ApiError, bad_params, json_response
from gateway.simulator.shapes import created_wire, status_wire
from gateway.simulator.state import SimPayment, SimState, now, state_of
from gateway.simulator.steps import CASES


@dataclass(frozen=True, slots=True)
class _Order:
    """What POST /v1/payment asks for, checked field by field in the gateway's order."""

    price_amount: Decimal
    price_currency: str
    price_rate: Decimal
    currency: SimCurrency
    order_id: str | None
    description: str | None
    callback: str | None
    case: str | None

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> _Order:
        price_amount = positive_amount(body.get("price_amount"), "price_amount")
        price_rate, _ = usd_rate(body.get("price_currency"), "price_currency")
        currency = crypto(body.get("pay_currency"), "pay_currency")
        order_id = optional_text(body, "order_id")
        description = optional_text(body, "order_description")
        callback = callback_url(body)
        case = optional_text(body, "case")
        if case is not None and case not in CASES:
            raise bad_params(f'"case" must be one of {", ".join(CASES)}')
        price_currency = str(body["price_currency"]).lower()
        return cls(price_amount, price_currency, price_rate, currency, order_id, description, callback, case)

    def pay_amount(self) -> Decimal:
        """The crypto amount to pay, refused under the currency's minimum."""
        with localcontext() as ctx:
            ctx.prec = 60
            usd_value = self.price_amount * self.price_rate
            amount = (usd_value / self.currency.usd_rate).quantize(self.currency.quantum, rounding=ROUND_UP)
        if usd_value < self.currency.min_usd:
            message = f"Crypto amount {wire.decimal_text(plain(amount))} is less than minimal"
            raise ApiError(400, "AMOUNT_MINIMAL_ERROR", message)
        return plain(amount)


def _new_payment(state: SimState, order: _Order, pay_amount: Decimal) -> SimPayment:
    payment_id, purchase_id = state.payment_ids()
    moment = now()
    currency = order.currency
    return SimPayment(
        payment_id=payment_id,
        purchase_id=purchase_id,
        status="waiting",
        pay_address=currency.address(),
        payin_extra_id=str(random.randint(100_000_000, 999_999_999)) if currency.extra_id_exists else None,
        price_amount=order.price_amount,
        price_currency=order.price_currency,
        pay_amount=pay_amount,
        pay_currency=currency.code,
        network=currency.network,
        order_id=order.order_id,
        order_description=order.description,
        ipn_callback_url=order.callback,
        case=order.case,
        created_at=moment,
        updated_at=moment,
        expiration_estimate_date=moment + timedelta(seconds=state.config.payment_lifetime_seconds),
    )


async def create_payment(request: web.Request) -> web.Response:
    state = state_of(request)
    order = _Order.read(await read_json_object(request))
    payment = _new_payment(state, order, order.pay_amount())
    state.payments[payment.payment_id] = payment
    auto_advance(state, PAYMENTS, payment, CASES.get(order.case or "success", "paid"))
    return json_response(created_wire(payment), status=201)


async def get_payment(request: web.Request) -> web.Response:
    raw_id = request.match_info["payment_id"]
    if not raw_id.isdigit():
        raise bad_params('"paymentID" must be a number')
    payment = state_of(request).payments.get(int(raw_id))
    if payment is None:
        raise ApiError(404, "PAYMENT_NOT_FOUND", "Payment not found")
    return json_response(status_wire(payment))


# -- the payment list ---------------------------------------------------------------------

_SORT_FIELDS = (
    "payment_id",
    "payment_status",
    "pay_address",
    "price_amount",
    "price_currency",
    "pay_amount",
    "actually_paid",
    "pay_currency",
    "order_id",
    "order_description",
    "purchase_id",
    "outcome_amount",
    "outcome_currency",
    "created_at",
    "updated_at",
)
_LIST_MAX_LIMIT = 500


def _date_bound(query: Mapping[str, str], key: str, *, end: bool) -> datetime | None:
    """`dateFrom`/`dateTo` as YYYY-MM-DD or an ISO date-time; a bare `dateTo` date takes in that
    whole day."""
    raw = (query.get(key) or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_params(f'"{key}" must be a date (YYYY-MM-DD) or an ISO date-time') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(raw) == len("YYYY-MM-DD"):
        moment += timedelta(days=1) - timedelta(microseconds=1)
    return moment


def _sort_key(field_name: str) -> Any:
    attribute = {"payment_status": "status"}.get(field_name, field_name)

    def key(p: SimPayment) -> tuple[bool, Any, int]:
        value = getattr(p, attribute)
        return (value is None, value if value is not None else 0, p.payment_id)

    return key


def _listed(state: SimState, query: Mapping[str, str]) -> list[SimPayment]:
    """Payments created between dateFrom and dateTo, in sortBy/orderBy order."""
    sort_by = query.get("sortBy") or "created_at"
    if sort_by not in _SORT_FIELDS:
        raise bad_params(f'"sortBy" must be one of {", ".join(_SORT_FIELDS)}')
    order_by = (query.get("orderBy") or "asc").lower()
    if order_by not in ("asc", "desc"):
        raise bad_params('"orderBy" must be asc or desc')
    date_from = _date_bound(query, "dateFrom", end=False)
    date_to = _date_bound(query, "dateTo", end=True)
    chosen = [
        p
        for p in state.payments.values()
        if (date_from is None or p.created_at >= date_from) and (date_to is None or p.created_at <= date_to)
    ]
    return sorted(chosen, key=_sort_key(sort_by), reverse=order_by == "desc")


async def list_payments(request: web.Request) -> web.Response:
    """GET /v1/payment/?limit=&page=&sortBy=&orderBy=&dateFrom=&dateTo= (page from 0):
    {"data": [payments shaped like GET /v1/payment/{id}], "limit", "page", "pagesCount", "total"}."""
    state = state_of(request)
    require_bearer(state, request)
    limit = page_param(request.query, "limit", 10, _LIST_MAX_LIMIT, minimum=1)
    page = page_param(request.query, "page", 0, 1_000_000)
    listed = _listed(state, request.query)
    total = len(listed)
    data = [status_wire(p) for p in listed[page * limit : (page + 1) * limit]]
    pages = -(-total // limit)
    return json_response({"data": data, "limit": limit, "page": page, "pagesCount": pages, "total": total})
