"""Thin dramatiq actors: decode the message, call one stage, return.

Queue and actor names are the public message contract (README "Message contract").
`InvalidRequest` is never retried: the message is dead-lettered with its reason logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import dramatiq
import structlog

from domain.errors import InvalidRequest, InvalidTransition
from domain.rejections import RequestKind
from gateway.errors import GatewayError, GatewayProtocolError, GatewayTransientError
from services.commands import CreatePaymentRequest, PaymentMessage, WithdrawalMessage, WithdrawalRequest
from services.context import StageContext
from services.create_payment import create_payment as create_payment_stage
from services.errors import CreationInProgress, LeaseHeld, PayoutInProgress
from services.poll_status import poll_status as poll_status_stage
from services.process_withdrawal import process_withdrawal as process_withdrawal_stage
from services.rejections import record_refusal
from services.request_withdrawal import request_withdrawal as request_withdrawal_stage
from services.settle_deposit import settle_deposit as settle_deposit_stage
from workers.broker import queue_name
from workers.runtime import current_context
from workers.stopping import interruptible

log = structlog.get_logger(__name__)

QUEUE_CREATE_PAYMENT = "create-payment"
QUEUE_POLL_STATUS = "poll-status"
QUEUE_SETTLE_DEPOSIT = "settle-deposit"
QUEUE_PROCESS_WITHDRAWAL = "process-withdrawal"

# Transient failures (gateway down, database restart) retry with backoff from 1 s up to 5 min, 25 times
# (about 1.5 h in all), then dead-letter for an operator. Another worker holding a lease is not a failure.
_RETRY = {
    "max_retries": 25,
    "min_backoff": 1_000,
    "max_backoff": 300_000,
    "throws": (InvalidRequest, InvalidTransition),
}
_TIME_LIMIT_MS = 120_000


@dataclass(frozen=True)
class PipelineActors:
    create_payment: dramatiq.Actor
    poll_status: dramatiq.Actor
    settle_deposit: dramatiq.Actor
    request_withdrawal: dramatiq.Actor
    process_withdrawal: dramatiq.Actor


def _defer_to_scheduler(actor: str, subject_id: str, exc: Exception) -> None:
    """The gateway did not answer usefully. Polls and payout checks are driven by the scheduler, which
    comes back on its own schedule; retrying the message as well would multiply the calls in an outage."""
    log.warning(
        "gateway_unavailable_deferred", actor=actor, subject=subject_id, error=type(exc).__name__, detail=str(exc)[:200]
    )


def _leave_to_scheduler(actor: str, subject_id: str, exc: LeaseHeld) -> None:
    """Another holder's lease is live (expected under duplicate delivery). Retrying would spend the retry
    budget waiting for it (a dead holder keeps it for its whole length) and then dead-letter a message that
    was never wrong; the stage has made the scheduler come back when the lease ends, so finish here."""
    log.info("lease_held_left_to_scheduler", actor=actor, subject=subject_id, until=exc.until.isoformat())


@asynccontextmanager
async def refusal_recorded(
    ctx: StageContext, kind: RequestKind, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncIterator[None]:
    """A request message refused for good leaves its answer under its request_id before it is dead-lettered.

    If the record cannot be written (database down), that error propagates instead and the message is retried.
    """
    try:
        yield
    except InvalidRequest as exc:
        await record_refusal(ctx, kind, args, kwargs, exc)
        raise


def declare_actors(broker: dramatiq.Broker) -> PipelineActors:
    """Register every actor on ``broker`` (once per broker)."""

    async def create_payment(*args: Any, **kwargs: Any) -> None:
        ctx = current_context()
        async with refusal_recorded(ctx, RequestKind.DEPOSIT, args, kwargs):
            request = CreatePaymentRequest.from_message(args, kwargs)
            try:
                await create_payment_stage(ctx, request)
            except CreationInProgress as exc:
                _leave_to_scheduler("create_payment", request.request_id, exc)

    async def poll_status(*args: Any, **kwargs: Any) -> None:
        payment_id = PaymentMessage.from_message(args, kwargs).payment_id
        try:
            await poll_status_stage(current_context(), payment_id)
        except (GatewayTransientError, GatewayProtocolError) as exc:
            _defer_to_scheduler("poll_status", payment_id, exc)

    async def settle_deposit(*args: Any, **kwargs: Any) -> None:
        await settle_deposit_stage(current_context(), PaymentMessage.from_message(args, kwargs).payment_id)

    async def request_withdrawal(*args: Any, **kwargs: Any) -> None:
        ctx = current_context()
        async with refusal_recorded(ctx, RequestKind.WITHDRAWAL, args, kwargs):
            await request_withdrawal_stage(ctx, WithdrawalRequest.from_message(args, kwargs))

    async def process_withdrawal(*args: Any, **kwargs: Any) -> None:
        withdrawal_id = WithdrawalMessage.from_message(args, kwargs).withdrawal_id
        try:
            await process_withdrawal_stage(current_context(), withdrawal_id)
        except PayoutInProgress as exc:
            _leave_to_scheduler("process_withdrawal", withdrawal_id, exc)
        except GatewayError as exc:  # down, garbled, or refusing our credentials: the scheduler comes back
            _defer_to_scheduler("process_withdrawal", withdrawal_id, exc)

    def declare(fn: Any, queue: str) -> dramatiq.Actor:
        return dramatiq.actor(
            interruptible(fn),
            broker=broker,
            actor_name=fn.__name__,
            queue_name=queue_name(broker, queue),
            time_limit=_TIME_LIMIT_MS,
            **_RETRY,
        )

    return PipelineActors(
        create_payment=declare(create_payment, QUEUE_CREATE_PAYMENT),
        poll_status=declare(poll_status, QUEUE_POLL_STATUS),
        settle_deposit=declare(settle_deposit, QUEUE_SETTLE_DEPOSIT),
        request_withdrawal=declare(request_withdrawal, QUEUE_PROCESS_WITHDRAWAL),
        process_withdrawal=declare(process_withdrawal, QUEUE_PROCESS_WITHDRAWAL),
    )
