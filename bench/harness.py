"""What the benchmark runs on: a private redis-server, scratch databases and the real `payments` processes.

Nothing here touches data it did not create: the Redis server is the benchmark's own (a free port,
a temporary directory, no persistence) and every database is created and dropped by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import redis

from storage.db import connect
from storage.migrate import migrate

BIN = Path(sys.executable).parent
PAYMENTS = str(BIN / "payments")
ADMIN_DSN = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "bench-api-key"
IPN_SECRET = "bench-ipn-secret"
API_TOKEN = "bench-api-token"
NAMESPACE = "dramatiq"  # the default namespace, on the benchmark's own Redis server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise RuntimeError(f"{what} not reached within {timeout:.0f}s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URLs built here
            return response.status == 200
    except OSError:
        return False


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free port, without persistence; its URL."""
    binary = shutil.which("redis-server") or str(BIN / "redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server answering")
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


async def create_database(prefix: str, *, migrated: bool = True) -> tuple[str, str]:
    """A scratch database (name, dsn), migrated unless asked otherwise."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{name}"
    if migrated:
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return name, dsn


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def process_env(dsn: str, redis_url: str, **values: str) -> dict[str, str]:
    """The environment of a `payments` process: only what the benchmark sets, like a Procfile dyno."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "NOWPAYMENTS_API_KEY": API_KEY,
        "NOWPAYMENTS_IPN_SECRET": IPN_SECRET,
        "API_TOKEN": API_TOKEN,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    env.update(values)
    return env


class Processes:
    """`payments ...` processes of one measurement; each leads its own process group, all killed at the end."""

    def __init__(self) -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        name = f"{len(self.procs)}-{args[0]}"
        with open(self.logdir / f"{name}.log", "wb") as out:
            proc = subprocess.Popen([PAYMENTS, *args], env=env, stdout=out, stderr=out, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, env: dict[str, str], timeout: float = 60) -> None:
        proc = self.start(*args, env=env)
        if proc.wait(timeout=timeout) != 0:
            raise RuntimeError(f"payments {' '.join(args)} failed: {self.log_tail(proc)}")

    def log_tail(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.procs.index(proc)
        path = next(self.logdir.glob(f"{index}-*.log"))
        return path.read_text(errors="replace")[-2000:]

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        shutil.rmtree(self.logdir, ignore_errors=True)


def group_peak_rss_mb(pgid: int) -> dict[int, float]:
    """Peak resident memory (VmHWM) of every live process in the process group ``pgid``, by pid."""
    peaks: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rpartition(")")[2].split()[2]) != pgid:
                continue
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(entry.name)] = int(line.split()[1]) / 1024
    return peaks


def workers_ready(redis_url: str, processes: int) -> bool:
    """Each worker process's consumers have fetched at least once (dramatiq heartbeats per process)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return client.zcard(f"{NAMESPACE}:__heartbeats__") >= processes
    finally:
        client.close()


def enqueue_raw(redis_url: str, queue: str, actor: str, arg_lists: list[list[Any]], *, chunk: int = 1000) -> None:
    """Messages written into Redis the way a non-Python sender does (README "Message contract")."""
    client = redis.Redis.from_url(redis_url)
    try:
        for start in range(0, len(arg_lists), chunk):
            pipe = client.pipeline(transaction=False)
            for args in arg_lists[start : start + chunk]:
                message_id = str(uuid.uuid4())
                body = {
                    "queue_name": queue,
                    "actor_name": actor,
                    "args": args,
                    "kwargs": {},
                    "options": {"redis_message_id": message_id},
                    "message_id": message_id,
                    "message_timestamp": int(time.time() * 1000),
                }
                pipe.hset(f"{NAMESPACE}:{queue}.msgs", message_id, json.dumps(body))
                pipe.rpush(f"{NAMESPACE}:{queue}", message_id)
            pipe.execute()
    finally:
        client.close()
