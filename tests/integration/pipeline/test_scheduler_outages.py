"""The scheduler rides out a Redis outage (found by the soak: it used to crash on the first failed send)."""

from __future__ import annotations

import asyncio

import redis

from entrypoints.scheduler import run_scheduler
from tests.integration.pipeline.test_scheduler import RecordingEnqueuer, _add_currency, _add_payments, _settings


class RedisAwayOnce(RecordingEnqueuer):
    """Our Enqueuer seam, whose first send fails the way the broker's does while Redis is down."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = asyncio.Event()

    async def poll_status(self, payment_id: str) -> None:
        if not self.failed.is_set():
            self.failed.set()
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        await super().poll_status(payment_id)


async def test_a_failed_send_is_logged_and_the_next_tick_goes_on(pool, database_url):
    async with pool.acquire() as conn:
        await _add_currency(conn)
        await _add_payments(conn, "PAY_first", 1, next_poll_in=-1)
    enqueue, stop = RedisAwayOnce(), asyncio.Event()
    settings = _settings(database_url, payments_scheduler_tick=0.05, payments_poll_min_interval=0.1)
    scheduler = asyncio.create_task(run_scheduler(settings, enqueue, stop=stop))

    await asyncio.wait_for(enqueue.failed.wait(), timeout=30)
    async with pool.acquire() as conn:  # Redis is back; the next payment that falls due is sent
        ids = await _add_payments(conn, "PAY_next", 1, next_poll_in=-1)

    async def sent_both() -> None:  # and the one whose send failed is due again at once, not after its lease
        while len(enqueue.ids) < 2:
            assert not scheduler.done(), scheduler.exception()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(sent_both(), timeout=30)
    stop.set()
    await scheduler
    assert sorted(enqueue.ids) == ["PAY_first_1", *ids]
