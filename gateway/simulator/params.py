"""Reading what API callers send: JSON bodies, currencies, amounts, optional texts and page
numbers, refused with the gateway's 400 INVALID_REQUEST_PARAMS and a message naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway import wire
from gateway.simulator.catalogue import CATALOGUE, FIAT_PRECISION, FIAT_USD_RATES, SimCurrency
from gateway.simulator.responses import bad_params

_MAX_AMOUNT = Decimal(10) ** 15


def crypto(code: object, field_name: str, *, enabled_only: bool = True) -> SimCurrency:
    if not isinstance(code, str) or not code.strip():
        raise bad_params(f'"{field_name}" is required')
    currency = CATALOGUE.get(code.strip().lower())
    if currency is None or (enabled_only and not currency.enabled):
        raise bad_params(f'"{field_name}" {code} is not supported')
    return currency


def usd_rate(code: object, field_name: str) -> tuple[Decimal, int]:
    """USD value of one unit of a fiat or crypto currency, and that currency's precision."""
    if not isinstance(code, str) or not code.strip():
        raise bad_params(f'"{field_name}" is required')
    lowered = code.strip().lower()
    if lowered in FIAT_USD_RATES:
        return FIAT_USD_RATES[lowered], FIAT_PRECISION
    currency = crypto(lowered, field_name, enabled_only=False)
    return currency.usd_rate, currency.precision


def positive_amount(value: object, field_name: str) -> Decimal:
    if value is None or value == "":
        raise bad_params(f'"{field_name}" is required')
    amount: Decimal | None = None
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except ArithmeticError:
            amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise bad_params(f'"{field_name}" must be a positive number')
    if amount >= _MAX_AMOUNT:
        raise bad_params(f'"{field_name}" is too large')
    return amount


async def read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = wire.loads(await request.read())
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_params("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise bad_params("body must be a JSON object")
    return body


def optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise bad_params(f'"{key}" must be a string')
    return value


def page_param(query: Mapping[str, str], key: str, default: int, maximum: int, minimum: int = 0) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise bad_params(f'"{key}" must be an integer between {minimum} and {maximum}')
    return int(raw)


def required_text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad_params(f'"{key}" is required')
    return value


def callback_url(body: Mapping[str, Any], key: str = "ipn_callback_url") -> str | None:
    url = optional_text(body, key)
    if url is not None and not url.startswith(("http://", "https://")):
        raise bad_params(f'"{key}" must be a valid uri')
    return url
