"""The create-payment queue consumed in groups: many creations per message fetch and ack.

Senders are unchanged: they enqueue ``create_payment(...)`` as before. In the worker, the consumer of
the ``create-payment`` queue fetches up to a group of messages at once, runs the create-payment stage
for every plain first delivery among them concurrently (services/create_group.py) and acks the ones
that succeeded together in one Redis call. Everything else goes through dramatiq's ordinary path, one
message at a time to the ``create_payment`` actor, with its retries, refusal records and dead-lettering:
members the group handed back (refused, gateway error, lease held elsewhere), redeliveries, malformed or
delayed messages, and messages carrying callbacks. Every message is a member of its own, as it would be
an actor call of its own: duplicates of one request meet in the database (its request_id lock and the
creation lease), exactly as concurrent deliveries to the ordinary actor do.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.asyncio import get_event_loop_thread

from domain.errors import InvalidRequest
from services.commands import CreatePaymentRequest
from services.create_group import create_group
from services.settle_batch import GroupOutcome
from settings import Settings
from workers.broker import PaymentsRedisBroker
from workers.runtime import current_context
from workers.settle_group import GroupSettlingConsumer, plain_first_delivery
from workers.stopping import IN_FLIGHT

QUEUE = "create-payment"
ACTOR = "create_payment"

Member = tuple[str, CreatePaymentRequest]


def groupable_request(message: Message[Any]) -> tuple[str, Member] | None:
    """The message's key (its id) and its request, if the group may take it."""
    if not plain_first_delivery(message, ACTOR):
        return None
    try:
        request = CreatePaymentRequest.from_message(message.args, message.kwargs)
    except InvalidRequest:
        return None
    return message.message_id, (message.message_id, request)


def create_on_runtime_loop(members: list[Member]) -> GroupOutcome:
    """Run the group on the worker's event loop, where its database pool and gateway client live."""
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("the worker runtime has not booted")
    return loop_thread.run_coroutine(_create_interruptibly(members))


async def _create_interruptibly(members: list[Member]) -> GroupOutcome:
    """The group as one of the actors in flight: a stop gives it the same grace, then cancels it; its
    unfinished members come back as left, and the stopping consumer puts them back on the queue at once."""
    with IN_FLIGHT.tracked():
        return await create_group(current_context(), members)


def install_group_creation(broker: dramatiq.Broker, settings: Settings) -> None:
    """Consume create-payment in groups of ``PAYMENTS_CREATE_GROUP`` (1 keeps one message at a time). Redis only."""
    if settings.payments_create_group <= 1 or not isinstance(broker, PaymentsRedisBroker):
        return

    def consumer(broker: PaymentsRedisBroker, queue_name: str, prefetch: int, timeout: int) -> GroupSettlingConsumer:
        return GroupSettlingConsumer(
            broker,
            queue_name,
            prefetch,
            timeout,
            group_size=settings.payments_create_group,
            settle=create_on_runtime_loop,
            groupable=groupable_request,
        )

    broker.consumer_factories[QUEUE] = consumer
