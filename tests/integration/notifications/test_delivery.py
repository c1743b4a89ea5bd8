"""Delivery to a real webhook receiver that verifies every request with `standardwebhooks`.

The receiver de-duplicates by `webhook-id` and must see each event exactly once, in order per subject:
while it answers 500 for a stretch, when two workers race for one subject, when an event is given up,
and when a worker process is SIGKILLed mid-delivery (the lease runs out and another worker delivers).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from entrypoints.scheduler import run_scheduler
from services.deliver_notifications import deliver_notifications
from services.replay_events import replay_events
from storage import outbox
from tests.integration.notifications.helpers import delivery_settings, visible_ids, write_story
from tests.integration.notifications.receiver import Receiver, new_secret
from tests.integration.stack import eventually

ROOT = Path(__file__).resolve().parents[3]


async def _deliver_until_idle(pool: asyncpg.Pool, settings, subject: str) -> None:  # type: ignore[no-untyped-def]
    """Run the stage again and again (as the sweep would) until the subject has nothing pending."""

    async def done() -> bool:
        report = await deliver_notifications(pool, settings, subject)
        return report.stopped_because == "none"

    await eventually(done, timeout=60, interval=0.05)


async def test_events_arrive_signed_once_and_in_order(pool: asyncpg.Pool, database_url: str) -> None:
    secret = new_secret()
    async with Receiver(secret) as receiver:
        settings = delivery_settings(database_url, receiver.url, secret)
        stories = {subject: await write_story(pool, subject) for subject in ("PAY_A", "PAY_B")}
        await visible_ids(pool, None, 8)
        for subject in stories:
            await _deliver_until_idle(pool, settings, subject)
    assert receiver.unverified == []
    assert receiver.duplicates == 0
    assert dict(receiver.by_subject) == stories
    body = receiver.processed[stories["PAY_A"][-1]]
    assert body["type"] == "deposit.credited" and body["data"]["internal_payment_id"] == "PAY_A"


async def test_a_stretch_of_500s_then_everything_exactly_once_in_order(
    pool: asyncpg.Pool, database_url: str, redis_namespace: str
) -> None:
    """Real dramatiq workers and the real scheduler loop: failures are retried on the schedule by the sweep."""
    import dramatiq

    from workers.broker import build_broker
    from workers.enqueue import ActorEnqueuer
    from workers.notification_actors import declare_notification_actors
    from workers.runtime import StageRuntime

    secret = new_secret()
    async with Receiver(secret) as receiver:
        settings = delivery_settings(database_url, receiver.url, secret)
        broker = build_broker(
            settings, namespace=redis_namespace, runtime=StageRuntime(settings, exit_on_boot_failure=False)
        )
        declare_notification_actors(broker)
        worker = dramatiq.Worker(broker, worker_threads=3, worker_timeout=50)
        worker.start()
        stop = asyncio.Event()
        scheduler = asyncio.create_task(run_scheduler(settings, ActorEnqueuer(broker), stop=stop))
        try:
            receiver.failing = True
            stories = {subject: await write_story(pool, subject) for subject in ("PAY_A", "PAY_B", "PAY_C")}
            await eventually(lambda: _at_least(receiver, 12), timeout=60)  # every subject refused a few times
            receiver.failing = False
            await eventually(lambda: _all_processed(receiver, 12), timeout=60)
        finally:
            stop.set()
            await scheduler
            await asyncio.to_thread(worker.stop, 10_000)
            broker.close()
    assert receiver.unverified == []
    assert dict(receiver.by_subject) == stories
    async with pool.acquire() as conn:
        attempts = await conn.fetchval("SELECT sum(attempts) FROM outbox_events WHERE delivered_at IS NOT NULL")
        pending = await conn.fetchval("SELECT count(*) FROM outbox_events WHERE delivered_at IS NULL")
    assert pending == 0 and attempts > 12


async def _at_least(receiver: Receiver, refused: int) -> bool:
    return receiver.refused >= refused


async def _all_processed(receiver: Receiver, count: int) -> bool:
    return len(receiver.processed) >= count


async def test_two_workers_on_one_subject_never_send_the_same_event_at_once(
    pool: asyncpg.Pool, database_url: str
) -> None:
    secret = new_secret()
    async with Receiver(secret) as receiver:
        receiver.hold_seconds = 0.1
        settings = delivery_settings(database_url, receiver.url, secret)
        story = await write_story(pool, "PAY_A")
        await visible_ids(pool, None, 4)
        for _ in range(4):
            await asyncio.gather(*(deliver_notifications(pool, settings, "PAY_A") for _ in range(3)))
        await _deliver_until_idle(pool, settings, "PAY_A")
    assert receiver.max_in_flight_per_id == 1
    assert receiver.duplicates == 0
    assert receiver.by_subject["PAY_A"] == story


async def test_an_event_failing_past_the_window_is_given_up_once_and_later_ones_go_on(
    pool: asyncpg.Pool, database_url: str
) -> None:
    secret = new_secret()
    async with Receiver(secret) as receiver:
        settings = delivery_settings(database_url, receiver.url, secret, notify_give_up_after=0.3)
        story = await write_story(pool, "PAY_A")
        await visible_ids(pool, None, 4)
        receiver.failing = True
        with capture_logs() as logs:

            async def first_given_up() -> bool:
                await deliver_notifications(pool, settings, "PAY_A")
                async with pool.acquire() as conn:
                    event = await outbox.get_event(conn, story[0])
                return event is not None and event.given_up_at is not None

            await eventually(first_given_up, timeout=60)
            receiver.failing = False
            await _deliver_until_idle(pool, settings, "PAY_A")
    given_up_logs = [entry for entry in logs if entry["event"] == "notification_given_up"]
    assert [entry["event_id"] for entry in given_up_logs] == [story[0]]
    assert given_up_logs[0]["reason"] == "HTTP 500"
    assert receiver.by_subject["PAY_A"] == story[1:]
    async with pool.acquire() as conn:
        event = await outbox.get_event(conn, story[0])
    assert event is not None and event.last_error == "HTTP 500" and event.attempts >= 2
    assert story[0] in await visible_ids(pool, None, 4)  # still readable through the events API


_KILLABLE_WORKER = """
import asyncio, sys
from services.deliver_notifications import deliver_notifications
from storage.db import create_pool
from tests.integration.notifications.helpers import delivery_settings

