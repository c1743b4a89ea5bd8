"""The deliver-notifications actor: decode a subject id, deliver that subject's due events, return.

Failed deliveries are not dramatiq retries: the stage records when to try again and the scheduler's
sweep enqueues the subject then. Only a message that does not decode is refused (dead-lettered).
"""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker

from domain.errors import InvalidRequest
from services.commands import NotificationMessage
from services.deliver_notifications import deliver_notifications as deliver_notifications_stage
from workers.enqueue import ACTOR_DELIVER_NOTIFICATIONS, QUEUE_DELIVER_NOTIFICATIONS
from workers.runtime import current_context

log = structlog.get_logger(__name__)

_TIME_LIMIT_MS = 900_000  # far above MAX_EVENTS_PER_RUN sends at the longest timeout
# Database hiccups retry quickly; a lost message is found again by the sweep anyway.
_RETRY = {"max_retries": 10, "min_backoff": 1_000, "max_backoff": 60_000, "throws": (InvalidRequest,)}


def subject_id_message(args: Any, kwargs: Any) -> str:
    """``deliver_notifications(subject_id)``: a payment id, a withdrawal id or a request id."""
    return NotificationMessage.from_message(args, kwargs).subject_id


def declare_notification_actors(broker: RedisBroker) -> dramatiq.Actor:
    """Register the deliver-notifications actor on ``broker`` (once per broker)."""

    async def deliver_notifications(*args: Any, **kwargs: Any) -> None:
        subject_id = subject_id_message(args, kwargs)
        context = current_context()
        report = await deliver_notifications_stage(context.pool, context.settings, subject_id)
        if report.delivered or report.given_up:
            log.info(
                "notifications_delivered",
                subject=subject_id,
                delivered=report.delivered,
                given_up=report.given_up,
                stopped_because=report.stopped_because,
            )

    return dramatiq.actor(
        deliver_notifications,
        broker=broker,
        actor_name=ACTOR_DELIVER_NOTIFICATIONS,
        queue_name=QUEUE_DELIVER_NOTIFICATIONS,
        time_limit=_TIME_LIMIT_MS,
        **_RETRY,
    )
