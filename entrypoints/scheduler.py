"""The scheduler: enqueues status polls (and lost settlements) for payments that are due.

Due payments are found through the partial index on ``next_poll_at`` and claimed with
``FOR UPDATE SKIP LOCKED`` while their next look is pushed out, so two schedulers never take
the same payment and the cost of a tick grows with the number due, not the number stored.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import redis
import structlog

from domain.payments import Payment
from services.context import Enqueuer, FollowUp, PartialSend
from settings import Settings
from storage import outbox, payments, withdrawals
from storage.db import create_pool, transaction

log = structlog.get_logger(__name__)


def claim_lease_seconds(settings: Settings) -> float:
    """How far a claimed payment's next look is pushed out; the stage it triggers sets the real one."""
    return max(60.0, settings.payments_poll_min_interval)


async def poll_due_payments(pool: asyncpg.Pool, enqueue: Enqueuer, settings: Settings) -> int:
    """One scheduler tick: claim up to a batch of due payments and enqueue their next stage."""
    async with transaction(pool) as conn:
        due = await payments.claim_due(
            conn, limit=settings.payments_scheduler_batch, lease_seconds=claim_lease_seconds(settings)
        )
    await _send_all(
        enqueue, [_next_stage(payment) for payment in due], on_partial=lambda sent: _release_unsent(pool, due[sent:])
    )
    if due:
        log.info("scheduler_enqueued", count=len(due))
    return len(due)


async def _release_unsent(pool: asyncpg.Pool, unsent: list[Payment]) -> None:
    """Claims whose poll was never sent fall due again at once (the lease alone would bring them back later)."""
    try:
        async with pool.acquire() as conn:
            released = await payments.release_claims(conn, unsent)
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("scheduler_release_failed", count=len(unsent), error=type(exc).__name__)
        return
    log.warning("scheduler_enqueue_stopped", unsent=len(unsent), released=released)


async def check_due_withdrawals(pool: asyncpg.Pool, enqueue: Enqueuer, settings: Settings) -> int:
    """Enqueue process-withdrawal for payouts in flight whose status is due to be checked."""
    async with transaction(pool) as conn:
        due = await withdrawals.claim_due(
            conn, limit=settings.payments_scheduler_batch, lease_seconds=claim_lease_seconds(settings)
        )
    # the claims' lease brings back any left unsent
    await _send_all(enqueue, [FollowUp("process_withdrawal", withdrawal.id) for withdrawal in due])
    if due:
        log.info("scheduler_enqueued_withdrawal_checks", count=len(due))
    return len(due)


async def enqueue_due_notifications(pool: asyncpg.Pool, enqueue: Enqueuer, settings: Settings) -> int:
    """Enqueue deliver-notifications for subjects whose oldest pending event is due: new events whose
    enqueue was lost, retries whose time has come, and events whose worker died mid-delivery."""
    if settings.notify_webhook_url is None:
        return 0
    async with transaction(pool) as conn:
        subjects = await outbox.claim_due_subjects(
            conn, limit=settings.payments_scheduler_batch, requeue_after=settings.notify_requeue_after
        )
    # the subjects' requeue time brings back any left unsent
    await _send_all(enqueue, [FollowUp("deliver_notifications", s) for s in subjects])
    if subjects:
        log.info("scheduler_enqueued_notifications", count=len(subjects))
    return len(subjects)


async def _send_all(
    enqueue: Enqueuer, follow_ups: list[FollowUp], *, on_partial: Callable[[int], Awaitable[None]] | None = None
) -> None:
    """Send them all. When the broker fails part of the way, ``on_partial`` is told how many were sent, then the
    broker's error is raised."""
    try:
        await enqueue.send_many(follow_ups)
        return
    except PartialSend as stopped:
        failure = stopped
    if on_partial is not None:
        await on_partial(failure.sent)
    raise failure.__cause__ or failure


def _next_stage(payment: Payment) -> FollowUp:
    if payment.is_terminal or payment.final_at is not None:
        if payment.settled_at is None and payment.credit_usd:
            return FollowUp("settle_deposit", payment.id)
    return FollowUp("poll_status", payment.id)


async def sweep_every(interval_s: float, sweep: Callable[[], object], stop: asyncio.Event) -> None:
    """Run the blocking ``sweep`` every ``interval_s`` until ``stop`` is set, on a thread of its own: a slow
    tick, a full default executor or a slow sweep never delays the next one by more than the sweep itself."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dead-worker-sweep") as executor:
        while not stop.is_set():
            try:
                await loop.run_in_executor(executor, sweep)
            except Exception:  # never let one bad sweep end recovery for good
                log.exception("dead_worker_sweep_crashed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                pass


async def run_scheduler(
    settings: Settings,
    enqueue: Enqueuer,
    *,
    stop: asyncio.Event | None = None,
    requeue_dead_workers: Callable[[], object] | None = None,
    sweep_interval_s: float = 1.0,
) -> None:
    """Tick until ``stop`` is set (SIGTERM/SIGINT set it when run as a process).

    ``requeue_dead_workers`` (blocking) puts the messages of worker processes that stopped heartbeating
    back on their queues (workers/recovery.py); it runs every ``sweep_interval_s`` on its own timer and
    thread, whatever the tick length and however long a tick takes.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop_signal() -> None:
        # Platforms may signal again; ignore later signals until we exit (else one arriving after the loop
        # closed would find the default action back and kill the process mid-exit).
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_stop_signal)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            break
    sweeping = None
    if requeue_dead_workers is not None:
        sweeping = asyncio.create_task(sweep_every(sweep_interval_s, requeue_dead_workers, stop))
    try:
        await _tick_until_stopped(settings, enqueue, stop)
    finally:
        stop.set()
        if sweeping is not None:
            await sweeping


async def _tick_until_stopped(settings: Settings, enqueue: Enqueuer, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    log.info("scheduler_started", tick_seconds=settings.payments_scheduler_tick)
    try:
        while not stop.is_set():
            try:
                count = max(
                    await poll_due_payments(pool, enqueue, settings),
                    await check_due_withdrawals(pool, enqueue, settings),
                    await enqueue_due_notifications(pool, enqueue, settings),
                )
            except (OSError, asyncpg.PostgresError, redis.RedisError) as exc:  # a blip: the next tick retries
                log.warning("scheduler_tick_failed", error=type(exc).__name__, detail=str(exc)[:200])
                count = 0
            if count < settings.payments_scheduler_batch:  # a full batch means more are due: go again now
                try:
                    await asyncio.wait_for(stop.wait(), timeout=settings.payments_scheduler_tick)
                except TimeoutError:
                    pass
    finally:
        await pool.close()
        log.info("scheduler_stopped")
