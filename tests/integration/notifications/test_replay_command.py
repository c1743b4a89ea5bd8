"""`payments events replay --since …` through the command line's own entry point."""

from __future__ import annotations

import asyncio

import pytest

from entrypoints.cli.main import main
from storage.db import create_pool
from tests.conftest import REDIS_URL
from tests.integration.notifications.helpers import visible_ids, write_story


async def _story(database_url: str) -> list[str]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        ids = await write_story(pool, "PAY_A")
        await visible_ids(pool, None, 4)
        return ids
    finally:
        await pool.close()


def test_replay_from_an_event_or_a_time_and_refusals(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    story = asyncio.run(_story(database_url))

    assert main(["events", "replay", "--since", story[1]]) == 0
    assert "3 events of 1 subjects will be sent again" in capsys.readouterr().out
    assert main(["events", "replay", "--since", "2000-01-01T00:00:00+00:00", "--json"]) == 0
    assert '"events": 4' in capsys.readouterr().out

    assert main(["events", "replay", "--since", "evt_nosuchevent"]) == 1
    assert "no event 'evt_nosuchevent'" in capsys.readouterr().err
    assert main(["events", "replay", "--since", "yesterday"]) == 1
    assert "neither an event id" in capsys.readouterr().err
