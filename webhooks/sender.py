"""Sending one signed webhook with aiohttp and saying what happened.

2xx is delivered; anything else (3xx included: redirects are not followed), a timeout or a
connection error is a failure to retry. A ``Retry-After`` in seconds is passed back to the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from webhooks.signer import WebhookSigner

USER_AGENT = "payments-pipeline-webhooks/1"
_MAX_ANSWER_BYTES = 65_536


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    status: int | None
    error: str | None  # why it failed, short and free of secrets; None when delivered
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:  # the HTTP-date form is rare from webhook receivers; the schedule decides then
        return None
    return seconds if seconds >= 0 else None


class WebhookSender:
    """One aiohttp session for many deliveries; close it when done."""

    def __init__(self, url: str, signer: WebhookSigner, *, timeout: float) -> None:
        self._url = url
        self._signer = signer
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def close(self) -> None:
        await self._session.close()

    async def send(self, webhook_id: str, body: bytes, *, timestamp: int | None = None) -> SendResult:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = self._signer.headers(webhook_id, stamp, body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        try:
            async with self._session.post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(_MAX_ANSWER_BYTES)  # drained, bounded: the answer's body is not used
                if 200 <= response.status < 300:
                    return SendResult(True, response.status, None)
                return SendResult(
                    False,
                    response.status,
                    f"HTTP {response.status}",
                    _retry_after(response.headers.get("retry-after")),
                )
        except TimeoutError:
            return SendResult(False, None, "timed out")
        except aiohttp.ClientError as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {str(exc)[:200]}")
