"""Async client for the NOWPayments REST API (aiohttp).

One `ClientSession` per client, created lazily on the running event loop and closed by
`close()` (or `async with`). Idempotent requests (GET) are retried on transient failures
with exponential backoff and jitter; a POST that creates a payment is retried only when we
know the gateway did not act on it (connection never established, or HTTP 429), because a
timeout or a dropped connection after sending may already have created the payment.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from domain.money import decimal_from_wire
from gateway import wire
from gateway.errors import GatewayProtocolError, GatewayRejected, GatewayTransientError
from gateway.models import GatewayCurrency, GatewayPayment, MinAmount

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 5.0  # seconds; a longer Retry-After is the caller's (the queue's) business
_MAX_MESSAGE_LENGTH = 300


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any


class _Attempt(Exception):
    """Internal: one failed attempt, with whether trying again is safe and useful."""

    def __init__(self, error: GatewayTransientError, *, retryable: bool, delay: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.delay = delay


class NowPaymentsClient:
    """NOWPayments API client. Never shows its API key in repr, logs or errors."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base: float = 0.2,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if api_key is not None and not isinstance(api_key, SecretStr):
            raise TypeError("api_key must be a pydantic SecretStr")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff_base < 0:
            raise ValueError("backoff_base must not be negative")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None and self._api_key.get_secret_value() else "unset"
        return (
            f"NowPaymentsClient(base_url={self._base_url!r}, api_key=<{key}>, "
            f"timeout={self._timeout}, max_attempts={self._max_attempts})"
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    # -- lifecycle -------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # A session is bound to the loop it was made on; a client reused on a new loop
            # (e.g. a test after another) gets a fresh one.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"Accept": "application/json", "User-Agent": "payments-pipeline/0.1"},
            )
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session, self._session_loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- transport -------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Shorten gateway-supplied text and make sure it cannot echo our key back into logs."""
        if self._api_key is not None:
            key = self._api_key.get_secret_value()
            if key:
                text = text.replace(key, "***")
        if len(text) > _MAX_MESSAGE_LENGTH:
            text = text[:_MAX_MESSAGE_LENGTH] + "..."
        return text

    def _headers(self, *, with_body: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.get_secret_value()
        if with_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _backoff(self, attempt: int) -> float:
        base = self._backoff_base * (2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.5)

    @staticmethod
    def _error_fields(status: int, body: Any) -> tuple[str, str]:
        code = f"HTTP_{status}"
        message = ""
        if isinstance(body, Mapping):
            raw_code = body.get("code")
            if isinstance(raw_code, str) and raw_code.strip():
                code = raw_code.strip()
            raw_message = body.get("message")
            if isinstance(raw_message, list):
                message = "; ".join(str(item) for item in raw_message)
            elif raw_message is not None:
                message = str(raw_message)
        return code, message

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        idempotent: bool,
    ) -> _Answer:
        session = self._get_session()
        what = f"{method} {path}"
        try:
            async with session.request(
                method,
                self._base_url + path,
                params=params,
                data=data,
                headers=self._headers(with_body=data is not None),
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.read()
        except TimeoutError as exc:
            raise _Attempt(
                GatewayTransientError(f"{what}: no answer within {self._timeout:g}s"),
                retryable=idempotent,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            # The connection was never established, so the request was never sent.
            raise _Attempt(
                GatewayTransientError(f"{what}: cannot connect ({type(exc).__name__})"), retryable=True
            ) from exc
        except aiohttp.ClientError as exc:
            raise _Attempt(
                GatewayTransientError(f"{what}: network error ({type(exc).__name__})"),
                retryable=idempotent,
            ) from exc

        body: Any = None
        parse_error: Exception | None = None
        try:
            body = wire.loads(raw) if raw.strip() else None
        except (UnicodeDecodeError, ValueError) as exc:
            parse_error = exc

        if 200 <= status < 300:
            if parse_error is not None or body is None:
                raise GatewayProtocolError(f"{what}: HTTP {status} with a body that is not JSON")
            return _Answer(status, body)

        code, message = self._error_fields(status, body)
        message = self._scrub(message or (raw.decode("utf-8", "replace").strip() if parse_error else ""))
        if status == 429 or status >= 500 or status == 408:
            delay = None
            if retry_after is not None:
                try:
                    delay = min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER)
                except ValueError:
                    delay = None
            # 429 means "not processed": safe to repeat even for a POST.
            raise _Attempt(
                GatewayTransientError(f"{what}: HTTP {status} {code}" + (f": {message}" if message else "")),
                retryable=idempotent or status == 429,
                delay=delay,
            )
        if 400 <= status < 500:
            raise GatewayRejected(status, code, message or f"HTTP {status}")
        raise GatewayProtocolError(f"{what}: unexpected HTTP {status}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> _Answer:
        if idempotent is None:
            idempotent = method == "GET"
        data = wire.dumps(json_body).encode("utf-8") if json_body is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, params=params, data=data, idempotent=idempotent)
            except _Attempt as failure:
                if not failure.retryable or attempt >= self._max_attempts:
                    log.warning(
                        "gateway request failed: %s (attempt %d/%d, giving up)",
                        failure.error,
                        attempt,
                        self._max_attempts,
                    )
                    raise failure.error from failure.__cause__
                delay = failure.delay if failure.delay is not None else self._backoff(attempt)
                log.info(
                    "gateway request failed: %s (attempt %d/%d, retrying in %.2fs)",
                    failure.error,
                    attempt,
                    self._max_attempts,
                    delay,
                )
                await asyncio.sleep(delay)

    # -- API -------------------------------------------------------------------------

    async def status(self) -> bool:
        """GET /status (no key needed): True when the gateway answers ``{"message": "OK"}``."""
        try:
            answer = await self._request("GET", "/status")
        except (GatewayTransientError, GatewayProtocolError, GatewayRejected) as exc:
            log.warning("gateway status check failed: %s", exc)
            return False
        return isinstance(answer.body, Mapping) and str(answer.body.get("message", "")).upper() == "OK"

    async def full_currencies(self) -> list[GatewayCurrency]:
        answer = await self._request("GET", "/full-currencies")
        items = answer.body.get("currencies") if isinstance(answer.body, Mapping) else None
        if not isinstance(items, list):
            raise GatewayProtocolError("GET /full-currencies: no currencies list")
        return [GatewayCurrency.from_wire(item) for item in items]

    async def merchant_coins(self) -> list[str]:
        """Lowercase codes of the coins enabled on the merchant account."""
        answer = await self._request("GET", "/merchant/coins")
        body = answer.body
        items: Any = None
        if isinstance(body, Mapping):
            items = body.get("selectedCurrencies")
            if items is None:
                items = body.get("currencies")
        if not isinstance(items, list):
            raise GatewayProtocolError("GET /merchant/coins: no currency list")
        codes: list[str] = []
        for item in items:
            code = item.get("code") if isinstance(item, Mapping) else item
            if not isinstance(code, str) or not code.strip():
                raise GatewayProtocolError("GET /merchant/coins: an entry has no code")
            codes.append(code.strip().lower())
        return codes

    async def min_amount(self, currency_from: str, fiat_equivalent: str = "usd") -> MinAmount:
        params = {"currency_from": currency_from.lower(), "fiat_equivalent": fiat_equivalent.lower()}
        answer = await self._request("GET", "/min-amount", params=params)
        return MinAmount.from_wire(_mapping(answer.body, "GET /min-amount"), default_currency_from=currency_from)

    async def estimate(self, amount: Decimal, currency_from: str, currency_to: str) -> Decimal:
        params = {
            "amount": wire.decimal_text(_positive_decimal(amount, "amount")),
            "currency_from": currency_from.lower(),
            "currency_to": currency_to.lower(),
        }
        answer = await self._request("GET", "/estimate", params=params)
        body = _mapping(answer.body, "GET /estimate")
        try:
            estimated = decimal_from_wire(body.get("estimated_amount"))
        except (TypeError, ValueError) as exc:
            raise GatewayProtocolError("GET /estimate: estimated_amount is not a number") from exc
        if estimated is None:
            raise GatewayProtocolError("GET /estimate: no estimated_amount")
        return estimated

    async def create_payment(
        self,
        *,
        price_amount: Decimal,
        price_currency: str,
        pay_currency: str,
        order_id: str,
        order_description: str | None = None,
        ipn_callback_url: str | None = None,
        case: str | None = None,
    ) -> GatewayPayment:
        """POST /payment. Not repeated after a timeout or a dropped connection: the payment
        may exist, so `GatewayTransientError` goes back to the caller to reconcile."""
        body: dict[str, Any] = {
            "price_amount": _positive_decimal(price_amount, "price_amount"),
            "price_currency": price_currency.lower(),
            "pay_currency": pay_currency.lower(),
            "order_id": order_id,
        }
        if order_description is not None:
            body["order_description"] = order_description
        if ipn_callback_url is not None:
            body["ipn_callback_url"] = ipn_callback_url
        if case is not None:
            body["case"] = case
        answer = await self._request("POST", "/payment", json_body=body, idempotent=False)
        if answer.status not in (200, 201):
            raise GatewayProtocolError(f"POST /payment: unexpected HTTP {answer.status}")
        payment = GatewayPayment.from_wire(_mapping(answer.body, "POST /payment"))
        if payment.order_id is not None and payment.order_id != order_id:
            raise GatewayProtocolError("POST /payment: answer is for a different order_id")
        return payment

    async def get_payment(self, payment_id: str) -> GatewayPayment:
        payment_id = str(payment_id).strip()
        if not payment_id:
            raise ValueError("payment_id must not be empty")
        answer = await self._request("GET", "/payment/" + quote(payment_id, safe=""))
        payment = GatewayPayment.from_wire(_mapping(answer.body, "GET /payment"))
        if payment.payment_id != payment_id:
            raise GatewayProtocolError("GET /payment: answer is for a different payment")
        return payment


def _mapping(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise GatewayProtocolError(f"{what}: answer is not a JSON object")
    return body


def _positive_decimal(value: Decimal, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite amount")
    return value
