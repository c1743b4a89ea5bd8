"""Async client for the NOWPayments REST API (aiohttp).

One `ClientSession` per client, created lazily on the running event loop and closed by
`close()` (or `async with`). Idempotent requests (GET) are retried on transient failures
with exponential backoff and jitter; a POST that creates a payment is retried only when we
know the gateway did not act on it (connection never established, or HTTP 429), because a
timeout or a dropped connection after sending may already have created the payment.

Payouts (the mass payouts API) also need a JWT from ``POST /auth`` with the account's email
and password. The client signs in on first use, keeps the token (about 5 minutes valid at
NOWPayments) for `token_max_age` seconds, and signs in again once when a payout call is
answered 401; concurrent callers share one sign-in. A payout POST follows the same retry
rule as a payment POST, and its `unique_external_id` is the reconciliation key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from domain.money import decimal_from_wire
from gateway import wire
from gateway.errors import (
    DUPLICATE_EXTERNAL_ID,
    GatewayConfigurationError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
)
from gateway.models import GatewayCurrency, GatewayPayment, GatewayPaymentPage, GatewayPayout, MinAmount

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 5.0  # seconds; a longer Retry-After is the caller's (the queue's) business
_MAX_MESSAGE_LENGTH = 300
_LISTING_PAGE_SIZE = 100
_LISTING_MAX_PAGES = 20


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any  # parsed JSON; None when a 2xx answer was not JSON and the caller allowed that
    text: str = ""


class _Attempt(Exception):
    """Internal: one failed attempt, with whether trying again is safe and useful."""

    def __init__(self, error: GatewayTransientError, *, retryable: bool, delay: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.delay = delay


class NowPaymentsClient:
    """NOWPayments API client. Never shows its API key, payout email, password or JWT in
    repr, logs or errors.

    `email`/`password` are only needed for payouts (`create_payout`, `get_payout`,
    `find_payout_by_external_id`); `validate_address` and `payout_fee` need only the API key.
    `token_max_age` is how long a JWT is reused before signing in again (NOWPayments issues
    them for about 5 minutes).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base: float = 0.2,
        email: str | SecretStr | None = None,
        password: SecretStr | None = None,
        token_max_age: float = 240.0,
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
        if (email is None) != (password is None):
            raise ValueError("give both email and password for payouts, or neither")
        if password is not None and not isinstance(password, SecretStr):
            raise TypeError("password must be a pydantic SecretStr")
        if email is not None and not isinstance(email, str | SecretStr):
            raise TypeError("email must be a str or a pydantic SecretStr")
        if token_max_age <= 0:
            raise ValueError("token_max_age must be positive")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        # The email is kept as a SecretStr too: it is half of the payout credentials.
        self._email = SecretStr(email) if isinstance(email, str) else email
        self._password = password
        self._token_max_age = token_max_age
        self._jwt: SecretStr | None = None
        self._jwt_obtained_at = 0.0
        self._auth_lock: asyncio.Lock | None = None
        self._auth_lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None and self._api_key.get_secret_value() else "unset"
        payouts = "set" if self._email is not None else "unset"
        return (
            f"NowPaymentsClient(base_url={self._base_url!r}, api_key=<{key}>, "
            f"payout_credentials=<{payouts}>, timeout={self._timeout}, max_attempts={self._max_attempts})"
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
        """Shorten gateway-supplied text and make sure it cannot echo a credential into logs."""
        for secret in (self._api_key, self._email, self._password, self._jwt):
            value = secret.get_secret_value() if secret is not None else ""
            if value:
                text = text.replace(value, "***")
        if len(text) > _MAX_MESSAGE_LENGTH:
            text = text[:_MAX_MESSAGE_LENGTH] + "..."
        return text

    def _headers(self, *, with_body: bool, bearer: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.get_secret_value()
        if bearer is not None:
            headers["Authorization"] = "Bearer " + bearer
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
        bearer: str | None,
        expect_json: bool,
    ) -> _Answer:
        session = self._get_session()
        what = f"{method} {path}"
        try:
            async with session.request(
                method,
                self._base_url + path,
                params=params,
                data=data,
                headers=self._headers(with_body=data is not None, bearer=bearer),
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
                if expect_json:
                    raise GatewayProtocolError(f"{what}: HTTP {status} with a body that is not JSON")
                return _Answer(status, None, raw.decode("utf-8", "replace"))
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
        expect_json: bool = True,
        payout_auth: bool = False,
    ) -> _Answer:
        """One API call, repeated on transient failures where that is safe.

        With `payout_auth` it carries the payout JWT (signed in on demand); a 401 answer (an
        expired or revoked token) makes it sign in again and repeat the call once. That repeat
        is safe even for a POST: a request refused for its credentials was not acted upon."""
        repeatable = method == "GET" if idempotent is None else idempotent

        async def send(bearer: str | None) -> _Answer:
            data = wire.dumps(json_body).encode("utf-8") if json_body is not None else None
            return await self._with_retries(
                lambda: self._attempt(
                    method,
                    path,
                    params=params,
                    data=data,
                    idempotent=repeatable,
                    bearer=bearer,
                    expect_json=expect_json,
                )
            )

        if not payout_auth:
            return await send(None)
        token = await self._bearer()
        try:
            return await send(token)
        except GatewayRejected as exc:
            if exc.http_status != 401:
                raise
            log.info("gateway: %s %s answered 401 %s; signing in again", method, path.split("?")[0], exc.code)
        return await send(await self._bearer(refused=token))

    async def _with_retries(self, attempt: Callable[[], Awaitable[_Answer]]) -> _Answer:
        """Await `attempt()` until it answers; a retryable failure is tried again after a
        backoff (or the gateway's Retry-After), up to `max_attempts` in all."""
        tries = 0
        while True:
            tries += 1
            try:
                return await attempt()
            except _Attempt as failure:
                if not failure.retryable or tries >= self._max_attempts:
                    log.warning(
                        "gateway request failed: %s (attempt %d/%d, giving up)",
                        failure.error,
                        tries,
                        self._max_attempts,
                    )
                    raise failure.error from failure.__cause__
                delay = failure.delay if failure.delay is not None else self._backoff(tries)
                log.info(
                    "gateway request failed: %s (attempt %d/%d, retrying in %.2fs)",
                    failure.error,
                    tries,
                    self._max_attempts,
                    delay,
                )
                await asyncio.sleep(delay)

    # -- payout sign-in (JWT) --------------------------------------------------------

    def _get_auth_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._auth_lock is None or self._auth_lock_loop is not loop:
            self._auth_lock = asyncio.Lock()
            self._auth_lock_loop = loop
        return self._auth_lock

    def _usable_token(self, refused: str | None) -> str | None:
        if self._jwt is None:
            return None
        token = self._jwt.get_secret_value()
        if token == refused or time.monotonic() - self._jwt_obtained_at >= self._token_max_age:
            return None
        return token

    async def _bearer(self, *, refused: str | None = None) -> str:
        """A JWT for payout calls. Signs in when there is none, when it is older than
        `token_max_age`, or when it is the `refused` one; concurrent callers wait for a single
        sign-in and then share its token."""
        token = self._usable_token(refused)
        if token is not None:
            return token
        if self._email is None or self._password is None:
            raise GatewayConfigurationError("payouts need the account email and password; none were configured")
        async with self._get_auth_lock():
            token = self._usable_token(refused)  # someone else may have signed in meanwhile
            if token is not None:
                return token
            self._jwt = None
            started = time.monotonic()
            credentials = {"email": self._email.get_secret_value(), "password": self._password.get_secret_value()}
            # Signing in creates nothing, so it is repeated like a GET on transient failures.
            answer = await self._request("POST", "/auth", json_body=credentials, idempotent=True)
            fresh = answer.body.get("token") if isinstance(answer.body, Mapping) else None
            if not isinstance(fresh, str) or not fresh.strip():
                raise GatewayProtocolError("POST /auth: no token in the answer")
            self._jwt = SecretStr(fresh.strip())
            self._jwt_obtained_at = started
            log.info("gateway: signed in for payouts")
            return fresh.strip()

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

    async def list_payments(
        self,
        *,
        limit: int = 100,
        page: int = 0,
        sort_by: str = "created_at",
        order_by: str = "asc",
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> GatewayPaymentPage:
        """GET /payment/: one page (from 0) of the merchant's payments, created between
        `date_from` and `date_to` (dates, or aware datetimes). Needs the payout login, as
        the gateway lists payments only behind its JWT."""
        if not 1 <= limit <= 500 or page < 0:
            raise ValueError("limit must be 1 to 500 and page at least 0")
        if order_by not in ("asc", "desc"):
            raise ValueError('order_by must be "asc" or "desc"')
        params = {"limit": str(limit), "page": str(page), "sortBy": sort_by, "orderBy": order_by}
        for key, moment in (("dateFrom", date_from), ("dateTo", date_to)):
            if moment is not None:
                params[key] = _query_moment(moment)
        answer = await self._request("GET", "/payment/", params=params, payout_auth=True)
        return GatewayPaymentPage.from_wire(answer.body)

    # -- payouts (mass payouts API) ----------------------------------------------------

    async def validate_address(self, currency: str, address: str, extra_id: str | None = None) -> bool:
        """POST /payout/validate-address: True when the gateway answers 200 "OK", False when
        it refuses the address with a 400 (its message says why). Other errors raise."""
        body: dict[str, Any] = {"address": _required_text(address, "address"), "currency": currency.lower()}
        if extra_id is not None:
            body["extra_id"] = extra_id
        try:
            # A pure check: repeating it on a timeout is harmless.
            answer = await self._request(
                "POST", "/payout/validate-address", json_body=body, idempotent=True, expect_json=False
            )
        except GatewayRejected as exc:
            if exc.http_status == 400:
                log.info("gateway: payout address refused for %s (%s)", currency.lower(), exc.code)
                return False
            raise
        if _says_ok(answer):
            return True
        raise GatewayProtocolError("POST /payout/validate-address: 2xx answer that is not OK")

    async def payout_fee(self, currency: str, amount: Decimal) -> Decimal:
        """GET /payout/fee: the network fee NOWPayments charges to send `amount` of `currency`."""
        params = {"currency": currency.lower(), "amount": wire.decimal_text(_positive_decimal(amount, "amount"))}
        answer = await self._request("GET", "/payout/fee", params=params)
        body = _mapping(answer.body, "GET /payout/fee")
        answered_currency = body.get("currency")
        if isinstance(answered_currency, str) and answered_currency.strip().lower() != currency.lower():
            raise GatewayProtocolError("GET /payout/fee: answer is for a different currency")
        try:
            fee = decimal_from_wire(body.get("fee"))
        except (TypeError, ValueError) as exc:
            raise GatewayProtocolError("GET /payout/fee: fee is not a number") from exc
        if fee is None or fee < 0:
            raise GatewayProtocolError("GET /payout/fee: no usable fee")
        return fee

    async def create_payout(
        self,
        *,
        address: str,
        currency: str,
        amount: Decimal,
        unique_external_id: str,
        extra_id: str | None = None,
        ipn_callback_url: str | None = None,
    ) -> GatewayPayout:
        """POST /payout with one withdrawal. Needs the JWT (signed in on demand).

        Not repeated after a timeout, a dropped connection or a 5xx: the payout may exist, so
        `GatewayTransientError` goes back to the caller, who reconciles with
        `find_payout_by_external_id(unique_external_id)`. If the gateway already has a payout
        with this `unique_external_id`, `GatewayRejected` with code `DUPLICATE_EXTERNAL_ID`
        is raised and no second payout is made.
        """
        external_id = _required_text(unique_external_id, "unique_external_id")
        withdrawal: dict[str, Any] = {
            "address": _required_text(address, "address"),
            "currency": currency.lower(),
            "amount": _positive_decimal(amount, "amount"),
            "unique_external_id": external_id,
        }
        if extra_id is not None:
            withdrawal["extra_id"] = extra_id
        if ipn_callback_url is not None:
            withdrawal["ipn_callback_url"] = ipn_callback_url
        try:
            answer = await self._request(
                "POST", "/payout", json_body={"withdrawals": [withdrawal]}, idempotent=False, payout_auth=True
            )
        except GatewayRejected as exc:
            if _is_duplicate_external_id(exc):
                raise GatewayRejected(exc.http_status, DUPLICATE_EXTERNAL_ID, exc.message) from exc
            raise
        if answer.status not in (200, 201):
            raise GatewayProtocolError(f"POST /payout: unexpected HTTP {answer.status}")
        withdrawals = GatewayPayout.many_from_wire(answer.body)
        mine = [w for w in withdrawals if w.unique_external_id == external_id]
        if not mine and len(withdrawals) == 1 and withdrawals[0].unique_external_id is None:
            mine = withdrawals  # the gateway did not echo the id back; ours was the only withdrawal
        if len(mine) != 1:
            raise GatewayProtocolError("POST /payout: answer does not hold exactly our withdrawal")
        return mine[0]

    async def get_payout(self, payout_id: str) -> GatewayPayout:
        """GET /payout/{id}. `payout_id` is the withdrawal id; the batch id of a one-withdrawal
        batch is accepted too (the gateway answers with the batch's withdrawals)."""
        payout_id = str(payout_id).strip()
        if not payout_id:
            raise ValueError("payout_id must not be empty")
        answer = await self._request("GET", "/payout/" + quote(payout_id, safe=""), payout_auth=True)
        withdrawals = GatewayPayout.many_from_wire(answer.body)
        mine = [w for w in withdrawals if w.payout_id == payout_id]
        if not mine and len(withdrawals) == 1 and withdrawals[0].batch_id == payout_id:
            mine = withdrawals
        if len(mine) != 1:
            raise GatewayProtocolError("GET /payout: answer is not for this payout")
        return mine[0]

    async def find_payout_by_external_id(self, unique_external_id: str) -> GatewayPayout | None:
        """The payout carrying `unique_external_id`, or None if the gateway has none.

        This lookup is the reconciliation path: after a crash, or after `create_payout` ended
        ambiguously (timeout, 5xx) or with `DUPLICATE_EXTERNAL_ID`, it tells whether the
        gateway acted on the request, without risking a second payout.

        The real API lists payouts with GET /payout (filters batch_id, status, date_from,
        date_to; order_by, order; limit, page); the simulator also filters on
        `unique_external_id`, which we send. Every page is filtered again here, so a gateway
        that ignores that parameter still yields a right answer, newest payouts first, within
        `_LISTING_MAX_PAGES` pages.
        """
        external_id = _required_text(unique_external_id, "unique_external_id")
        found: dict[str, GatewayPayout] = {}
        for page in range(_LISTING_MAX_PAGES):
            params = {
                "unique_external_id": external_id,
                "limit": str(_LISTING_PAGE_SIZE),
                "page": str(page),
                "order_by": "dateCreated",
                "order": "desc",
            }
            answer = await self._request("GET", "/payout", params=params, payout_auth=True)
            listed = GatewayPayout.many_from_wire(answer.body)
            for payout in listed:
                if payout.unique_external_id == external_id:
                    found[payout.payout_id] = payout
            if found or len(listed) < _LISTING_PAGE_SIZE:
                break
        if len(found) > 1:
            # The gateway promises uniqueness; two payouts for one withdrawal need a human.
            raise GatewayProtocolError("GET /payout: several payouts carry one unique_external_id")
        return next(iter(found.values()), None)


def _says_ok(answer: _Answer) -> bool:
    body = answer.body
    if isinstance(body, str):
        return body.strip().upper() == "OK"
    if isinstance(body, Mapping):
        return str(body.get("message", "")).strip().upper() == "OK" or body.get("result") is True
    return body is None and answer.text.strip().strip('"').upper() == "OK"


def _is_duplicate_external_id(exc: GatewayRejected) -> bool:
    """Whether a refused payout POST means "this unique_external_id is taken".

    The simulator answers 400 with code DUPLICATE_EXTERNAL_ID; a 409, or a message naming
    unique_external_id as existing/duplicate, is read the same way.
    """
    if exc.code == DUPLICATE_EXTERNAL_ID or exc.http_status == 409:
        return True
    message = exc.message.lower()
    return ("unique_external_id" in message or "external id" in message) and any(
        word in message for word in ("exist", "duplicate", "already", "taken")
    )


def _query_moment(moment: date) -> str:
    """YYYY-MM-DD for a date, UTC with milliseconds and "Z" for a datetime (the gateway's forms)."""
    if not isinstance(moment, datetime):
        return moment.isoformat()
    if moment.tzinfo is None:
        raise ValueError("date_from/date_to datetimes must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _required_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()


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
