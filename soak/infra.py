"""The soak's own resources: a scratch database on the real Postgres and a Redis of its own."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScratchDatabase:
    """A database created for one soak on the admin DSN's server, dropped at the end."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"payments_soak_{uuid.uuid4().hex[:10]}"
        base, _, _ = admin_dsn.rpartition("/")
        self.url = f"{base}/{self.name}"

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def terminate_connections(self) -> int:
        """pg_terminate_backend on every connection to the scratch database but the caller's own."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            return await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.name,
            )
        finally:
            await conn.close()

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


class OwnRedis:
    """A redis-server on a free loopback port, persisting every write (AOF, fsync always) so a
    stop and start loses nothing, like a managed Redis failing over."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("the soak's redis-server did not start")

    def stop(self) -> None:
        """SHUTDOWN (the AOF is flushed): clients see connections refused until `start`."""
        if self.proc is None:
            return
        try:
            redis.Redis.from_url(self.url).shutdown(nosave=False)
        except redis.ConnectionError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
