"""What residents open: the page their messages link to, ``GET /alerts/{public_id}``.

The alert only: no deliveries, no operators' notes. ``{public_id}`` is minted by the
service when the alert is stored (links sent before public ids existed, which carried
the sender's identifier, keep resolving to the alert they named), so no later alert
can take over a link already sent. The page is cached by browsers with revalidation
(``no-cache``), as an alert can be cancelled.
"""

from __future__ import annotations

import re

import asyncpg
from aiohttp import web

from dispatcher.store import alerts as alert_store
from dispatcher.web.context import WEB
from dispatcher.web.templating import page

# Public ids and the identifiers of links sent before them: printable, no spaces, bounded.
_PUBLIC_KEY = re.compile(r"[\x21-\x7e\u00a0-\uffff]{1,200}")

# What residents see when the alert they followed a link to is no longer current.
_STATE_NOTES = {
    "cancelled": "この情報は取り消されました。 This alert was cancelled.",
    "superseded": "この情報は更新されました。最新の情報を確認してください。 This alert was updated: check the latest.",
    "stale": "より新しい情報があります。 A newer alert of this series exists.",
}


async def _public_alert(conn: asyncpg.Connection, key: str) -> asyncpg.Record:
    """The alert residents' links name: its public id (or a link sent before public ids)."""
    a = await alert_store.public_alert(conn, key) if _PUBLIC_KEY.fullmatch(key) else None
    if a is None:
        raise web.HTTPNotFound(text="no such alert")
    return a


async def alert_page(request: web.Request) -> web.Response:
    """The alert as residents read it."""
    async with request.app[WEB].pool.acquire() as conn:
        a = await _public_alert(conn, request.match_info["id"])
    if a["state"] == "held":  # not issued (yet): nothing to show residents
        raise web.HTTPNotFound(text="no such alert")
    values = {
        "alert": a,
        "note": _STATE_NOTES.get(a["state"]),
        "areas": ", ".join(x.get("description", "") for x in a["areas"]) or "-",
    }
    return page(request, "alert.html", a["event"], values)
