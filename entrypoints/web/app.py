"""The web process: NOWPayments IPN endpoint, JSON API, health and metrics (aiohttp on $PORT).

This module builds the app (middlewares, and the routes listed in routes.py) and opens the process's
resources; the handlers live in one module per resource beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from entrypoints.web.http import MAX_BODY, RUNTIME, WebRuntime
from entrypoints.web.middleware import answer_errors, require_api_token
from entrypoints.web.readiness import readiness_checks
from entrypoints.web.routes import add_routes
from entrypoints.web.stopping import stop_once_on_signals
from services.context import StageContext, gateway_from_settings
from settings import Settings
from storage.db import create_pool
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.enqueue import ActorEnqueuer

__all__ = ["WebRuntime", "create_process_app", "create_web_app", "serve"]


def create_web_app(runtime: WebRuntime) -> web.Application:
    """The app over ``runtime``'s resources; errors are answered outside authentication."""
    app = web.Application(middlewares=[answer_errors, require_api_token], client_max_size=MAX_BODY)
    app[RUNTIME] = runtime
    add_routes(app.router)
    return app


def create_process_app(settings: Settings) -> web.Application:
    """The app `payments web` serves: its resources open on the server's own event loop."""
    runtime = WebRuntime()
    app = create_web_app(runtime)

    async def resources(_: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url.get_secret_value(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            reset_session=False,  # no handler keeps session state: skip the reset round trip per request
        )
        broker = build_broker(settings)
        declare_actors(broker)
        gateway = gateway_from_settings(settings)
        runtime.ctx = StageContext(pool=pool, gateway=gateway, settings=settings, enqueue=ActorEnqueuer(broker))

        async def database() -> None:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

        async def broker_answers() -> None:
            await asyncio.to_thread(broker.ping)  # type: ignore[attr-defined]

        broker_kind = "rabbitmq" if settings.uses_rabbitmq else "redis"
        runtime.health_checks[:] = [("postgres", database), (broker_kind, broker_answers)]
        runtime.ready_checks[:] = readiness_checks(pool, broker)
        try:
            yield
        finally:
            await gateway.close()
            await pool.close()
            broker.close()

    app.cleanup_ctx.append(resources)
    app.on_startup.append(stop_once_on_signals)
    return app


def serve(settings: Settings) -> None:
    settings.require("api_token", "nowpayments_ipn_secret")
    web.run_app(
        create_process_app(settings),
        host="0.0.0.0",  # noqa: S104 - the platform routes $PORT to us; it must listen on all interfaces
        port=settings.port,
        shutdown_timeout=10,  # in-flight requests get 10 s; the platform kills 30 s after SIGTERM
        print=None,
        access_log=None,
    )
