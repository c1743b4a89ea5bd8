"""The dramatiq broker on Redis, with the middleware every worker process needs."""

from __future__ import annotations

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from domain.errors import InvalidRequest
from settings import Settings
from workers.runtime import StageRuntime

log = structlog.get_logger(__name__)

# dramatiq re-queues a dead worker's messages only during "maintenance", run on a random share of
# broker calls (0.1 % by default). 1 % brings recovery on a quiet queue down from tens of minutes.
MAINTENANCE_CHANCE = 10_000  # per million broker calls


class RejectionLog(Middleware):
    """Logs why a message was refused, at the moment dramatiq dead-letters it without retry."""

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        if isinstance(exception, InvalidRequest):
            log.error(
                "message_dead_lettered",
                queue=message.queue_name,
                actor=message.actor_name,
                message_id=message.message_id,
                reason=str(exception),
            )


def build_broker(
    settings: Settings, *, namespace: str = "dramatiq", runtime: StageRuntime | None = None
) -> RedisBroker:
    """A Redis broker with our runtime (event loop, pool, gateway client) and rejection logging.

    ``runtime=None`` builds a broker for senders only (the web process, the scheduler).
    """
    broker = RedisBroker(
        url=settings.redis_url.get_secret_value(),
        namespace=namespace,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    if runtime is not None:
        broker.add_middleware(runtime)
    broker.add_middleware(RejectionLog())
    dramatiq.set_broker(broker)
    return broker
