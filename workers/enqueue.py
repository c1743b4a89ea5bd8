"""Sending follow-up messages through the broker's declared actors."""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq

from services.context import Enqueuer


class ActorEnqueuer(Enqueuer):
    """Looks actors up by their contract name and sends from a thread (the Redis client blocks)."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    async def send(self, actor_name: str, *args: Any, **kwargs: Any) -> dramatiq.Message:
        actor = self._broker.get_actor(actor_name)
        return await asyncio.to_thread(actor.send, *args, **kwargs)

    async def poll_status(self, payment_id: str) -> None:
        await self.send("poll_status", payment_id)

    async def settle_deposit(self, payment_id: str) -> None:
        await self.send("settle_deposit", payment_id)

    async def process_withdrawal(self, withdrawal_id: str) -> None:
        await self.send("process_withdrawal", withdrawal_id)
