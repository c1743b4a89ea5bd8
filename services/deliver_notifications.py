"""Deliver a subject's notification events to NOTIFY_WEBHOOK_URL, oldest first, at least once.

Each attempt is claimed under a lease in its own short transaction, the webhook is called with no
transaction open, and the outcome is recorded in another, only if the lease is still ours. A
subject's next event is taken only once the earlier one is delivered or given up, so a receiver
never sees one payment's or withdrawal's events out of order. A failure schedules the next attempt
(the scheduler's sweep enqueues the subject again when it is due); after NOTIFY_GIVE_UP_AFTER
seconds of failures the event is given up (logged once, still readable through the events API)
and the subject's later events go on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg
import structlog

from domain.notification_retries import gives_up, retry_delay
from settings import Settings
from storage import outbox
from storage.db import transaction
from webhooks.sender import SendResult, WebhookSender
from webhooks.signer import WebhookSigner

log = structlog.get_logger(__name__)

# Events sent per run; the sweep brings the subject back for the rest. Kept so a run stays far
# inside the actor's time limit even when every send takes the whole timeout.
MAX_EVENTS_PER_RUN = 20


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    given_up: int
    stopped_because: str  # "none" (nothing pending), "busy", "waiting", "failed" (retry scheduled),
    # "lease_lost", "more" (run cap reached), "not_configured"


def sender_from_settings(settings: Settings) -> WebhookSender:
    url, key = settings.notify_webhook_url, settings.notify_webhook_key
    if url is None or key is None:
        raise RuntimeError("NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET are not set")
    return WebhookSender(url, WebhookSigner(key), timeout=settings.notify_webhook_timeout)


async def deliver_notifications(
    pool: asyncpg.Pool, settings: Settings, subject_id: str, *, sender: WebhookSender | None = None
) -> DeliveryReport:
    """Send the subject's due events in order until one fails, none is due, or the run cap is reached."""
    if settings.notify_webhook_url is None:
        return DeliveryReport(0, 0, "not_configured")
    own_sender = sender is None
    active = sender or sender_from_settings(settings)
    delivered = given_up = 0
    try:
        for _ in range(MAX_EVENTS_PER_RUN):
            async with transaction(pool) as conn:
                claim = await outbox.claim_next(conn, subject_id, lease_seconds=settings.notify_lease_seconds)
            if claim.outcome != "claimed":
                return DeliveryReport(delivered, given_up, claim.outcome)
            assert claim.event is not None and claim.token is not None
            result = await active.send(claim.event.id, claim.event.payload.encode())
            outcome = await _record(pool, settings, claim, result)
            if outcome == "delivered":
                delivered += 1
            elif outcome == "given_up":
                given_up += 1
            else:
                return DeliveryReport(delivered, given_up, outcome)
        return DeliveryReport(delivered, given_up, "more")
    finally:
        if own_sender:
            await active.close()


async def _record(pool: asyncpg.Pool, settings: Settings, claim: outbox.Claim, result: SendResult) -> str:
    """Write down one attempt's outcome: "delivered", "given_up", "failed" or "lease_lost"."""
    event, token = claim.event, claim.token
    assert event is not None and token is not None and claim.now is not None
    async with transaction(pool) as conn:
        if result.delivered:
            kept = await outbox.record_delivered(conn, event.id, token)
            outcome = "delivered"
        else:
            first = event.first_attempt_at or claim.now
            give_up = gives_up(first, claim.now, settings.notify_give_up_after)
            delay = None if give_up else _next_delay(settings, event.attempts, result)
            kept = await outbox.record_failure(conn, event.id, token, error=result.error or "failed", retry_in=delay)
            outcome = "given_up" if give_up else "failed"
    if not kept:
        # Our lease ran out and another worker took the event over: its outcome is the one that counts.
        log.warning("notification_lease_lost", event_id=event.id, subject=event.subject_id)
        return "lease_lost"
    if outcome == "given_up":
        log.error(
            "notification_given_up",
            event_id=event.id,
            type=event.type,
            subject=event.subject_id,
            attempts=event.attempts,
            reason=result.error,
        )
    elif outcome == "failed":
        log.warning(
            "notification_delivery_failed",
            event_id=event.id,
            subject=event.subject_id,
            attempts=event.attempts,
            reason=result.error,
        )
    return outcome


def _next_delay(settings: Settings, failed_attempts: int, result: SendResult) -> float:
    return retry_delay(
        failed_attempts, settings.notify_retry_schedule, rand=random.random(), retry_after=result.retry_after
    )
