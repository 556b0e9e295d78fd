"""The operators' dashboard: recent alerts with per-channel delivery counts, paused channels, quotas.

``GET /`` (refreshed every 3 s) and its data as JSON, ``GET /api/alerts``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatcher.status import describe_quota
from dispatcher.store import reports
from dispatcher.store.quotas import channel_quotas
from dispatcher.web import params
from dispatcher.web.context import WEB
from dispatcher.web.templating import page


async def dashboard(request: web.Request) -> web.Response:
    """Recent alerts, the channels and what paused them, the documents received."""
    ctx = request.app[WEB]
    async with ctx.pool.acquire() as conn:
        alerts = await reports.recent_alerts(conn, 50)
        docs = await reports.documents_summary(conn)
        pauses = await reports.channel_pauses(conn)
        quotas = await channel_quotas(conn)
    values = {
        "quotas": [describe_quota(q) for q in quotas],
        "alerts": alerts,
        "pauses": pauses,
        "degraded": reports.health(pauses) == "degraded",
        "channels": ", ".join(ctx.channels) or "none enabled",
        "channel_names": ctx.channels,
        "documents": ", ".join(f"{n} {k}" for k, n in sorted(docs.items())) or "none yet",
        "refresh": 3,
    }
    return page(request, "dashboard.html", "配信状況 / delivery status", values)


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
