"""Acceptance (#9): a database connection terminated under the web app is never a 500.

The app's pool connections are terminated by Postgres itself (``pg_terminate_backend``) between and
during requests. A request that meets a broken connection answers 503 with the JSON error body, or
succeeds on a fresh connection; the broken connection is discarded, so the app recovers on its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from tests.integration.stack import API_TOKEN, Stack

ROUTES = ("/v1/users/u-1/balance", "/v1/deposits/req-none", "/v1/users/u-1/transactions", "/v1/withdrawals/WD_x")


async def _terminate_app_connections(database_url: str) -> int:
    """Terminate every other backend of this test's own database: the app's pool connections."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()


async def _get(stack: Stack, path: str) -> tuple[int, str, dict | None]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with stack.http.get(stack.web_url + path, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, response.content_type, body


async def test_terminated_connections_answer_503_or_succeed_never_500(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        statuses: Counter[int] = Counter()
        for _ in range(6):
            # Warm the pool with concurrent requests so several connections are open, then cut them all.
            await asyncio.gather(*(_get(stack, path) for path in ROUTES * 3))
            traffic = asyncio.gather(*(_get(stack, path) for path in ROUTES * 5))
            await asyncio.sleep(0)
            assert await _terminate_app_connections(database_url) >= 1
            answers = await traffic
            answers += await asyncio.gather(*(_get(stack, path) for path in ROUTES * 3))
            for status, content_type, body in answers:
                statuses[status] += 1
                assert status in (200, 404, 503), (status, body)
                assert content_type == "application/json"
                if status == 503:
                    assert body == {"error": "database_unavailable", "message": body["message"]}
                    assert "try again" in body["message"]
        # Broken connections were discarded: the next requests all succeed.
        final = await asyncio.gather(*(_get(stack, path) for path in ROUTES * 3))
        assert all(status in (200, 404) for status, _, _ in final), final
        assert statuses[200] > 0
