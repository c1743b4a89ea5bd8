"""A local NOWPayments simulator: the offline sandbox for tests and the demo.

It speaks the parts of the REST API our client uses (DESIGN.md §6) with the same shapes,
error bodies and type drift, signs IPN callbacks the way NOWPayments does, and adds a
small control API under ``/sim`` (not part of NOWPayments) to drive payments through
their statuses, inject faults and inspect what happened. State is in memory.

Control API (no key):
  POST /sim/payments/{id}/status  {"status", "actually_paid"?, "send_ipn"?: true}
  POST /sim/payments/{id}/play    {"scenario": paid|partial|over|late|failed|expired,
                                   "send_ipn"?: true, "step_delay"?: 0}
  GET  /sim/payments/{id}         GET /sim/payments?order_id=...
  POST /sim/faults {"status"?: 500, "count": n, "path_prefix": "/v1/payment",
                    "method"?: "POST", "delay"?: seconds}     DELETE /sim/faults
  GET  /sim/ipn-log[?payment_id=|?payout_id=]  GET /sim/requests[?path_prefix=]

Payouts (mass payouts API): POST /v1/auth {email, password} gives a JWT valid for
`jwt_ttl_seconds` (default 300); POST /v1/payout, GET /v1/payout/{id} and GET /v1/payout
need it as ``Authorization: Bearer`` besides the API key (401 AUTH_REQUIRED when missing or
expired); /v1/payout/validate-address and /v1/payout/fee need only the key. A second payout
with a `unique_external_id` already used is refused (400 DUPLICATE_EXTERNAL_ID) and nothing
is created. Payouts start CREATING and move WAITING → PROCESSING → SENDING → FINISHED, or
end FAILED/REJECTED; IPNs for them are signed like payment IPNs, with the withdrawal
object as body. Control API for payouts:
  POST /sim/payouts/{id}/status  {"status", "send_ipn"?: true, "error"?, "hash"?}
  POST /sim/payouts/{id}/play    {"scenario": finished|failed|rejected, "send_ipn"?: true,
                                  "step_delay"?: 0}
  GET  /sim/payouts/{id}         GET /sim/payouts[?unique_external_id=][&batch_id=][&status=]
                                 (oldest first, with "count": proves a payout was made once)
With `auto_advance_seconds`, new payouts play "finished" by themselves. Faults match payout
paths like any other ("path_prefix": "/v1/payout"); an injected 401 answers AUTH_REQUIRED.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from gateway import wire
from gateway.signature import canonical_json, sign

log = logging.getLogger(__name__)

GATEWAY_STATUSES = (
    "waiting",
    "confirming",
    "confirmed",
    "sending",
    "partially_paid",
    "finished",
    "failed",
    "refunded",
    "expired",
)
PAYMENT_LIFETIME = timedelta(minutes=20)
SERVICE_FEE = Decimal("0.005")
IPN_RETRY_DELAYS = (0.5, 1.0, 2.0)  # after the first attempt; 4 attempts in all
IPN_TIMEOUT = 5.0
JWT_TTL_SECONDS = 300.0
PAYOUT_STATUSES = ("CREATING", "WAITING", "PROCESSING", "SENDING", "FINISHED", "FAILED", "REJECTED")
PAYOUT_SCENARIOS: Mapping[str, tuple[str, ...]] = {
    "finished": ("WAITING", "PROCESSING", "SENDING", "FINISHED"),
    "failed": ("WAITING", "PROCESSING", "FAILED"),
    "rejected": ("REJECTED",),
}
_MAX_AMOUNT = Decimal(10) ** 15

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_HEX = "0123456789abcdef"


def _rand(alphabet: str, length: int) -> str:
    return "".join(random.choice(alphabet) for _ in range(length))


@dataclass(frozen=True, slots=True)
class SimCurrency:
    code: str
    name: str
    network: str
    precision: int
    usd_rate: Decimal
    min_usd: Decimal
    wallet_regex: str
    address: Callable[[], str]
    enabled: bool = True
    extra_id_regex: str | None = None
    smart_contract: str | None = None
    tx_hash: Callable[[], str] = lambda: _rand(_HEX, 64)
    payout_fee: Decimal = Decimal(0)  # what GET /v1/payout/fee answers, whatever the amount

    @property
    def extra_id_exists(self) -> bool:
        return self.extra_id_regex is not None

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.precision)


def _catalogue() -> dict[str, SimCurrency]:
    tron_address = lambda: "T" + _rand(_BASE58, 33)  # noqa: E731
    currencies = [
        SimCurrency(
            "btc",
            "Bitcoin",
            "btc",
            8,
            Decimal("97000.00"),
            Decimal("2.00"),
            "^(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,62}$",
            lambda: "bc1q" + _rand(_BECH32, 38),
            payout_fee=Decimal("0.00012"),
        ),
        SimCurrency(
            "eth",
            "Ethereum",
            "eth",
            18,
            Decimal("3400.00"),
            Decimal("1.50"),
            "^(0x)[0-9A-Fa-f]{40}$",
            lambda: "0x" + _rand(_HEX, 40),
            tx_hash=lambda: "0x" + _rand(_HEX, 64),
            payout_fee=Decimal("0.000731966158472103"),
        ),
        SimCurrency(
            "usdttrc20",
            "Tether USD (Tron)",
            "trx",
            6,
            Decimal("1.00"),
            Decimal("1.00"),
            "^T[1-9A-HJ-NP-Za-km-z]{33}$",
            tron_address,
            smart_contract="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
            payout_fee=Decimal("1.1"),
        ),
        SimCurrency(
            "ltc",
            "Litecoin",
            "ltc",
            8,
            Decimal("105.00"),
            Decimal("0.50"),
            "^(L|M|3|ltc1)[a-km-zA-HJ-NP-Z0-9]{26,62}$",
            # The gateway's LTC wallet_regex leaves out "l", so generated addresses do too.
            lambda: "ltc1q" + _rand(_BECH32.replace("l", ""), 38),
            payout_fee=Decimal("0.001"),
        ),
        SimCurrency(
            "trx",
            "Tron",
            "trx",
            6,
            Decimal("0.25"),
            Decimal("0.30"),
            "^T[1-9A-HJ-NP-Za-km-z]{33}$",
            tron_address,
            payout_fee=Decimal("1"),
        ),
        SimCurrency(
            "xrp",
            "Ripple",
            "xrp",
            6,
            Decimal("2.40"),
            Decimal("0.50"),
            "^r[1-9A-HJ-NP-Za-km-z]{24,34}$",
            lambda: "r" + _rand(_BASE58, 33),
            extra_id_regex="^([0-9]{1,10})$",
            payout_fee=Decimal("0.2"),
        ),
        SimCurrency(
            "doge",
            "Dogecoin",
            "doge",
            8,
            Decimal("0.35"),
            Decimal("1.00"),
            "^(D|A|9)[a-km-zA-HJ-NP-Z1-9]{33,34}$",
            lambda: "D" + _rand(_BASE58, 33),
            enabled=False,
            payout_fee=Decimal("2"),
        ),
    ]
    return {c.code: c for c in currencies}


CATALOGUE: Mapping[str, SimCurrency] = _catalogue()
FIAT_USD_RATES: Mapping[str, Decimal] = {"usd": Decimal("1"), "eur": Decimal("1.08")}
FIAT_PRECISION = 2

# Sandbox `case` values → scenario played by auto-advance.
CASES = {
    "success": "paid",
    "common": "paid",
    "partially_paid": "partial",
    "failed": "failed",
    "fail": "failed",
    "expired": "expired",
}

# Each step: (status, actually_paid as a fraction of pay_amount, or None to leave it).
SCENARIOS: Mapping[str, tuple[tuple[str, Decimal | None], ...]] = {
    "paid": (
        ("waiting", Decimal(0)),
        ("confirming", Decimal(1)),
        ("confirmed", None),
        ("sending", None),
        ("finished", None),
    ),
    "partial": (("waiting", Decimal(0)), ("confirming", Decimal("0.5")), ("partially_paid", None)),
    "over": (
        ("waiting", Decimal(0)),
        ("confirming", Decimal("1.5")),
        ("confirmed", None),
        ("sending", None),
        ("finished", None),
    ),
    "late": (
        ("waiting", Decimal(0)),
        ("expired", None),
        ("confirming", Decimal(1)),
        ("confirmed", None),
        ("sending", None),
        ("finished", None),
    ),
    "failed": (("waiting", Decimal(0)), ("failed", None)),
    "expired": (("waiting", Decimal(0)), ("expired", None)),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _plain(amount: Decimal) -> Decimal:
    """Drop trailing zeros, as a JavaScript number would print (0.00010000 → 0.0001)."""
    normalized = amount.normalize()
    return normalized if normalized.as_tuple().exponent <= 0 else normalized.quantize(Decimal(1))


@dataclass
class SimPayment:
    payment_id: int
    purchase_id: int
    status: str
    pay_address: str
    payin_extra_id: str | None
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    network: str
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    case: str | None
    created_at: datetime
    updated_at: datetime
    expiration_estimate_date: datetime
    actually_paid: Decimal = Decimal(0)
    payin_hash: str | None = None
    payout_hash: str | None = None
    outcome_amount: Decimal | None = None
    outcome_currency: str | None = None
    answers: int = 0  # how many API answers carried this payment (drives the type drift)

    def view(self) -> dict[str, Any]:
        """Stable representation for the control API: ids and amounts as strings."""
        return {
            "payment_id": str(self.payment_id),
            "purchase_id": str(self.purchase_id),
            "payment_status": self.status,
            "pay_address": self.pay_address,
            "payin_extra_id": self.payin_extra_id,
            "price_amount": wire.decimal_text(self.price_amount),
            "price_currency": self.price_currency,
            "pay_amount": wire.decimal_text(self.pay_amount),
            "actually_paid": wire.decimal_text(self.actually_paid),
            "pay_currency": self.pay_currency,
            "network": self.network,
            "order_id": self.order_id,
            "order_description": self.order_description,
            "ipn_callback_url": self.ipn_callback_url,
            "case": self.case,
            "payin_hash": self.payin_hash,
            "payout_hash": self.payout_hash,
            "outcome_amount": None if self.outcome_amount is None else wire.decimal_text(self.outcome_amount),
            "outcome_currency": self.outcome_currency,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "expiration_estimate_date": _iso(self.expiration_estimate_date),
        }


@dataclass
class SimPayout:
    """One withdrawal of a mass payout (`payout_id` is the withdrawal id)."""

    payout_id: int
    batch_id: int
    status: str
    address: str
    currency: str
    amount: Decimal
    extra_id: str | None
    ipn_callback_url: str | None
    unique_external_id: str | None
    created_at: datetime
    updated_at: datetime | None = None
    hash: str | None = None
    error: str | None = None

    def view(self) -> dict[str, Any]:
        """Stable representation for the control API: ids and amounts as strings."""
        return {
            "id": str(self.payout_id),
            "batch_withdrawal_id": str(self.batch_id),
            "status": self.status,
            "address": self.address,
            "currency": self.currency,
            "amount": wire.decimal_text(self.amount),
            "extra_id": self.extra_id,
            "hash": self.hash,
            "error": self.error,
            "unique_external_id": self.unique_external_id,
            "ipn_callback_url": self.ipn_callback_url,
            "created_at": _iso(self.created_at),
            "updated_at": None if self.updated_at is None else _iso(self.updated_at),
        }


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error_response(status: int, code: str, message: str) -> web.Response:
    body = {"status": False, "statusCode": status, "code": code, "message": message}
    return web.Response(status=status, text=wire.dumps(body), content_type="application/json")


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=wire.dumps(body), content_type="application/json")


def _bad_params(message: str) -> _ApiError:
    return _ApiError(400, "INVALID_REQUEST_PARAMS", message)


@dataclass
class _Fault:
    status: int | None
    remaining: int
    path_prefix: str
    method: str | None
    delay: float


@dataclass
class SimState:
    ipn_secret: str = field(repr=False)
    api_key: str | None = field(repr=False)
    auto_advance_seconds: float | None
    merchant_coins_key: str
    payout_email: str | None = field(default=None, repr=False)
    payout_password: str | None = field(default=None, repr=False)
    jwt_ttl_seconds: float = JWT_TTL_SECONDS
    payments: dict[int, SimPayment] = field(default_factory=dict)
    payouts: dict[int, SimPayout] = field(default_factory=dict)
    payout_by_external_id: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict, repr=False)  # JWT → monotonic expiry
    jwt_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    payout_answers: int = 0  # drives the payout answers' type drift
    faults: list[_Fault] = field(default_factory=list)
    ipn_log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    http: ClientSession | None = None
    next_payment_id: int = field(default_factory=lambda: random.randint(4_000_000_000, 5_999_000_000))
    next_purchase_id: int = field(default_factory=lambda: random.randint(4_000_000_000, 5_999_000_000))
    next_payout_id: int = field(default_factory=lambda: random.randint(5_000_000_000, 5_499_000_000))
    next_batch_id: int = field(default_factory=lambda: random.randint(5_500_000_000, 5_999_000_000))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


STATE_KEY: web.AppKey[SimState] = web.AppKey("nowpayments_sim_state", SimState)


# -- middlewares ---------------------------------------------------------------------


@web.middleware
async def _api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    path = request.path
    if not path.startswith("/v1/"):
        return await handler(request)
    entry: dict[str, Any] = {"method": request.method, "path": path, "query": request.query_string}
    state.requests.append(entry)
    del state.requests[:-10000]
    response = await _serve_api(state, request, handler)
    entry["status"] = response.status
    return response


async def _serve_api(
    state: SimState,
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    for fault in state.faults:
        if (
            fault.remaining > 0
            and request.path.startswith(fault.path_prefix)
            and (fault.method is None or fault.method == request.method)
        ):
            fault.remaining -= 1
            if fault.delay:
                # Take the whole request first: a slow gateway has received it and will act on
                # it even if the caller gives up waiting (the ambiguous timeout).
                await request.read()
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return _fault_response(fault.status)
            break  # a pure delay: go on and answer normally, late
    state.faults[:] = [f for f in state.faults if f.remaining > 0]

    if request.path != "/v1/status":
        presented = request.headers.get("x-api-key", "")
        valid = bool(presented) and (
            state.api_key is None or hmac.compare_digest(presented.encode(), state.api_key.encode())
        )
        if not valid:
            return _error_response(403, "INVALID_API_KEY", "Invalid api key")
    try:
        return await handler(request)
    except _ApiError as exc:
        return _error_response(exc.status, exc.code, exc.message)


def _fault_response(status: int) -> web.Response:
    if status == 401:
        return _auth_required()
    if status == 429:
        return _error_response(429, "TOO_MANY_REQUESTS", "Too many requests")
    if status == 503:
        return _error_response(503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable")
    if status >= 500:
        return _error_response(status, "INTERNAL_ERROR", "Internal server error")
    return _error_response(status, f"HTTP_{status}", "Injected fault")


# -- the NOWPayments API ---------------------------------------------------------------


def _state(request: web.Request) -> SimState:
    return request.app[STATE_KEY]


async def _status(request: web.Request) -> web.Response:
    return _json_response({"message": "OK"})


def _currency_wire(index: int, c: SimCurrency) -> dict[str, Any]:
    return {
        "id": index + 1,
        "code": c.code.upper(),
        "name": c.name,
        "enable": c.enabled,
        "wallet_regex": c.wallet_regex,
        "priority": index + 1,
        "extra_id_exists": c.extra_id_exists,
        "extra_id_regex": c.extra_id_regex,
        "logo_url": f"/images/coins/{c.code}.svg",
        "track": True,
        "cg_id": c.name.lower().split(" ")[0],
        "is_maxlimit": False,
        "network": c.network,
        "smart_contract": c.smart_contract,
        "network_precision": None,
        "explorer_link_hash": None,
        "precision": c.precision,
        "ticker": c.network if c.smart_contract else c.code,
        "is_defi": False,
        "is_popular": c.code in ("btc", "eth", "usdttrc20"),
        "is_stable": c.code == "usdttrc20",
        "available_for_to_conversion": True,
    }


async def _full_currencies(request: web.Request) -> web.Response:
    items = [_currency_wire(i, c) for i, c in enumerate(CATALOGUE.values())]
    return _json_response({"currencies": items})


async def _merchant_coins(request: web.Request) -> web.Response:
    codes = [c.code.upper() for c in CATALOGUE.values() if c.enabled]
    return _json_response({_state(request).merchant_coins_key: codes})


def _crypto(code: object, field_name: str, *, enabled_only: bool = True) -> SimCurrency:
    if not isinstance(code, str) or not code.strip():
        raise _bad_params(f'"{field_name}" is required')
    currency = CATALOGUE.get(code.strip().lower())
    if currency is None or (enabled_only and not currency.enabled):
        raise _bad_params(f'"{field_name}" {code} is not supported')
    return currency


def _usd_rate(code: object, field_name: str) -> tuple[Decimal, int]:
    """USD value of one unit of a fiat or crypto currency, and that currency's precision."""
    if not isinstance(code, str) or not code.strip():
        raise _bad_params(f'"{field_name}" is required')
    lowered = code.strip().lower()
    if lowered in FIAT_USD_RATES:
        return FIAT_USD_RATES[lowered], FIAT_PRECISION
    currency = _crypto(lowered, field_name, enabled_only=False)
    return currency.usd_rate, currency.precision


