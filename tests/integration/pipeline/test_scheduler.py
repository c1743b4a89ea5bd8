"""The scheduler tick (entrypoints/scheduler.py) against a real Postgres.

The Enqueuer here only records what it is asked to send: it is our own interface (the seam the
scheduler is given), not the broker. Everything in the database is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from entrypoints.scheduler import claim_lease_seconds, poll_due_payments
from services.context import FollowUp, PartialSend
from settings import Settings, load_settings
from storage import payments
from storage.db import create_pool
from tests.conftest import REDIS_URL


class RecordingEnqueuer:
    """Implements services.context.Enqueuer by writing down each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def poll_status(self, payment_id: str) -> None:
        self.calls.append(("poll_status", payment_id))

    async def settle_deposit(self, payment_id: str) -> None:
        self.calls.append(("settle_deposit", payment_id))

    async def send_many(self, follow_ups: Sequence[FollowUp]) -> None:
        """Each follow-up through the one-at-a-time methods above, stopping at the first that fails."""
        for sent, (stage, payment_id) in enumerate(follow_ups):
            try:
                await getattr(self, stage)(payment_id)
            except Exception as exc:
                raise PartialSend(sent) from exc

    @property
    def ids(self) -> list[str]:
        return [payment_id for _, payment_id in self.calls]


def _settings(database_url: str, **overrides: object) -> Settings:
    return load_settings(database_url=database_url, redis_url=REDIS_URL, **overrides)


