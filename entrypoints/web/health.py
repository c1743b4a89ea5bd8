"""Liveness of the process's dependencies, and the metrics page."""

from __future__ import annotations

from aiohttp import web

from entrypoints.web.http import RUNTIME, json_response, stage_context
from entrypoints.web.metrics import render_metrics
from services.answers import Healthy, Unhealthy


async def healthz(request: web.Request) -> web.Response:
    failures = {}
    for name, check in request.app[RUNTIME].health_checks:
        try:
            await check()
        except Exception as exc:  # a health check reports every failure, whatever its kind
            failures[name] = type(exc).__name__
    if failures:
        return json_response(Unhealthy(status="unhealthy", failures=failures).model_dump(mode="json"), status=503)
    return json_response(Healthy(status="ok").model_dump(mode="json"))


async def metrics(request: web.Request) -> web.Response:
    text = await render_metrics(stage_context(request).pool)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")
