"""Sending follow-up messages through the broker's declared actors."""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq

from services.context import Enqueuer

# The notification actor's contract names (declared in workers/notification_actors.py).
QUEUE_DELIVER_NOTIFICATIONS = "deliver-notifications"
ACTOR_DELIVER_NOTIFICATIONS = "deliver_notifications"


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

    async def deliver_notifications(self, subject_id: str) -> None:
        # Sent by name, so processes that never declare the notification actor (web, scheduler) can send it.
        message = dramatiq.Message(
            queue_name=QUEUE_DELIVER_NOTIFICATIONS,
            actor_name=ACTOR_DELIVER_NOTIFICATIONS,
            args=(subject_id,),
            kwargs={},
            options={},
        )
        await asyncio.to_thread(self._broker.enqueue, message)
