"""``GET /metrics``: the daemon's Prometheus metrics (:mod:`dispatcher.metrics`), public as scrapes expect.

It holds no personal data (channel names, feed URLs, states, counts and latencies), so
it needs no login, like ``/healthz``. The database's gauges are read once per scrape (at
most once a second); when the database does not answer, the in-process figures are
still served, with ``dispatcher_database_up 0``.
"""

from __future__ import annotations

from aiohttp import web

from dispatcher.metrics import CONTENT_TYPE
from dispatcher.web.context import WEB


async def metrics(request: web.Request) -> web.Response:
    """The text exposition format (``text/plain; version=0.0.4``)."""
    ctx = request.app[WEB]
    if ctx.metrics is None:
        raise web.HTTPNotFound(text="metrics are not collected by this server")
    await ctx.metrics.refresh(ctx.pool)
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
