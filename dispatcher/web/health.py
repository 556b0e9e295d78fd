"""``GET /healthz``: is this daemon alive, is any channel held, and what is its share of each channel.

200 with ``"status": "ok"``, or ``"degraded"`` naming every pause (a provider's
longer than a minute, a backoff, an operator's hold) with until when and why; 503
when the database does not answer within two seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from dispatcher.store import reports
from dispatcher.web.context import WEB

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the database answers; "degraded" names every paused channel; this daemon's shares."""
    ctx = request.app[WEB]
    try:
        async with ctx.pool.acquire(timeout=2) as conn:
            pauses = await reports.channel_pauses(conn)
    except Exception as exc:
        # Anyone may ask: say that it is down, not why (the log has the error text).
        log.warning("healthz: database unavailable", extra={"error": str(exc)})
        return web.json_response({"ok": False, "error": "unavailable"}, status=503)
    # Still 200 when degraded: the daemon is alive; a paused channel is for people to act on.
    body: dict[str, Any] = {"ok": True, "status": reports.health(pauses), "paused": pauses}
    if ctx.peers is not None:
        # This daemon and its share of each provider's limits (dispatcher.peers).
        body["daemon"] = {
            "id": ctx.peers.id,
            "channels": {name: {"daemons": s.live, "rank": s.rank} for name, s in ctx.peers.shares.items()},
        }
    return web.json_response(body)