async def main():
    settings = delivery_settings(sys.argv[1], sys.argv[2], sys.argv[3], notify_lease_seconds=8.0)
    pool = await create_pool(sys.argv[1], min_size=1, max_size=2)
    await deliver_notifications(pool, settings, "PAY_A")

asyncio.run(main())
"""


async def test_a_worker_killed_mid_delivery_leaves_the_event_to_another_after_its_lease(
    pool: asyncpg.Pool, database_url: str
) -> None:
    secret = new_secret()
    async with Receiver(secret) as receiver:
        settings = delivery_settings(database_url, receiver.url, secret, notify_lease_seconds=8.0)
        story = await write_story(pool, "PAY_A")
        await visible_ids(pool, None, 4)
        receiver.hang_next = True  # the first request is processed, but its answer never comes
        process = subprocess.Popen(  # noqa: ASYNC220 - a real worker process, killed below
            [sys.executable, "-c", _KILLABLE_WORKER, database_url, receiver.url, secret],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            await asyncio.wait_for(receiver.hung.wait(), timeout=60)
            process.send_signal(signal.SIGKILL)
        finally:
            await asyncio.to_thread(process.wait)
        async with pool.acquire() as conn:
            leased = await conn.fetchrow(
                "SELECT attempts, leased_until > now() AS leased FROM outbox_events WHERE id = $1", story[0]
            )
        assert leased["attempts"] == 1 and leased["leased"]
        assert (await deliver_notifications(pool, settings, "PAY_A")).stopped_because == "busy"
        await _deliver_until_idle(pool, settings, "PAY_A")  # after the lease, another worker takes over
    assert receiver.duplicates == 1  # the killed worker's send reached the receiver; dedupe by webhook-id
    assert receiver.by_subject["PAY_A"] == story
    assert receiver.unverified == []


async def test_replay_sends_committed_events_again_in_order(pool: asyncpg.Pool, database_url: str) -> None:
    secret = new_secret()
    async with Receiver(secret) as receiver:
        settings = delivery_settings(database_url, receiver.url, secret)
        story = await write_story(pool, "PAY_A")
        await visible_ids(pool, None, 4)
        await _deliver_until_idle(pool, settings, "PAY_A")
        report = await replay_events(pool, story[2])
        assert (report.events, report.subjects) == (2, 1)
        await _deliver_until_idle(pool, settings, "PAY_A")
        assert receiver.duplicates == 2
        before = receiver.requests
        report = await replay_events(pool, "2000-01-01T00:00:00")
        assert (report.events, report.subjects) == (4, 1)
        await _deliver_until_idle(pool, settings, "PAY_A")
        assert receiver.requests == before + 4
    assert receiver.by_subject["PAY_A"] == story
