"""Sending follow-up messages through the broker's declared actors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import dramatiq

from services.context import Enqueuer, FollowUp
from workers.batch import enqueue_many

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

    def message(self, follow_up: FollowUp) -> dramatiq.Message:
        """The message ``follow_up`` is sent as, exactly as its actor's ``send`` (or the send by name) builds it."""
        stage, subject_id = follow_up
        if stage == ACTOR_DELIVER_NOTIFICATIONS:
            return _notification_message(subject_id)
        return self._broker.get_actor(stage).message(subject_id)

    async def send_many(self, follow_ups: Sequence[FollowUp]) -> None:
        """All of ``follow_ups`` in pipelined chunks (Redis) or one after another on one thread (RabbitMQ)."""
        if follow_ups:
            messages = [self.message(follow_up) for follow_up in follow_ups]
            await asyncio.to_thread(enqueue_many, self._broker, messages)

    async def poll_status(self, payment_id: str) -> None:
        await self.send("poll_status", payment_id)

    async def settle_deposit(self, payment_id: str) -> None:
        await self.send("settle_deposit", payment_id)

    async def process_withdrawal(self, withdrawal_id: str) -> None:
        await self.send("process_withdrawal", withdrawal_id)

    async def deliver_notifications(self, subject_id: str) -> None:
        # Sent by name, so processes that never declare the notification actor (web, scheduler) can send it.
        await asyncio.to_thread(self._broker.enqueue, _notification_message(subject_id))


def _notification_message(subject_id: str) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name=QUEUE_DELIVER_NOTIFICATIONS,
        actor_name=ACTOR_DELIVER_NOTIFICATIONS,
        args=(subject_id,),
        kwargs={},
        options={},
    )
