"""The outbox table: events commit with the change that wrote them, and the events API cursor never skips."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import pytest

from domain.errors import InvalidRequest
from services.read_events import read_events
from storage import outbox
from storage.db import connect
from tests.integration.notifications.helpers import deposit_view, visible_ids, write_event


async def test_add_event_needs_the_callers_transaction(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="open transaction"):
            await outbox.add_event(conn, "deposit.pending", deposit_view("PAY_1", "pending"), now=datetime.now(UTC))
        assert await conn.fetchval("SELECT count(*) FROM outbox_events") == 0


async def test_an_event_whose_transaction_rolls_back_is_never_announced(pool: asyncpg.Pool) -> None:
    with pytest.raises(ZeroDivisionError):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_event(conn, "deposit.pending", deposit_view("PAY_1", "pending"), now=datetime.now(UTC))
            raise ZeroDivisionError  # the change failed after writing its event
    page = await read_events(pool, None)
    assert page == {"events": [], "next_after": None}


async def test_the_same_fact_recorded_twice_is_one_event(pool: asyncpg.Pool) -> None:
    view = deposit_view("PAY_1", "completed", credit_usd="25.00")
    first = await write_event(pool, "deposit.credited", view, dedupe_key="PAY_1:credited")
    again = await write_event(pool, "deposit.credited", view, dedupe_key="PAY_1:credited")
    assert first is not None and again is None
    assert await visible_ids(pool, None, 1) == [first]


async def test_bodies_have_the_documented_shape(pool: asyncpg.Pool) -> None:
    event_id = await write_event(pool, "deposit.credited", deposit_view("PAY_1", "completed", credit_usd="25.00"))
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT payload FROM outbox_events WHERE id = $1", event_id)
    body = json.loads(stored)
    assert set(body) == {"type", "id", "created_at", "data"}
    assert body["type"] == "deposit.credited" and body["id"] == event_id
    assert body["data"] == {
        "internal_payment_id": "PAY_1",
        "status": "completed",
        "amount_usd": "25.00",
        "credit_usd": "25.00",
    }
    assert body["created_at"].endswith("Z")


async def test_two_transactions_committing_out_of_order_are_both_read_in_a_stable_order(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The earlier transaction (lower sequence value) commits last: a reader that had moved its cursor past the
    later one would miss it forever. The cursor holds back until both are settled, then returns both."""
    early = await connect(database_url)
    late = await connect(database_url)
    try:
        early_tx = early.transaction()
        await early_tx.start()
        first = await outbox.add_event(
            early, "deposit.pending", deposit_view("PAY_A", "pending"), now=datetime.now(UTC)
        )
        async with late.transaction():
            second = await outbox.add_event(
                late, "deposit.pending", deposit_view("PAY_B", "pending"), now=datetime.now(UTC)
            )
        seqs = dict(await late.fetch("SELECT id, seq FROM outbox_events"))
        assert seqs == {second: seqs[second]}  # the early one is not even visible yet

        page = await read_events(pool, None)
        assert page["events"] == []  # the later commit is held back while the earlier transaction runs

        await early_tx.commit()
    finally:
        await early.close()
        await late.close()

    assert await visible_ids(pool, None, 2) == [first, second]


async def test_a_reader_pages_on_from_its_cursor_and_misses_nothing(pool: asyncpg.Pool, database_url: str) -> None:
    written = [await write_event(pool, "deposit.pending", deposit_view(f"PAY_{n}", "pending")) for n in range(5)]

    await visible_ids(pool, None, 5)
    first = await read_events(pool, None, limit=2)
    second = await read_events(pool, first["next_after"], limit=2)
    third = await read_events(pool, second["next_after"], limit=2)
    fourth = await read_events(pool, third["next_after"], limit=2)
    read = [event["id"] for page in (first, second, third) for event in page["events"]]
    assert read == written
    assert fourth == {"events": [], "next_after": third["next_after"]}  # nothing new: same cursor back

    # A transaction still open when the reader came back holds the reader there, then is read next.
    held = await connect(database_url)
    try:
        async with held.transaction():
            late = await outbox.add_event(
                held, "deposit.expired", deposit_view("PAY_9", "expired"), now=datetime.now(UTC)
            )
            assert (await read_events(pool, fourth["next_after"]))["events"] == []
    finally:
        await held.close()

    assert await visible_ids(pool, fourth["next_after"], 1) == [late]


async def test_an_unknown_cursor_or_page_size_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(InvalidRequest, match="after: no event 'evt_nosuchevent'"):
        await read_events(pool, "evt_nosuchevent")
    for limit in (0, 1001):
        with pytest.raises(InvalidRequest, match="limit"):
            await read_events(pool, None, limit=limit)


async def test_the_database_refuses_an_event_id_the_signature_scheme_cannot_carry(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO outbox_events (id, type, subject_id, payload, created_at)"
                " VALUES ('evt_a.b', 'deposit.pending', 'PAY_1', '{\"id\": \"evt_a.b\"}', now())"
            )
