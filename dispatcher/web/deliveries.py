"""Operators' pages of deliveries: an alert's, filtered and paged, and one delivery's transitions.

``GET /alerts/{id}/deliveries`` (``?state= &channel= &recipient= &after= &limit=``) counts every
failure reason and lists each delivery; ``GET /deliveries/{id}`` shows each
transition with its time and detail; ``/api/…`` gives both as JSON. ``{id}`` is a
row number. Addresses are masked on the pages and in the JSON alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
from aiohttp import web

from dispatcher.console.accounts import Role
from dispatcher.limits import integer_problem
from dispatcher.privacy import mask
from dispatcher.store import alerts as alert_store
from dispatcher.store import reports
from dispatcher.web import params
from dispatcher.web.auth import current
from dispatcher.web.context import WEB
from dispatcher.web.templating import page

# The state filters offered as links, "all" first.
_STATE_LINKS = (None, "failed", "pending", "delivered", "superseded", "expired")


async def _operator_alert(conn: asyncpg.Connection, key: str) -> asyncpg.Record:
    """The alert operators' pages name: its row number."""
    a = await alert_store.alert_by_id(conn, int(key)) if key.isascii() and key.isdigit() and len(key) < 19 else None
    if a is None:
        raise web.HTTPNotFound(text=f"no alert {key!r}")
    return a


@dataclass(frozen=True, slots=True)
class _AlertDeliveries:
    alert: asyncpg.Record
    query: params.DeliveryFilters
    rows: list[reports.DeliveryRow]
    reasons: list[reports.FailureReason]
    counts: reports.Counts


async def _alert_deliveries(request: web.Request) -> _AlertDeliveries:
    ctx = request.app[WEB]
    query = params.delivery_filters(request, ctx.known_channels)
    async with ctx.pool.acquire() as conn:
        a = await _operator_alert(conn, request.match_info["id"])
        alert_id = int(a["id"])
        return _AlertDeliveries(
            a,
            query,
            await reports.alert_deliveries(conn, alert_id, **query),
            await reports.failure_reasons(conn, alert_id),
            await reports.delivery_counts(conn, alert_id),
        )


async def _delivery(request: web.Request) -> reports.DeliveryHistory:
    key = request.match_info["id"]
    if integer_problem(key, "delivery id", low=1) is not None:
        raise web.HTTPNotFound(text=f"no delivery {key[:60]!r}")
    async with request.app[WEB].pool.acquire() as conn:
        d = await reports.delivery_history(conn, int(key))
    if d is None:
        raise web.HTTPNotFound(text=f"no delivery {key!r}")
    return d


async def deliveries_page(request: web.Request) -> web.Response:
    """Every delivery of one alert and why any failed."""
    found = await _alert_deliveries(request)
    a, query, rows = found.alert, found.query, found.rows
    alert_id = int(a["id"])
    base = f"/alerts/{alert_id}/deliveries"
    filters = [(st or "all", f"{base}?{urlencode({'state': st} if st else {})}") for st in _STATE_LINKS]
    more = None
    if len(rows) == query["limit"]:
        nxt = {k: v for k, v in {**query, "after": rows[-1]["id"]}.items() if v is not None}
        more = f"{base}?{urlencode(nxt)}"
    values = {
        "alert": a,
        "public_href": f"/alerts/{quote(a['public_id'], safe='')}",
        "problems": [str(p) for p in (a["details"] or {}).get("problems") or ()],
        "counts": found.counts,
        "reasons": found.reasons,
        "filters": filters,
        "rows": rows,
        "more": more,
        "limit": query["limit"],
        "query": query,
        "channel_choices": ctx_channels(request),
        "state_choices": list(reports.FILTERS),
        "can_retry": can_retry(request),
        "note": request.query.get("note", "")[:200],
    }
    return page(request, "deliveries.html", f"{a['event']} (#{alert_id}) — deliveries", values)


async def delivery_page(request: web.Request) -> web.Response:
    """One delivery and each of its transitions."""
    d = await _delivery(request)
    values = {"d": d, "can_retry": can_retry(request), "note": request.query.get("note", "")[:200]}
    return page(request, "delivery.html", f"Delivery #{d['id']}", values)


def can_retry(request: web.Request) -> bool:
    """Whether the staff member may retry failed deliveries (an approver or an admin)."""
    me = current(request)
    return me is not None and me.role.allows(Role.APPROVER)


def ctx_channels(request: web.Request) -> list[str]:
    """The channels an operator may filter by."""
    return sorted(request.app[WEB].known_channels)


def _json_row(row: Any) -> dict[str, Any]:
    """Timestamps as ISO 8601; addresses masked as on the pages."""
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    if "address" in out:
        out["address"] = mask(out["address"])
    return out


async def api_deliveries(request: web.Request) -> web.Response:
    """An alert's deliveries page as JSON, with ``next_after`` for the next page."""
    found = await _alert_deliveries(request)
    a, rows = found.alert, found.rows
    return web.json_response(
        {
            "alert": {"id": a["id"], "identifier": a["identifier"], "event": a["event"], "state": a["state"]},
            "counts": found.counts,
            "reasons": found.reasons,
            "deliveries": [_json_row(d) for d in rows],
            "next_after": rows[-1]["id"] if len(rows) == found.query["limit"] else None,
        }
    )


async def api_delivery(request: web.Request) -> web.Response:
    """One delivery and its transitions as JSON."""
    d = await _delivery(request)
    delivery = _json_row({k: v for k, v in d.items() if k != "events"})
    return web.json_response({"delivery": delivery, "events": [_json_row(e) for e in d["events"]]})
