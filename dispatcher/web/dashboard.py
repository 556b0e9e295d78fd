"""The operators' dashboard: per alert and channel a live progress bar, every channel's health and quota, pauses.

``GET /`` draws the page from the live hub's shared view (:mod:`dispatcher.web.live`):
without JavaScript it is a plain table that reloads itself every 10 s; with
``/static/dashboard.js`` it follows ``GET /api/live`` (Server-Sent Events) without
reloading. Its data as JSON: ``GET /api/alerts`` (recent alerts and totals) and
``GET /api/dashboard`` (the live view: progress, estimates, channel health).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatcher.store import reports
from dispatcher.store.quotas import channel_quotas
from dispatcher.web import params
from dispatcher.web.context import WEB
from dispatcher.web.live import LIVE
from dispatcher.web.templating import page

# The progress bar's segments, left to right: what is finished, then what waits.
SEGMENTS = ("delivered", "failed", "superseded", "expired", "sending", "queued")


async def dashboard(request: web.Request) -> web.Response:
    """Recent alerts with their progress, the channels' health and pauses, the documents received."""
    ctx = request.app[WEB]
    view = await request.app[LIVE].fresh_view()
    async with ctx.pool.acquire() as conn:
        docs = await reports.documents_summary(conn)
    values = {
        "alerts": view["alerts"],
        "health": view["channels"],
        "pauses": view["pauses"],
        "degraded": view["degraded"],
        "version": view["version"],
        "segments": SEGMENTS,
        "channels": ", ".join(ctx.channels) or "none enabled",
        "channel_names": ctx.channels,
        "documents": ", ".join(f"{n} {k}" for k, n in sorted(docs.items())) or "none yet",
    }
    return page(request, "dashboard.html", "配信状況 / delivery status", values)


async def api_dashboard(request: web.Request) -> web.Response:
    """The live view as JSON: what ``/api/live`` streams, at once."""
    return web.json_response(request.app[LIVE].view())


async def api_alerts(request: web.Request) -> web.Response:
    """The dashboard's alerts (``?limit=``, up to 500) and every channel's totals, as JSON."""
    ctx = request.app[WEB]
    limit = params.integer(request, "limit", 50, 1, 500)
    async with ctx.pool.acquire() as conn:
        data: dict[str, Any] = {
            "alerts": await reports.recent_alerts(conn, limit),
            "totals": await reports.totals(conn),
            "quotas": await channel_quotas(conn),
        }
    return web.json_response(data)
