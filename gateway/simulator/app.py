"""The simulator as an aiohttp application: the NOWPayments routes under /v1 (each request
logged, faults applied, the API key checked, `ApiError`s answered in the gateway's shape)
and the control API under /sim."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from gateway.simulator import currency_api, login, payment_api, payout_api
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.control_api import add_entity_routes
from gateway.simulator.control_knobs import add_knob_routes
from gateway.simulator.faults import serve_with_faults
from gateway.simulator.responses import ApiError, error_response
from gateway.simulator.state import STATE_KEY, SimState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_LOG_SIZE = 10_000


def _key_accepted(state: SimState, request: web.Request) -> bool:
    if request.path == "/v1/status":
        return True
    presented = request.headers.get("x-api-key", "")
    expected = state.config.api_key
    return bool(presented) and (expected is None or hmac.compare_digest(presented.encode(), expected.encode()))


async def _answer(state: SimState, request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _key_accepted(state, request):
        return error_response(403, "INVALID_API_KEY", "Invalid api key")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not request.path.startswith("/v1/"):
        return await handler(request)
    entry: dict[str, object] = {"method": request.method, "path": request.path, "query": request.query_string}
    state.requests.append(entry)
    del state.requests[:-_REQUEST_LOG_SIZE]
    response = await serve_with_faults(state, request, lambda: _answer(state, request, handler))
    entry["status"] = response.status
    return response


def _add_api_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/v1/status", currency_api.status)
    router.add_get("/v1/full-currencies", currency_api.full_currencies)
    router.add_get("/v1/merchant/coins", currency_api.merchant_coins)
    router.add_get("/v1/min-amount", currency_api.min_amount)
    router.add_get("/v1/estimate", currency_api.estimate)
    router.add_post("/v1/payment", payment_api.create_payment)
    router.add_post("/v1/payment/", payment_api.create_payment)
    router.add_get("/v1/payment", payment_api.list_payments)  # as the Node SDK calls it
    router.add_get("/v1/payment/", payment_api.list_payments)  # as the docs spell it
    router.add_get("/v1/payment/{payment_id}", payment_api.get_payment)
    router.add_post("/v1/auth", login.sign_in)
    # The fixed /v1/payout/... paths before the {payout_id} one, which would match them too.
    router.add_post("/v1/payout/validate-address", payout_api.validate_address)
    router.add_get("/v1/payout/fee", payout_api.payout_fee)
    router.add_post("/v1/payout", payout_api.create_payout)
    router.add_get("/v1/payout", payout_api.list_payouts)
    router.add_get("/v1/payout/{payout_id}", payout_api.get_payout)


def create_simulator_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application (routes under /v1 and /sim)."""
    app = web.Application(middlewares=[_api_middleware])
    state = SimState.from_config(config)
    app[STATE_KEY] = state

    async def on_startup(app: web.Application) -> None:
        # The timeout counts from the moment an IPN is on its way (connecting, then each read of the answer),
        # not while it waits for one of our own connections behind other IPNs: that wait is not the merchant's.
        seconds = config.ipn_timeout_seconds
        timeout = ClientTimeout(total=None, connect=None, sock_connect=seconds, sock_read=seconds)
        state.http = ClientSession(connector=TCPConnector(limit=config.ipn_connections), timeout=timeout)

    async def on_cleanup(app: web.Application) -> None:
        for task in list(state.tasks):
            task.cancel()
        for task in list(state.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if state.http is not None:
            await state.http.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    _add_api_routes(app)
    add_entity_routes(app)
    add_knob_routes(app)
    return app
