"""HTTP calls that outlast the chaos: retried on connection errors and 5xx until a deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

RETRY_DEADLINE_S = 180.0


class Unanswered(Exception):
    """A call still failing (no answer or 5xx) at its deadline."""


class Http:
    def __init__(self, session: aiohttp.ClientSession, *, web_url: str, sim_url: str, api_token: str,
                 operator_token: str) -> None:  # fmt: skip
        self.session = session
        self.web_url = web_url
        self.sim_url = sim_url
        self.api_headers = {"Authorization": f"Bearer {api_token}"}
        self.operator_headers = {"Authorization": f"Bearer {operator_token}"}
        self.retries = 0

    async def call(self, method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
                   deadline_s: float = RETRY_DEADLINE_S) -> tuple[int, Any]:  # fmt: skip
        """The first answer below 500 (status, JSON body or None)."""
        deadline = time.monotonic() + deadline_s
        pause = 0.1
        last = ""
        while time.monotonic() < deadline:
            try:
                async with self.session.request(
                    method, url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=15)
                ) as response:
                    if response.status < 500:
                        try:
                            return response.status, await response.json(content_type=None)
                        except ValueError:
                            return response.status, None
                    last = f"{response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
            self.retries += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        raise Unanswered(f"{method} {url}: {last}")

    async def api(self, method: str, path: str, body: Any = None, *, operator: bool = False) -> tuple[int, Any]:
        headers = self.operator_headers if operator else self.api_headers
        return await self.call(method, self.web_url + path, body=body, headers=headers)

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.call(method, self.sim_url + path, body=body)
        if status >= 300:
            raise Unanswered(f"simulator {method} {path}: {status} {answer}")
        return answer
