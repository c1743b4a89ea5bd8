"""The HTTP side of the NOWPayments client: one aiohttp session, credentials, retries, payout sign-in.

Idempotent requests (GET) are retried on transient failures with exponential backoff and
jitter; a POST that creates something is retried only when we know the gateway did not act on
it (connection never established, or HTTP 429), because a timeout or a dropped connection
after sending may already have created it. Payout calls carry a JWT from ``POST /auth``,
signed in on first use, kept for `token_max_age` seconds and renewed once when refused (401);
concurrent callers share one sign-in. Nothing here ever shows a credential.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from pydantic import SecretStr

from gateway import wire
from gateway.errors import (
    GatewayConfigurationError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
)

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 5.0  # seconds; a longer Retry-After is the caller's (the queue's) business
_MAX_MESSAGE_LENGTH = 300


@dataclass(frozen=True, slots=True)
class Answer:
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


class GatewayTransport:
    """Session, credentials, retry rules and payout sign-in shared by every API call."""

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
            f"{type(self).__name__}(base_url={self._base_url!r}, api_key=<{key}>, "
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
    ) -> Answer:
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

        return self._read_answer(what, status, retry_after, raw, idempotent=idempotent, expect_json=expect_json)

    def _read_answer(
        self, what: str, status: int, retry_after: str | None, raw: bytes, *, idempotent: bool, expect_json: bool
    ) -> Answer:
        """What one HTTP answer means: the parsed body, or the error to raise (and whether to try again)."""
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
                return Answer(status, None, raw.decode("utf-8", "replace"))
            return Answer(status, body)

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
    ) -> Answer:
        """One API call, repeated on transient failures where that is safe.

        With `payout_auth` it carries the payout JWT (signed in on demand); a 401 answer (an
        expired or revoked token) makes it sign in again and repeat the call once. That repeat
        is safe even for a POST: a request refused for its credentials was not acted upon."""
        repeatable = method == "GET" if idempotent is None else idempotent

        async def send(bearer: str | None) -> Answer:
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

    async def _with_retries(self, attempt: Callable[[], Awaitable[Answer]]) -> Answer:
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