def _positive_amount(value: object, field_name: str) -> Decimal:
    if value is None or value == "":
        raise _bad_params(f'"{field_name}" is required')
    amount: Decimal | None = None
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except ArithmeticError:
            amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise _bad_params(f'"{field_name}" must be a positive number')
    if amount >= _MAX_AMOUNT:
        raise _bad_params(f'"{field_name}" is too large')
    return amount


def _min_crypto(currency: SimCurrency) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return _plain((currency.min_usd / currency.usd_rate).quantize(currency.quantum, rounding=ROUND_UP))


async def _min_amount(request: web.Request) -> web.Response:
    query = request.query
    currency = _crypto(query.get("currency_from"), "currency_from", enabled_only=False)
    body: dict[str, Any] = {
        "currency_from": currency.code,
        "currency_to": (query.get("currency_to") or currency.code).lower(),
        "min_amount": _min_crypto(currency),
    }
    fiat = query.get("fiat_equivalent")
    if fiat:
        rate = FIAT_USD_RATES.get(fiat.lower())
        if rate is None:
            raise _bad_params('"fiat_equivalent" is not supported')
        body["fiat_equivalent"] = _plain((currency.min_usd / rate).quantize(Decimal("0.01"), rounding=ROUND_UP))
    return _json_response(body)


