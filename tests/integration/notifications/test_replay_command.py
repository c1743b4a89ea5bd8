"""`payments events replay --since …` as an OS process, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.conftest import REDIS_URL
from tests.integration.notifications.helpers import visible_ids, write_story

ROOT = Path(__file__).resolve().parents[3]


def _payments(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


async def test_replay_from_an_event_or_a_time_and_refusals(pool: asyncpg.Pool, database_url: str) -> None:
    story = await write_story(pool, "PAY_A")
    await visible_ids(pool, None, 4)

    done = _payments(database_url, "events", "replay", "--since", story[1])
    assert done.returncode == 0, done.stderr
    assert "3 events of 1 subjects will be sent again" in done.stdout
    done = _payments(database_url, "events", "replay", "--since", "2000-01-01T00:00:00+00:00", "--json")
    assert done.returncode == 0 and '"events": 4' in done.stdout, done.stderr

    refused = _payments(database_url, "events", "replay", "--since", "evt_nosuchevent")
    assert refused.returncode == 1 and "no event 'evt_nosuchevent'" in refused.stderr
    refused = _payments(database_url, "events", "replay", "--since", "yesterday")
    assert refused.returncode == 1 and "neither an event id" in refused.stderr
