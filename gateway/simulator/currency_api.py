"""The gateway's catalogue endpoints: GET /v1/status, /v1/full-currencies, /v1/merchant/coins,
/v1/min-amount and /v1/estimate."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext
from typing import Any

from aiohttp import web

from gateway import wire
from gateway.simulator.catalogue import CATALOGUE, FIAT_USD_RATES, min_crypto, plain
from gateway.simulator.params import crypto, positive_amount, usd_rate
from gateway.simulator.responses import bad_params, json_response
from gateway.simulator.shapes import currency_wire
from gateway.simulator.state import state_of


async def status(request: web.Request) -> web.Response:
    return json_response({"message": "OK"})


async def full_currencies(request: web.Request) -> web.Response:
    items = [currency_wire(i, c) for i, c in enumerate(CATALOGUE.values())]
    return json_response({"currencies": items})


async def merchant_coins(request: web.Request) -> web.Response:
    codes = [c.code.upper() for c in CATALOGUE.values() if c.enabled]
    return json_response({state_of(request).config.merchant_coins_key: codes})


async def min_amount(request: web.Request) -> web.Response:
    query = request.query
    currency = crypto(query.get("currency_from"), "currency_from", enabled_only=False)
    body: dict[str, Any] = {
        "currency_from": currency.code,
        "currency_to": (query.get("currency_to") or currency.code).lower(),
        "min_amount": min_crypto(currency),
    }
    fiat = query.get("fiat_equivalent")
    if fiat:
        rate = FIAT_USD_RATES.get(fiat.lower())
        if rate is None:
            raise bad_params('"fiat_equivalent" is not supported')
        body["fiat_equivalent"] = plain((currency.min_usd / rate).quantize(Decimal("0.01"), rounding=ROUND_UP))
    return json_response(body)


async def estimate(request: web.Request) -> web.Response:
    query = request.query
    amount = positive_amount(query.get("amount"), "amount")
    rate_from, _ = usd_rate(query.get("currency_from"), "currency_from")
    rate_to, precision_to = usd_rate(query.get("currency_to"), "currency_to")
    with localcontext() as ctx:
        ctx.prec = 60
        estimated = (amount * rate_from / rate_to).quantize(Decimal(1).scaleb(-precision_to), rounding=ROUND_DOWN)
    return json_response(
        {
            "currency_from": query["currency_from"].lower(),
            "amount_from": plain(amount),
            "currency_to": query["currency_to"].lower(),
            "estimated_amount": wire.decimal_text(plain(estimated)),  # a string, as the gateway sends it
        }
    )