async def _estimate(request: web.Request) -> web.Response:
    query = request.query
    amount = _positive_amount(query.get("amount"), "amount")
    rate_from, _ = _usd_rate(query.get("currency_from"), "currency_from")
    rate_to, precision_to = _usd_rate(query.get("currency_to"), "currency_to")
    with localcontext() as ctx:
        ctx.prec = 60
        estimated = (amount * rate_from / rate_to).quantize(Decimal(1).scaleb(-precision_to), rounding=ROUND_DOWN)
    return _json_response(
        {
            "currency_from": query["currency_from"].lower(),
            "amount_from": _plain(amount),
            "currency_to": query["currency_to"].lower(),
            "estimated_amount": wire.decimal_text(_plain(estimated)),  # a string, as the gateway sends it
        }
    )


async def _read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = wire.loads(await request.read())
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad_params("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise _bad_params("body must be a JSON object")
    return body


def _optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _bad_params(f'"{key}" must be a string')
    return value


async def _create_payment(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _read_json_object(request)
    price_amount = _positive_amount(body.get("price_amount"), "price_amount")
    price_currency = body.get("price_currency")
    price_rate, _ = _usd_rate(price_currency, "price_currency")
    currency = _crypto(body.get("pay_currency"), "pay_currency")
    order_id = _optional_text(body, "order_id")
    description = _optional_text(body, "order_description")
    callback = _optional_text(body, "ipn_callback_url")
    if callback is not None and not callback.startswith(("http://", "https://")):
        raise _bad_params('"ipn_callback_url" must be a valid uri')
    case = _optional_text(body, "case")
    if case is not None and case not in CASES:
        raise _bad_params(f'"case" must be one of {", ".join(CASES)}')

    with localcontext() as ctx:
        ctx.prec = 60
        usd_value = price_amount * price_rate
        pay_amount = (usd_value / currency.usd_rate).quantize(currency.quantum, rounding=ROUND_UP)
    if usd_value < currency.min_usd:
        raise _ApiError(
            400, "AMOUNT_MINIMAL_ERROR", f"Crypto amount {wire.decimal_text(_plain(pay_amount))} is less than minimal"
        )

    now = _now()
    payment = SimPayment(
        payment_id=state.next_payment_id,
        purchase_id=state.next_purchase_id,
        status="waiting",
        pay_address=currency.address(),
        payin_extra_id=str(random.randint(100_000_000, 999_999_999)) if currency.extra_id_exists else None,
        price_amount=price_amount,
        price_currency=str(price_currency).lower(),
        pay_amount=_plain(pay_amount),
        pay_currency=currency.code,
        network=currency.network,
        order_id=order_id,
        order_description=description,
        ipn_callback_url=callback,
        case=case,
        created_at=now,
        updated_at=now,
        expiration_estimate_date=now + PAYMENT_LIFETIME,
    )
    state.next_payment_id += random.randint(1, 97)
    state.next_purchase_id += random.randint(1, 97)
    state.payments[payment.payment_id] = payment
    _auto_advance(state, _PAYMENTS, payment, CASES.get(case or "success", "paid"))
    return _json_response(_created_wire(payment), status=201)


def _drift_id(value: int, answer: int) -> int | str:
    return str(value) if answer % 2 == 0 else value


def _created_wire(p: SimPayment) -> dict[str, Any]:
    p.answers += 1
    n = p.answers
    return {
        "payment_id": _drift_id(p.payment_id, n),
        "payment_status": p.status,
        "pay_address": p.pay_address,
        "price_amount": _plain(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": _plain(p.pay_amount),
        "amount_received": _plain(p.pay_amount),
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "ipn_callback_url": p.ipn_callback_url,
        "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at),
        "purchase_id": _drift_id(p.purchase_id, n + 1),
        "smart_contract": None,
        "network": p.network,
        "network_precision": None,
        "time_limit": None,
        "burning_percent": None,
        "expiration_estimate_date": _iso(p.expiration_estimate_date),
        "is_fixed_rate": False,
        "is_fee_paid_by_user": False,
        "valid_until": _iso(p.expiration_estimate_date),
        "type": "crypto2crypto",
        "payin_extra_id": p.payin_extra_id,
    }


def _status_wire(p: SimPayment) -> dict[str, Any]:
    p.answers += 1
    n = p.answers
    pay_amount: Decimal | str = _plain(p.pay_amount)
    if n % 3 == 1:
        pay_amount = wire.decimal_text(pay_amount)
    return {
        "payment_id": _drift_id(p.payment_id, n),
        "invoice_id": None,
        "payment_status": p.status,
        "pay_address": p.pay_address,
        "payin_extra_id": p.payin_extra_id,
        "price_amount": _plain(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": pay_amount,
        "actually_paid": _plain(p.actually_paid),
        "actually_paid_at_fiat": 0,
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "purchase_id": _drift_id(p.purchase_id, n + 1),
        "outcome_amount": None if p.outcome_amount is None else _plain(p.outcome_amount),
        "outcome_currency": p.outcome_currency,
        "payout_hash": p.payout_hash,
        "payin_hash": p.payin_hash,
        "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at) if n % 2 == 0 else _millis(p.updated_at),
        "burning_percent": None,
        "type": "crypto2crypto",
        "network": p.network,
        "expiration_estimate_date": _iso(p.expiration_estimate_date),
    }


def _ipn_wire(p: SimPayment) -> dict[str, Any]:
    return {
        "actually_paid": _plain(p.actually_paid),
        "actually_paid_at_fiat": 0,
        "fee": {"currency": p.pay_currency, "depositFee": 0, "serviceFee": 0, "withdrawalFee": 0},
        "invoice_id": None,
        "order_description": p.order_description,
        "order_id": p.order_id,
        "outcome_amount": None if p.outcome_amount is None else _plain(p.outcome_amount),
        "outcome_currency": p.outcome_currency,
        "parent_payment_id": None,
        "pay_address": p.pay_address,
        "pay_amount": _plain(p.pay_amount),
        "pay_currency": p.pay_currency,
        "payin_extra_id": p.payin_extra_id,
        "payin_hash": p.payin_hash,
        "payment_extra_ids": None,
        "payment_id": p.payment_id,
        "payment_status": p.status,
        "price_amount": _plain(p.price_amount),
        "price_currency": p.price_currency,
        "purchase_id": str(p.purchase_id),
        "updated_at": _millis(p.updated_at),
    }


def _payment_from_path(state: SimState, raw_id: str) -> SimPayment:
    if not raw_id.isdigit():
        raise _bad_params('"paymentID" must be a number')
    payment = state.payments.get(int(raw_id))
    if payment is None:
        raise _ApiError(404, "PAYMENT_NOT_FOUND", "Payment not found")
    return payment


async def _get_payment(request: web.Request) -> web.Response:
    payment = _payment_from_path(_state(request), request.match_info["payment_id"])
    return _json_response(_status_wire(payment))


# -- payouts (mass payouts API) ---------------------------------------------------------

_AUTH_REQUIRED_MESSAGE = "Authorization header is empty (Bearer JWTtoken is required)"


def _auth_required(message: str = _AUTH_REQUIRED_MESSAGE) -> web.Response:
    return _error_response(401, "AUTH_REQUIRED", message)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _issue_jwt(state: SimState) -> str:
    """A JWT-shaped token (HS256 over a random per-simulator key); the simulator remembers it."""
    now = time.time()
    header = _b64url(wire.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"id": "5000000001", "jti": secrets.token_hex(8), "iat": int(now), "exp": int(now + state.jwt_ttl_seconds)}
    signing_input = header + "." + _b64url(wire.dumps(claims).encode())
    signature = _b64url(hmac.new(state.jwt_key, signing_input.encode(), hashlib.sha256).digest())
    token = signing_input + "." + signature
    moment = time.monotonic()
    for old in [t for t, expires in state.tokens.items() if expires <= moment]:
        del state.tokens[old]
    state.tokens[token] = moment + state.jwt_ttl_seconds
    return token


def _require_bearer(state: SimState, request: web.Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _ApiError(401, "AUTH_REQUIRED", _AUTH_REQUIRED_MESSAGE)
    expires = state.tokens.get(token)
    if expires is None:
        raise _ApiError(401, "AUTH_REQUIRED", "Invalid token")
    if expires <= time.monotonic():
        del state.tokens[token]
        raise _ApiError(401, "AUTH_REQUIRED", "jwt expired")


def _same_secret(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def _auth(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _read_json_object(request)
    email = body.get("email")
    password = body.get("password")
    if not isinstance(email, str) or not email.strip():
        raise _bad_params('"email" is required')
    if not isinstance(password, str) or not password:
        raise _bad_params('"password" is required')
    # Both compared, always, so the answer time does not tell which one was wrong.
    email_ok = _same_secret(email.strip().lower(), (state.payout_email or "").strip().lower() or None)
    password_ok = _same_secret(password, state.payout_password)
    if not (email_ok and password_ok):
        raise _ApiError(403, "INVALID_CREDENTIALS", "Invalid email or password")
    return _json_response({"token": _issue_jwt(state)})


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


def _withdrawal_request(state: SimState, item: object, seen: set[str]) -> _WithdrawalRequest:
    if not isinstance(item, dict):
        raise _bad_params('"withdrawals" items must be objects')
    currency = _crypto(item.get("currency"), "currency")
    address = item.get("address")
    if not isinstance(address, str) or not address.strip():
        raise _bad_params('"address" is required')
    amount = _positive_amount(item.get("amount"), "amount")
    with localcontext() as ctx:
        ctx.prec = 60
        if amount != amount.quantize(currency.quantum):
            raise _bad_params(f'"amount" must have at most {currency.precision} decimals')
    extra_id = _optional_text(item, "extra_id")
    problem = _address_problem(currency, address, extra_id)
    if problem is not None:
        raise _ApiError(400, "BAD_CREATE_WITHDRAWAL", problem)
    minimum = _min_crypto(currency)
    if amount < minimum:
        raise _ApiError(
            400, "AMOUNT_MINIMAL_ERROR", f"Withdrawal amount is less than minimal {wire.decimal_text(minimum)}"
        )
    callback = _optional_text(item, "ipn_callback_url")
    if callback is not None and not callback.startswith(("http://", "https://")):
        raise _bad_params('"ipn_callback_url" must be a valid uri')
    external_id = _optional_text(item, "unique_external_id")
    if external_id is not None:
        if external_id in state.payout_by_external_id or external_id in seen:
            raise _ApiError(
                400, "DUPLICATE_EXTERNAL_ID", f'Withdrawal with unique_external_id "{external_id}" already exists'
            )
        seen.add(external_id)
    return _WithdrawalRequest(currency, address, amount, extra_id, callback, external_id)


def _payout_wire(p: SimPayout, *, drift: int = 0) -> dict[str, Any]:
    """The withdrawal object. `drift` > 0 varies id/amount/updated_at types as the gateway does."""
    amount: Decimal | str = wire.decimal_text(_plain(p.amount))
    payout_id: int | str = str(p.payout_id)
    updated_at: int | str | None = None if p.updated_at is None else _iso(p.updated_at)
    if drift:
        if drift % 2 == 1:
            payout_id = p.payout_id
        if drift % 3 == 0:
            amount = _plain(p.amount)
        if drift % 2 == 0 and p.updated_at is not None:
            updated_at = _millis(p.updated_at)
    return {
        "id": payout_id,
        "address": p.address,
        "currency": p.currency,
        "amount": amount,
        "batch_withdrawal_id": str(p.batch_id),
        "status": p.status,
        "extra_id": p.extra_id,
        "hash": p.hash,
        "error": p.error,
        "is_request_payouts": False,
        "ipn_callback_url": p.ipn_callback_url,
        "unique_external_id": p.unique_external_id,
        "payout_description": None,
        "created_at": _iso(p.created_at),
        "requested_at": None,
        "updated_at": updated_at,
    }


def _payout_ipn_wire(p: SimPayout) -> dict[str, Any]:
    return _payout_wire(p)


async def _create_payout(request: web.Request) -> web.Response:
    state = _state(request)
    _require_bearer(state, request)
    body = await _read_json_object(request)
    items = body.get("withdrawals")
    if not isinstance(items, list) or not items:
        raise _bad_params('"withdrawals" must be a non-empty array')
    seen: set[str] = set()
    wanted = [_withdrawal_request(state, item, seen) for item in items]  # all valid, or nothing is made

    batch_id = state.next_batch_id
    state.next_batch_id += random.randint(1, 97)
    now = _now()
    created: list[SimPayout] = []
    for w in wanted:
        payout = SimPayout(
            payout_id=state.next_payout_id,
            batch_id=batch_id,
            status="CREATING",
            address=w.address,
            currency=w.currency.code,
            amount=w.amount,
            extra_id=w.extra_id,
            ipn_callback_url=w.ipn_callback_url,
            unique_external_id=w.unique_external_id,
            created_at=now,
        )
        state.next_payout_id += random.randint(1, 97)
        state.payouts[payout.payout_id] = payout
        if payout.unique_external_id is not None:
            state.payout_by_external_id[payout.unique_external_id] = payout.payout_id
        created.append(payout)
        _auto_advance(state, _PAYOUTS, payout, "finished")
    return _json_response({"id": str(batch_id), "withdrawals": [_payout_wire(p) for p in created]})


async def _get_payout(request: web.Request) -> web.Response:
    state = _state(request)
    _require_bearer(state, request)
    raw_id = request.match_info["payout_id"]
    if not raw_id.isdigit():
        raise _bad_params('"id" must be a number')
    wanted = int(raw_id)
    single = state.payouts.get(wanted)
    items = [single] if single is not None else [p for p in state.payouts.values() if p.batch_id == wanted]
    if not items:
        raise _ApiError(404, "PAYOUT_NOT_FOUND", "Payout not found")
    state.payout_answers += 1
    n = state.payout_answers
    withdrawals = [_payout_wire(p, drift=n) for p in items]
    # The gateway answers with the withdrawals as a bare list, or wrapped in their batch.
    if n % 2 == 1:
        return _json_response(withdrawals)
    return _json_response({"id": str(items[0].batch_id), "withdrawals": withdrawals})


def _page_param(query: Mapping[str, str], key: str, default: int, maximum: int) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise _bad_params(f'"{key}" must be an integer between 0 and {maximum}')
    return int(raw)


def _matching_payouts(state: SimState, query: Mapping[str, str]) -> list[SimPayout]:
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


async def _list_payouts(request: web.Request) -> web.Response:
    """GET /v1/payout: newest first, paged (limit, page from 0); filters batch_id, status and,
    beyond the real API, unique_external_id."""
    state = _state(request)
    _require_bearer(state, request)
    limit = max(_page_param(request.query, "limit", 10, 500), 1)
    page = _page_param(request.query, "page", 0, 1_000_000)
    matching = _matching_payouts(state, request.query)[page * limit : (page + 1) * limit]
    state.payout_answers += 1
    return _json_response({"payouts": [_payout_wire(p, drift=state.payout_answers) for p in matching]})


async def _validate_address(request: web.Request) -> web.Response:
    body = await _read_json_object(request)
    currency = _crypto(body.get("currency"), "currency")
    address = body.get("address")
    if not isinstance(address, str) or not address.strip():
        raise _bad_params('"address" is required')
    problem = _address_problem(currency, address, _optional_text(body, "extra_id"))
    if problem is not None:
        raise _ApiError(400, "BAD_ADDRESS_VALIDATION_REQUEST", problem)
    return web.Response(status=200, text="OK", content_type="text/plain")


async def _payout_fee(request: web.Request) -> web.Response:
    currency = _crypto(request.query.get("currency"), "currency")
    _positive_amount(request.query.get("amount"), "amount")
    return _json_response({"currency": currency.code, "fee": _plain(currency.payout_fee)})


# -- status changes and IPN delivery -----------------------------------------------------


def _currency_of(p: SimPayment) -> SimCurrency:
    return CATALOGUE[p.pay_currency]


def _after(previous: datetime) -> datetime:
    """Now, or 1 ms after `previous` if that is later: each entity's updated_at strictly
    increases at millisecond resolution, so ordering by it is meaningful."""
    now = _now()
    minimum = previous + timedelta(milliseconds=1)
    return now if now >= minimum else minimum


def apply_status(p: SimPayment, status: str, actually_paid: Decimal | None = None) -> None:
    """Set a status (any, even backwards) and fill what the gateway would have filled."""
    currency = _currency_of(p)
    if actually_paid is not None:
        p.actually_paid = actually_paid
    elif p.actually_paid == 0 and status in ("confirming", "confirmed", "sending", "finished"):
        p.actually_paid = p.pay_amount
    elif p.actually_paid == 0 and status == "partially_paid":
        p.actually_paid = _plain((p.pay_amount / 2).quantize(currency.quantum, rounding=ROUND_DOWN))
    p.status = status
    if p.payin_hash is None and p.actually_paid > 0:
        p.payin_hash = currency.tx_hash()
    if p.payout_hash is None and status in ("sending", "finished"):
        p.payout_hash = currency.tx_hash()
    if status == "finished":
        p.outcome_amount = _plain((p.actually_paid * (1 - SERVICE_FEE)).quantize(currency.quantum, rounding=ROUND_DOWN))
        p.outcome_currency = p.pay_currency
    p.updated_at = _after(p.updated_at)


def _apply_payment_step(p: SimPayment, step: tuple[str, Decimal | None]) -> None:
    """One scenario step: the status, and what has arrived as a fraction of pay_amount."""
    status, fraction = step
    paid = None
    if fraction is not None:
        paid = _plain((p.pay_amount * fraction).quantize(_currency_of(p).quantum, rounding=ROUND_DOWN))
    apply_status(p, status, paid)


def apply_payout_status(p: SimPayout, status: str, *, error: str | None = None, tx_hash: str | None = None) -> None:
    """Set a payout status (any, even backwards) and fill the hash/error the gateway would."""
    status = status.strip().upper()
    p.status = status
    if tx_hash is not None:
        p.hash = tx_hash
    elif p.hash is None and status in ("SENDING", "FINISHED"):
        p.hash = CATALOGUE[p.currency].tx_hash()
    if error is not None:
        p.error = error
    elif p.error is None and status == "FAILED":
        p.error = "Withdrawal failed: transaction was not sent"
    elif p.error is None and status == "REJECTED":
        p.error = "Withdrawal rejected"
    p.updated_at = _after(p.updated_at or p.created_at)


_E = TypeVar("_E", SimPayment, SimPayout)


@dataclass(frozen=True, slots=True)
class _Kind(Generic[_E]):
    """What differs between payments and payouts for IPN delivery, scenarios and the control
    API; one implementation of each of those serves both kinds (`_PAYMENTS`, `_PAYOUTS`,
    defined after the control API)."""

    name: str  # "payment" | "payout": the control answers' key, the {name}_id path parameter
    table: Callable[[SimState], dict[int, _E]]
    ident: Callable[[_E], int]
    ipn_body: Callable[[_E], dict[str, Any]]
    scenarios: Mapping[str, tuple[Any, ...]]  # name → steps
    default_scenario: str
    apply_step: Callable[[_E, Any], None]
    step_status: Callable[[Any], str]
    # POST /sim/{name}s/{id}/status: reads the kind's own fields and applies the status, or
    # answers why not.
    change: Callable[[_E, str, dict[str, Any]], web.Response | None]
    listed: Callable[[SimState, Mapping[str, str]], Iterable[_E]]  # GET /sim/{name}s?...

    def steps(self, scenario: str) -> list[str]:
        return [self.step_status(step) for step in self.scenarios[scenario]]


async def _post_ipn(
    state: SimState, url: str, body: bytes, signature: str, attempt: int, subject: Mapping[str, Any]
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "url": url,
        "payment_id": None,
        "payout_id": None,
        **subject,
        "attempt": attempt,
        "status": None,
        "error": None,
        "ok": False,
        "body": body.decode("utf-8"),
        "signature": signature,
        "at": _iso(_now()),
    }
    session = state.http
    if session is None or session.closed:
        record["error"] = "simulator is shutting down"
        state.ipn_log.append(record)
        return record
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "x-nowpayments-sig": signature},
            allow_redirects=False,
        ) as response:
            await response.read()
            record["status"] = response.status
            record["ok"] = 200 <= response.status < 300
    except (ClientError, TimeoutError, OSError) as exc:
        record["error"] = type(exc).__name__
    state.ipn_log.append(record)
    return record


async def _retry_ipn(state: SimState, url: str, body: bytes, signature: str, subject: Mapping[str, Any]) -> None:
    for attempt, delay in enumerate(IPN_RETRY_DELAYS, start=2):
        await asyncio.sleep(delay)
        record = await _post_ipn(state, url, body, signature, attempt, subject)
        if record["ok"]:
            return


async def _deliver(state: SimState, kind: _Kind[_E], entity: _E) -> dict[str, Any] | None:
    """Sign and POST the entity's current state to its callback (if it has one); first
    attempt awaited, retries in the background."""
    url = entity.ipn_callback_url
    if not url:
        return None
    subject = {f"{kind.name}_id": str(kind.ident(entity)), f"{kind.name}_status": entity.status}
    body = canonical_json(kind.ipn_body(entity)).encode("utf-8")
    signature = sign(body, state.ipn_secret)
    record = await _post_ipn(state, url, body, signature, 1, subject)
    if not record["ok"]:
        state.spawn(_retry_ipn(state, url, body, signature, subject))
    return record


async def deliver_ipn(state: SimState, p: SimPayment) -> dict[str, Any] | None:
    """Send the payment's current status to its callback (if it has one)."""
    return await _deliver(state, _PAYMENTS, p)


async def deliver_payout_ipn(state: SimState, p: SimPayout) -> dict[str, Any] | None:
    """Send the payout's current state (the withdrawal object) to its callback (if any)."""
    return await _deliver(state, _PAYOUTS, p)


async def _play(
    state: SimState,
    kind: _Kind[_E],
    entity: _E,
    scenario: str,
    *,
    step_delay: float,
    send_ipn: bool,
    first_delay: bool = False,
) -> list[dict[str, Any]]:
    """Take the entity through a scenario's steps, `step_delay` apart, with an IPN after each."""
    deliveries: list[dict[str, Any]] = []
    for index, step in enumerate(kind.scenarios[scenario]):
        if step_delay > 0 and (index > 0 or first_delay):
            await asyncio.sleep(step_delay)
        kind.apply_step(entity, step)
        if send_ipn:
            record = await _deliver(state, kind, entity)
            if record is not None:
                deliveries.append(record)
    return deliveries


def _auto_advance(state: SimState, kind: _Kind[_E], entity: _E, scenario: str) -> None:
    """With `auto_advance_seconds`, play a new entity's scenario in the background."""
    if state.auto_advance_seconds is not None:
        state.spawn(
            _play(state, kind, entity, scenario, step_delay=state.auto_advance_seconds, send_ipn=True, first_delay=True)
        )


# -- control API ----------------------------------------------------------------------


def _control_error(status: int, message: str) -> web.Response:
    return _json_response({"error": message}, status=status)


async def _control_body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = wire.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return _control_error(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return _control_error(400, "body must be a JSON object")
    return body


def _control_entity(request: web.Request, kind: _Kind[_E]) -> _E | web.Response:
    raw_id = request.match_info[f"{kind.name}_id"]
    entity = kind.table(_state(request)).get(int(raw_id)) if raw_id.isdigit() else None
    if entity is None:
        return _control_error(404, f"no {kind.name} {raw_id}")
    return entity


async def _control_target(request: web.Request, kind: _Kind[_E]) -> tuple[_E, dict[str, Any]] | web.Response:
    """The entity named in the path and the request's body, or the answer refusing them."""
    entity = _control_entity(request, kind)
    if isinstance(entity, web.Response):
        return entity
    body = await _control_body(request)
    if isinstance(body, web.Response):
        return body
    return entity, body


async def _control_set_status(request: web.Request, kind: _Kind[_E]) -> web.Response:
    """POST /sim/{kind}s/{id}/status: the kind's `change`, then the IPN unless "send_ipn" is false."""
    target = await _control_target(request, kind)
    if isinstance(target, web.Response):
        return target
    entity, body = target
    status = body.get("status")
    if not isinstance(status, str) or not status.strip():
        return _control_error(400, '"status" is required')
    refused = kind.change(entity, status, body)
    if refused is not None:
        return refused
    record = await _deliver(_state(request), kind, entity) if body.get("send_ipn", True) else None
    return _json_response({kind.name: entity.view(), "ipn": record})


def _change_payment(payment: SimPayment, status: str, body: dict[str, Any]) -> web.Response | None:
    paid = None
    if body.get("actually_paid") is not None:
        try:
            paid = Decimal(str(body["actually_paid"]))
        except ArithmeticError:
            return _control_error(400, '"actually_paid" must be a decimal string')
        if not paid.is_finite() or paid < 0:
            return _control_error(400, '"actually_paid" must be a decimal string')
    apply_status(payment, status.strip(), paid)
    return None


def _optional_control_text(body: Mapping[str, Any], key: str) -> str | web.Response | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        return _control_error(400, f'"{key}" must be a string')
    return value


def _change_payout(payout: SimPayout, status: str, body: dict[str, Any]) -> web.Response | None:
    error = _optional_control_text(body, "error")
    tx_hash = _optional_control_text(body, "hash")
    if isinstance(error, web.Response):
        return error
    if isinstance(tx_hash, web.Response):
        return tx_hash
    apply_payout_status(payout, status, error=error, tx_hash=tx_hash)
    return None


async def _control_play(request: web.Request, kind: _Kind[_E]) -> web.Response:
    """POST /sim/{kind}s/{id}/play: run a scenario now and answer with every IPN sent."""
    target = await _control_target(request, kind)
    if isinstance(target, web.Response):
        return target
    entity, body = target
    scenario = body.get("scenario", kind.default_scenario)
    if scenario not in kind.scenarios:
        return _control_error(400, f'"scenario" must be one of {", ".join(kind.scenarios)}')
    try:
        step_delay = float(body.get("step_delay", 0))
    except (TypeError, ValueError):
        return _control_error(400, '"step_delay" must be a number')
    deliveries = await _play(
        _state(request),
        kind,
        entity,
        scenario,
        step_delay=max(step_delay, 0.0),
        send_ipn=bool(body.get("send_ipn", True)),
    )
    return _json_response({kind.name: entity.view(), "steps": kind.steps(scenario), "ipn": deliveries})


async def _control_get(request: web.Request, kind: _Kind[_E]) -> web.Response:
    entity = _control_entity(request, kind)
    if isinstance(entity, web.Response):
        return entity
    return _json_response(entity.view())


async def _control_list(request: web.Request, kind: _Kind[_E]) -> web.Response:
    views = [e.view() for e in kind.listed(_state(request), request.query)]
    return _json_response({f"{kind.name}s": views, "count": len(views)})


def _listed_payments(state: SimState, query: Mapping[str, str]) -> list[SimPayment]:
    order_id = query.get("order_id")
    return [p for p in state.payments.values() if order_id is None or p.order_id == order_id]


def _listed_payouts(state: SimState, query: Mapping[str, str]) -> Iterable[SimPayout]:
    """Every payout (oldest first) matching ?unique_external_id= / ?batch_id= / ?status=."""
    return reversed(_matching_payouts(state, query))


_PAYMENTS: _Kind[SimPayment] = _Kind(
    name="payment",
    table=lambda state: state.payments,
    ident=lambda p: p.payment_id,
    ipn_body=_ipn_wire,
    scenarios=SCENARIOS,
    default_scenario="paid",
    apply_step=_apply_payment_step,
    step_status=lambda step: step[0],
    change=_change_payment,
    listed=_listed_payments,
)
_PAYOUTS: _Kind[SimPayout] = _Kind(
    name="payout",
    table=lambda state: state.payouts,
    ident=lambda p: p.payout_id,
    ipn_body=_payout_ipn_wire,
    scenarios=PAYOUT_SCENARIOS,
    default_scenario="finished",
    apply_step=apply_payout_status,
    step_status=lambda status: status,
    change=_change_payout,
    listed=_listed_payouts,
)


async def _sim_add_fault(request: web.Request) -> web.Response:
    body = await _control_body(request)
    if isinstance(body, web.Response):
        return body
    status = body.get("status")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        return _control_error(400, '"status" must be an HTTP error status')
    count = body.get("count", 1)
    if not isinstance(count, int) or count < 1:
        return _control_error(400, '"count" must be a positive integer')
    prefix = body.get("path_prefix", "/v1/")
    if not isinstance(prefix, str) or not prefix.startswith("/v1"):
        return _control_error(400, '"path_prefix" must start with /v1')
    method = body.get("method")
    if method is not None and not isinstance(method, str):
        return _control_error(400, '"method" must be a string')
    try:
        delay = float(body.get("delay", 0))
    except (TypeError, ValueError):
        return _control_error(400, '"delay" must be a number')
    if status is None and delay <= 0:
        return _control_error(400, 'give a "status", a "delay", or both')
    _state(request).faults.append(
        _Fault(
            status=status,
            remaining=count,
            path_prefix=prefix,
            method=method.upper() if method else None,
            delay=max(delay, 0.0),
        )
    )
    return _json_response({"faults": len(_state(request).faults)})


async def _sim_clear_faults(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return _json_response({"faults": 0})


async def _sim_ipn_log(request: web.Request) -> web.Response:
    payment_id = request.query.get("payment_id")
    payout_id = request.query.get("payout_id")
    entries = [
        e
        for e in _state(request).ipn_log
        if (payment_id is None or e["payment_id"] == payment_id) and (payout_id is None or e["payout_id"] == payout_id)
    ]
    return _json_response({"deliveries": entries})


async def _sim_requests(request: web.Request) -> web.Response:
    prefix = request.query.get("path_prefix", "")
    entries = [e for e in _state(request).requests if e["path"].startswith(prefix)]
    return _json_response({"requests": entries})


# -- app --------------------------------------------------------------------------------


def create_simulator_app(
    *,
    ipn_secret: str,
    api_key: str | None = None,
    auto_advance_seconds: float | None = None,
    merchant_coins_key: str = "selectedCurrencies",
    payout_email: str | None = None,
    payout_password: str | None = None,
    jwt_ttl_seconds: float = JWT_TTL_SECONDS,
) -> web.Application:
    """The simulator as an aiohttp application (routes under /v1 and /sim).

    `merchant_coins_key` chooses the shape of GET /v1/merchant/coins: "selectedCurrencies"
    (what live clients see) or "currencies" (the SDK/docs shape). `payout_email` and
    `payout_password` are the account credentials POST /v1/auth accepts (without them every
    sign-in is refused); its tokens expire after `jwt_ttl_seconds`.
    """
    if not ipn_secret:
        raise ValueError("ipn_secret is required")
    if merchant_coins_key not in ("selectedCurrencies", "currencies"):
        raise ValueError('merchant_coins_key must be "selectedCurrencies" or "currencies"')
    if auto_advance_seconds is not None and auto_advance_seconds < 0:
        raise ValueError("auto_advance_seconds must not be negative")
    if (payout_email is None) != (payout_password is None):
        raise ValueError("give both payout_email and payout_password, or neither")
    if jwt_ttl_seconds <= 0:
        raise ValueError("jwt_ttl_seconds must be positive")
    app = web.Application(middlewares=[_api_middleware])
    state = SimState(
        ipn_secret=ipn_secret,
        api_key=api_key,
        auto_advance_seconds=auto_advance_seconds,
        merchant_coins_key=merchant_coins_key,
        payout_email=payout_email,
        payout_password=payout_password,
        jwt_ttl_seconds=jwt_ttl_seconds,
    )
    app[STATE_KEY] = state

    async def on_startup(app: web.Application) -> None:
        state.http = ClientSession(timeout=ClientTimeout(total=IPN_TIMEOUT))

    async def on_cleanup(app: web.Application) -> None:
        for task in list(state.tasks):
            task.cancel()
        for task in list(state.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if state.http is not None:
            await state.http.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/v1/status", _status)
    app.router.add_get("/v1/full-currencies", _full_currencies)
    app.router.add_get("/v1/merchant/coins", _merchant_coins)
    app.router.add_get("/v1/min-amount", _min_amount)
    app.router.add_get("/v1/estimate", _estimate)
    app.router.add_post("/v1/payment", _create_payment)
    app.router.add_post("/v1/payment/", _create_payment)
    app.router.add_get("/v1/payment/{payment_id}", _get_payment)
    app.router.add_post("/v1/auth", _auth)
    # The fixed /v1/payout/... paths before the {payout_id} one, which would match them too.
    app.router.add_post("/v1/payout/validate-address", _validate_address)
    app.router.add_get("/v1/payout/fee", _payout_fee)
    app.router.add_post("/v1/payout", _create_payout)
    app.router.add_get("/v1/payout", _list_payouts)
    app.router.add_get("/v1/payout/{payout_id}", _get_payout)
    for kind in (_PAYMENTS, _PAYOUTS):
        # /sim/payments/{payment_id}/status, .../play, /sim/payments/{payment_id}, /sim/payments;
        # the same under /sim/payouts.
        entity = f"/sim/{kind.name}s/{{{kind.name}_id}}"
        app.router.add_post(entity + "/status", functools.partial(_control_set_status, kind=kind))
        app.router.add_post(entity + "/play", functools.partial(_control_play, kind=kind))
        app.router.add_get(entity, functools.partial(_control_get, kind=kind))
        app.router.add_get(f"/sim/{kind.name}s", functools.partial(_control_list, kind=kind))
    app.router.add_post("/sim/faults", _sim_add_fault)
    app.router.add_delete("/sim/faults", _sim_clear_faults)
    app.router.add_get("/sim/ipn-log", _sim_ipn_log)
    app.router.add_get("/sim/requests", _sim_requests)
    return app


class SimulatorServer:
    """Runs the simulator on a background thread with its own event loop."""

    def __init__(
        self,
        *,
        ipn_secret: str,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_advance_seconds: float | None = None,
        merchant_coins_key: str = "selectedCurrencies",
        payout_email: str | None = None,
        payout_password: str | None = None,
        jwt_ttl_seconds: float = JWT_TTL_SECONDS,
    ) -> None:
        self._app = create_simulator_app(
            ipn_secret=ipn_secret,
            api_key=api_key,
            auto_advance_seconds=auto_advance_seconds,
            merchant_coins_key=merchant_coins_key,
            payout_email=payout_email,
            payout_password=payout_password,
            jwt_ttl_seconds=jwt_ttl_seconds,
        )
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else "not started"
        return f"SimulatorServer({where})"

    @property
    def state(self) -> SimState:
        """In-memory state; read it only while no request is running, or use the /sim API."""
        return self._app[STATE_KEY]

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("simulator is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def boot() -> None:
            self._runner = web.AppRunner(self._app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self._host, self._port)
            await site.start()
            self._bound_port = int(self._runner.addresses[0][1])

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="nowpayments-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=15):
            raise RuntimeError("simulator did not start within 15 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"simulator failed to start: {failure[0]}") from failure[0]

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    ipn_secret: str,
    api_key: str | None,
    auto_advance_seconds: float | None,
    *,
    payout_email: str | None = None,
    payout_password: str | None = None,
    jwt_ttl_seconds: float = JWT_TTL_SECONDS,
) -> None:
    """Run the simulator in the foreground until SIGTERM/SIGINT (`payments simulator`)."""
    app = create_simulator_app(
        ipn_secret=ipn_secret,
        api_key=api_key,
        auto_advance_seconds=auto_advance_seconds,
        payout_email=payout_email,
        payout_password=payout_password,
        jwt_ttl_seconds=jwt_ttl_seconds,
    )
    shown = f"[{host}]" if ":" in host else host
    log.info("NOWPayments simulator listening on http://%s:%d/v1 (control API under /sim)", shown, port)
    web.run_app(app, host=host, port=port, handle_signals=True, print=None, shutdown_timeout=5.0)
