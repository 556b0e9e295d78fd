"""``GET /reconcile`` and ``GET /api/reconcile``: delivery truth for operators (viewer role).

What :mod:`dispatcher.reconcile` finds (``dispatcher reconcile``'s report): per channel,
how many deliveries the database calls delivered were confirmed by the provider, could
not be checked, or are mismatches (no provider id; gone at the provider), and each
mismatch. ``?since=`` (ISO 8601, without offset JST; default the last 24 hours). One
reconciliation at a time per daemon: each reads providers back, within their budgets.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dispatcher.reconcile import parse_since
from dispatcher.web.context import WEB
from dispatcher.web.templating import page

_RUNNING: web.AppKey[asyncio.Lock] = web.AppKey("reconcile_lock", asyncio.Lock)


async def _report(request: web.Request) -> dict[str, object]:
    ctx = request.app[WEB]
    if ctx.reconcile is None:
        raise web.HTTPNotFound(text="reconciliation is not available on this server")
    try:
        since = parse_since(request.query.get("since") or None)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc).replace("--since", "since")) from None
    async with request.app[_RUNNING]:
        report = await ctx.reconcile(since)
    return report.as_json()


async def reconcile_page(request: web.Request) -> web.Response:
    """The report as a page."""
    return page(request, "reconcile.html", "配信の照合 / delivery truth", {"r": await _report(request)})


async def api_reconcile(request: web.Request) -> web.Response:
    """The report as JSON (``dispatcher reconcile --json``'s)."""
    return web.json_response(await _report(request))


def add_routes(app: web.Application) -> None:
    app[_RUNNING] = asyncio.Lock()
    app.router.add_get("/reconcile", reconcile_page)
    app.router.add_get("/api/reconcile", api_reconcile)
