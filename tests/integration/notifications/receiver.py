"""A webhook receiver as an integrator would write one: aiohttp on loopback, every delivery verified with
the `standardwebhooks` package, de-duplicated by `webhook-id`.

Knobs for the tests: answer 500 while `failing` is set, or take the next request in and never answer it
(`hang_next`, for a sender killed mid-delivery), or hold each request a while (`hold_seconds`).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections import Counter, defaultdict
from typing import Any

import standardwebhooks
from aiohttp import web

from tests.ports import free_port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


class Receiver:
    def __init__(self, secret: str) -> None:
        self.verifier = standardwebhooks.Webhook(secret)
        self.port = free_port()
        self.failing = False
        self.hang_next = False
        self.hold_seconds = 0.0
        self.requests = 0
        self.refused = 0  # answered 500 on purpose
        self.unverified: list[str] = []
        self.processed: dict[str, dict[str, Any]] = {}  # webhook-id -> body, first delivery only
        self.duplicates = 0
        self.by_subject: dict[str, list[str]] = defaultdict(list)  # subject -> event ids, as processed
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight_per_id = 0
        self.hung = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        raw = await request.read()
        try:
            body = self.verifier.verify(raw, dict(request.headers))
        except standardwebhooks.WebhookVerificationError as exc:
            self.unverified.append(str(exc))
            return web.Response(status=401)
        event_id = request.headers["webhook-id"]
        assert body["id"] == event_id
        self.in_flight[event_id] += 1
        self.max_in_flight_per_id = max(self.max_in_flight_per_id, self.in_flight[event_id])
        try:
            if self.failing:
                self.refused += 1
                return web.Response(status=500)
            self._process(event_id, body)
            if self.hang_next:  # processed, but the answer never leaves: the sender dies waiting
                self.hang_next = False
                self.hung.set()
                await asyncio.sleep(3600)
            if self.hold_seconds:
                await asyncio.sleep(self.hold_seconds)
            return web.Response(status=204)
        finally:
            self.in_flight[event_id] -= 1

    def _process(self, event_id: str, body: dict[str, Any]) -> None:
        if event_id in self.processed:
            self.duplicates += 1
            return
        self.processed[event_id] = body
        data = body["data"]
        subject = data.get("internal_payment_id") or data.get("internal_withdrawal_id") or data["request_id"]
        self.by_subject[subject].append(event_id)
