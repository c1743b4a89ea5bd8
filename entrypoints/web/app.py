"""The web process: NOWPayments IPN endpoint, JSON API, health and metrics (aiohttp on $PORT).

This module builds the app (routes, middlewares) and opens the process's resources; the handlers
live in one module per resource beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from entrypoints.web import deposits, health, ipn, operator, payments, users, withdrawals
from entrypoints.web.http import MAX_BODY, RUNTIME, WebRuntime
from entrypoints.web.middleware import OPERATOR_PREFIX, answer_errors, require_api_token
from services.context import StageContext, gateway_from_settings
from settings import IPN_PATH, PAYOUT_IPN_PATH, Settings
from storage.db import create_pool
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.enqueue import ActorEnqueuer

__all__ = ["WebRuntime", "create_process_app", "create_web_app", "serve"]


def _add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(IPN_PATH, ipn.ipn_payment)
    router.add_post(PAYOUT_IPN_PATH, ipn.ipn_payout)
    router.add_get("/healthz", health.healthz)
    router.add_get("/metrics", health.metrics)
    router.add_get("/v1/payments/{payment_id}", payments.get_payment)
    router.add_get("/v1/payments/{payment_id}/qr.svg", payments.get_payment_qr)
    router.add_post("/v1/deposits", deposits.post_deposit)
    router.add_get("/v1/deposits/{request_id}", deposits.get_deposit)
    router.add_get("/v1/users/{user_id}/balance", users.get_balance)
    router.add_get("/v1/users/{user_id}/transactions", users.get_transactions)
    router.add_post("/v1/withdrawals", withdrawals.post_withdrawal)
    router.add_get("/v1/withdrawals/by-request/{request_id}", withdrawals.get_withdrawal_by_request)
    router.add_get("/v1/withdrawals/{withdrawal_id}", withdrawals.get_withdrawal)
    router.add_post("/v1/withdrawals/{withdrawal_id}/cancel", withdrawals.post_withdrawal_cancel)
    router.add_post(OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/approve", operator.post_approve)
    router.add_post(OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/reject", operator.post_reject)
    router.add_post(OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/complete", operator.post_complete)


def create_web_app(runtime: WebRuntime) -> web.Application:
    """The app over ``runtime``'s resources; errors are answered outside authentication."""
    app = web.Application(middlewares=[answer_errors, require_api_token], client_max_size=MAX_BODY)
    app[RUNTIME] = runtime
    _add_routes(app.router)
    return app


def create_process_app(settings: Settings) -> web.Application:
    """The app `payments web` serves: its resources open on the server's own event loop."""
    runtime = WebRuntime()
    app = create_web_app(runtime)

    async def resources(_: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url.get_secret_value(), min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        broker = build_broker(settings)
        declare_actors(broker)
        gateway = gateway_from_settings(settings)
        runtime.ctx = StageContext(pool=pool, gateway=gateway, settings=settings, enqueue=ActorEnqueuer(broker))

        async def database() -> None:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

        async def redis() -> None:
            await asyncio.to_thread(broker.client.ping)

        runtime.health_checks[:] = [("postgres", database), ("redis", redis)]
        try:
            yield
        finally:
            await gateway.close()
            await pool.close()
            broker.close()

    app.cleanup_ctx.append(resources)
    return app


def serve(settings: Settings) -> None:
    settings.require("api_token", "nowpayments_ipn_secret")
    web.run_app(
        create_process_app(settings),
        host="0.0.0.0",  # noqa: S104 - the platform routes $PORT to us; it must listen on all interfaces
        port=settings.port,
        shutdown_timeout=20,
        print=None,
        access_log=None,
    )