async def _add_currency(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO currencies (code, name, precision) VALUES ('btc', 'Bitcoin', 8)")


async def _add_payments(
    conn: asyncpg.Connection,
    prefix: str,
    count: int,
    *,
    next_poll_in: float | None,
    status: str = "pending",
    credit_usd: Decimal | None = None,
    final: bool = False,
    settled: bool = False,
) -> list[str]:
    """Insert ``count`` payments (already at the gateway) due ``next_poll_in`` seconds from now (None: never)."""
    rows = await conn.fetch(
        """
        INSERT INTO payments (id, request_id, request_fingerprint, user_id, amount_usd, currency_code, status,
                              provider_payment_id, next_poll_at, credit_usd, final_at, settled_at)
        SELECT $1 || '_' || g, $1 || '_req_' || g, 'fp', 'user', 25.00, 'btc', $3,
               $1 || '_gw_' || g,
               CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $4::float8) END,
               $5, CASE WHEN $6 THEN now() END, CASE WHEN $7 THEN now() END
          FROM generate_series(1, $2) AS g
        RETURNING id
        """,
        prefix,
        count,
        status,
        next_poll_in,
        credit_usd,
        final,
        settled,
    )
    return [row["id"] for row in rows]


async def _next_polls(conn: asyncpg.Connection, ids: list[str]) -> dict[str, datetime | None]:
    rows = await conn.fetch("SELECT id, next_poll_at FROM payments WHERE id = ANY($1)", ids)
    return {row["id"]: row["next_poll_at"] for row in rows}


@pytest.fixture
async def db(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    async with pool.acquire() as conn:
        await _add_currency(conn)
    yield pool


async def test_only_due_payments_are_claimed_and_pushed_out(db, database_url):
    settings = _settings(database_url)
    async with db.acquire() as conn:
        due = await _add_payments(conn, "due", 3, next_poll_in=-5)
        future = await _add_payments(conn, "future", 2, next_poll_in=3600)
        idle = await _add_payments(conn, "idle", 2, next_poll_in=None, status="completed", settled=True)
        untouched_before = await _next_polls(conn, future + idle)

    enqueue = RecordingEnqueuer()
    started = datetime.now(UTC)
    assert await poll_due_payments(db, enqueue, settings) == 3
    assert sorted(enqueue.calls) == sorted(("poll_status", payment_id) for payment_id in due)

    async with db.acquire() as conn:
        pushed = await _next_polls(conn, due)
        lease = timedelta(seconds=claim_lease_seconds(settings))
        assert lease >= timedelta(seconds=60)
        for payment_id, next_poll_at in pushed.items():
            assert next_poll_at is not None
            assert started + lease - timedelta(seconds=2) <= next_poll_at <= datetime.now(UTC) + lease, payment_id
        assert await _next_polls(conn, future + idle) == untouched_before

    # Claimed ones are not due any more: the next tick finds nothing.
    again = RecordingEnqueuer()
    assert await poll_due_payments(db, again, settings) == 0 and again.calls == []


async def test_batch_limit_is_respected_and_oldest_due_first(db, database_url):
    settings = _settings(database_url, payments_scheduler_batch=4)
    async with db.acquire() as conn:
        older = await _add_payments(conn, "older", 4, next_poll_in=-600)
        await _add_payments(conn, "newer", 6, next_poll_in=-1)
    enqueue = RecordingEnqueuer()
    assert await poll_due_payments(db, enqueue, settings) == 4
    assert sorted(enqueue.ids) == sorted(older)
    assert await poll_due_payments(db, enqueue, settings) == 4
    assert await poll_due_payments(db, enqueue, settings) == 2
    assert len(enqueue.ids) == len(set(enqueue.ids)) == 10


async def test_unsettled_creditable_payments_get_settle_instead_of_poll(db, database_url):
    settings = _settings(database_url)
    async with db.acquire() as conn:
        completed = await _add_payments(
            conn, "completed", 2, next_poll_in=-1, status="completed", credit_usd=Decimal("25.00")
        )
        final_partial = await _add_payments(
            conn, "partial", 1, next_poll_in=-1, status="partially_paid", credit_usd=Decimal("12.49"), final=True
        )
        open_partial = await _add_payments(conn, "open", 1, next_poll_in=-1, status="partially_paid")
        confirming = await _add_payments(conn, "confirming", 1, next_poll_in=-1, status="confirming")

    enqueue = RecordingEnqueuer()
    assert await poll_due_payments(db, enqueue, settings) == 5
    assert sorted(enqueue.calls) == sorted(
        [("settle_deposit", p) for p in completed + final_partial]
        + [("poll_status", p) for p in open_partial + confirming]
    )


async def test_two_schedulers_never_claim_the_same_payment(db, database_url):
    settings = _settings(database_url, payments_scheduler_batch=7)
    async with db.acquire() as conn:
        all_due = set(await _add_payments(conn, "due", 100, next_poll_in=-1))

    pools = [await create_pool(database_url, min_size=1, max_size=2) for _ in range(2)]
    recorders = [RecordingEnqueuer(), RecordingEnqueuer()]
    try:

        async def run(pool: asyncpg.Pool, enqueue: RecordingEnqueuer) -> int:
            ticks = 0
            while await poll_due_payments(pool, enqueue, settings):
                ticks += 1
                await asyncio.sleep(0)
            return ticks

        ticks = await asyncio.gather(*(run(p, r) for p, r in zip(pools, recorders, strict=True)))
    finally:
        for p in pools:
            await p.close()

    first, second = (r.ids for r in recorders)
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert set(first) & set(second) == set()
    assert set(first) | set(second) == all_due
    assert len(first) + len(second) == 100
    assert all(ticks), f"both schedulers should have taken part: {ticks}"


async def test_skip_locked_a_second_scheduler_takes_the_others_without_waiting(db, database_url):
    async with db.acquire() as conn:
        all_due = set(await _add_payments(conn, "due", 100, next_poll_in=-1))

    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        held = first.transaction()
        await held.start()
        taken_first = await payments.claim_due(first, limit=60, lease_seconds=60)
        # While the first claim is still uncommitted, the second is not blocked by its row locks.
        async with second.transaction():
            taken_second = await asyncio.wait_for(payments.claim_due(second, limit=100, lease_seconds=60), timeout=5)
        await held.commit()
    finally:
        await first.close()
        await second.close()

    ids_first, ids_second = {p.id for p in taken_first}, {p.id for p in taken_second}
    assert len(ids_first) == 60 and len(ids_second) == 40
    assert ids_first & ids_second == set() and ids_first | ids_second == all_due


async def test_claim_query_uses_the_partial_due_index(db, database_url):
    # A realistic shape: most stored payments are finished (next_poll_at NULL), some wait, few are due.
    async with db.acquire() as conn:
        await _add_payments(conn, "done", 20_000, next_poll_in=None, status="completed", settled=True)
        await _add_payments(conn, "waiting", 500, next_poll_in=3600)
        await _add_payments(conn, "due", 20, next_poll_in=-1)
        await conn.execute("ANALYZE payments")

        # Capture the exact SQL and arguments the scheduler's claim sends, then explain that.
        captured: list[tuple[str, tuple]] = []
        conn.add_query_logger(lambda record: captured.append((record.query, record.args)))
        tx = conn.transaction()
        await tx.start()
        await payments.claim_due(conn, limit=500, lease_seconds=60)
        await tx.rollback()
        claims = [(q, a) for q, a in captured if "FOR UPDATE SKIP LOCKED" in q]
        assert len(claims) == 1
        query, args = claims[0]
        plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + query, *args))
    # No planner settings forced: with the table shaped like production the index wins on cost.
    assert "payments_due" in plan, plan
    assert "Seq Scan on payments" not in plan, plan
