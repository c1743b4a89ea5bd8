"""A Redis server of the test's own, on a free loopback port, so real processes (whose dramatiq
namespace is fixed) can share nothing with other tests or other runs on the same machine."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.e2e.procs import wait_until
from tests.ports import free_port


def run_private_redis(folder: Path) -> Iterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    try:
        wait_until(answers, timeout=10, what="the private redis-server answering")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
