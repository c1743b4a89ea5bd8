"""`GET /readyz`: whether this web process can do its job now (load balancers and deploys ask it).

Ready means Postgres answers, the broker answers, and every migration shipped with this code is
applied. Otherwise 503 names the failing checks. `/healthz` stays the cheaper liveness answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import asyncpg
import dramatiq
from aiohttp import web
from pydantic import Field

from entrypoints.web.http import RUNTIME, json_response
from services.answers import Answer
from storage.migrate import pending_migrations

READINESS_TIMEOUT_SECONDS = 3.0

ReadinessCheck = tuple[str, Callable[[], Awaitable[Any]]]


class MigrationsPending(Exception):
    pass


def readiness_checks(pool: asyncpg.Pool, broker: dramatiq.Broker) -> list[ReadinessCheck]:
    async def postgres() -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def broker_answers() -> None:
        await asyncio.to_thread(broker.ping)  # type: ignore[attr-defined]

    async def migrations() -> None:
        async with pool.acquire() as conn:
            pending = await pending_migrations(conn)
        if pending:
            raise MigrationsPending(f"not applied: {', '.join(pending)} (run `payments migrate`)")

    return [("postgres", postgres), ("broker", broker_answers), ("migrations", migrations)]


async def run_checks(checks: list[ReadinessCheck]) -> dict[str, str]:
    """Failures by check name, each bounded in time (a check that hangs fails)."""

    async def one(check: Callable[[], Awaitable[Any]]) -> str | None:
        try:
            await asyncio.wait_for(check(), timeout=READINESS_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer within {READINESS_TIMEOUT_SECONDS:g}s"
        except MigrationsPending as exc:
            return str(exc)
        except Exception as exc:  # a readiness check reports every failure, whatever its kind
            return type(exc).__name__
        return None

    results = await asyncio.gather(*(one(check) for _, check in checks))
    return {name: failure for (name, _), failure in zip(checks, results, strict=True) if failure is not None}


class Ready(Answer):
    status: Literal["ready"]


class NotReady(Answer):
    status: Literal["not_ready"]
    failures: dict[str, str] = Field(description="each failing check (postgres, broker, migrations) and why")


async def readyz(request: web.Request) -> web.Response:
    failures = await run_checks(request.app[RUNTIME].ready_checks)
    if failures:
        return json_response(NotReady(status="not_ready", failures=failures).model_dump(mode="json"), status=503)
    return json_response(Ready(status="ready").model_dump(mode="json"))
