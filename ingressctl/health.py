"""The health server: /healthz (liveness), /readyz (readiness) and /metrics on --health-port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingressctl.metrics import Metrics

log = logging.getLogger(__name__)


async def start_health_server(
    *, host: str, port: int, alive: Callable[[], bool], ready: Callable[[], bool], metrics: Metrics
) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n") if alive() else web.Response(status=503, text="nginx is not running\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: first configuration not applied yet\n")

    async def metrics_handler(_: web.Request) -> web.Response:
        for refresh in metrics.before_scrape:
            try:
                await asyncio.wait_for(refresh(), timeout=5)
            except Exception:  # a scrape still answers, with what was read before
                log.exception("reading metrics before the scrape failed")
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or None, port).start()
    return runner
