"""The daemon's web server: operators' dashboard, alert pages and JSON API.

Routes:
    GET /                          dashboard: recent alerts with per-channel delivery counts
    GET /alerts/{id}               one alert as residents read it (their messages link here)
    GET /alerts/{id}/deliveries    operators: every delivery's fate, why any failed (?state= &channel= &after=)
    GET /deliveries/{id}           operators: one delivery and each of its transitions
    GET /api/alerts                the dashboard's data as JSON
    GET /api/alerts/{id}/deliveries, GET /api/deliveries/{id}: the operators' pages as JSON
    GET /healthz                   liveness (database reachable; 200 "ok" or "degraded" with every paused
                                   channel, until when and why), this daemon's share among the live ones
    GET /style.css                 the pages' stylesheet (the CSP allows no inline styles)

``{id}`` of ``/alerts/{id}`` is the alert's public id, minted by the service (links sent
before public ids existed, which carried the sender's identifier, keep resolving to the
alert they named); on operators' pages it is the alert's row number.
Path ids and query parameters are checked before any query: a bad one is a 404 or a
400 that says what is allowed. Headers, timeouts, limits and the last-resort error
answers are :mod:`dispatcher.web.hygiene`'s.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from channels import REGISTRY
from dispatcher import status
from dispatcher.limits import BIGINT_MAX, integer_problem
from dispatcher.privacy import mask as _mask
from dispatcher.store import alerts as alert_store
from dispatcher.web import hygiene

if TYPE_CHECKING:
    from dispatcher.app import Service

SERVICE: web.AppKey[Service] = web.AppKey("service")
JST = ZoneInfo("Asia/Tokyo")
# Public ids and the identifiers of links sent before them: printable, no spaces, bounded.
_PUBLIC_KEY = re.compile(r"[\x21-\x7e\u00a0-\uffff]{1,200}")

_CSS = """
body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;margin:0;background:#f5f6f8;color:#1d1f23}
header{background:#0b3d91;color:#fff;padding:.8rem 1.2rem}header h1{margin:0;font-size:1.2rem}
main{padding:1rem 1.2rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:.45rem .6rem;border-bottom:1px solid #e3e5e8;text-align:left;vertical-align:top;font-size:.92rem}
th{background:#eef0f3}.p0{border-left:6px solid #b00020}.p1{border-left:6px solid #e65100}
.p2{border-left:6px solid #f9a825}.p3{border-left:6px solid #9e9e9e}
.ok{color:#1b5e20}.bad{color:#b00020}.wait{color:#8d6e00}.muted{color:#6b7280}
.tag{display:inline-block;padding:0 .4rem;border-radius:.3rem;background:#e8eaf6;font-size:.8rem}
.ex{background:#fff3cd}pre{white-space:pre-wrap;background:#fff;padding:.8rem}
.banner,.notice{padding:.6rem 1rem;margin-bottom:1rem;border-radius:.3rem}.banner{background:#b00020;color:#fff}
.notice{background:#fff3cd}.banner ul,.notice ul{margin:.3rem 0}
"""


def _page(title: str, body: str, *, refresh: int | None = None) -> web.Response:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    text = (
        f'<!doctype html><html lang="ja"><head><meta charset="utf-8">{meta}'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/style.css"></head>'
        f"<body><header><h1>{html.escape(title)}</h1></header><main>{body}</main></body></html>"
    )
    return web.Response(text=text, content_type="text/html", charset="utf-8")


def _counts_cell(counts: dict[str, dict[str, int]]) -> str:
    if not counts:
        return '<span class="muted">no recipients</span>'
    parts = []
    for ch, c in sorted(counts.items()):
        pending = c["queued"] + c["sending"]
        bits = [f'<span class="ok">{c["delivered"]} delivered</span>']
        if pending:
            bits.append(f'<span class="wait">{pending} pending</span>')
        if c["failed"]:
            bits.append(f'<span class="bad">{c["failed"]} failed</span>')
        if c["superseded"] or c["expired"]:
            bits.append(f'<span class="muted">{c["superseded"] + c["expired"]} superseded/expired</span>')
        parts.append(f"<b>{html.escape(ch)}</b>: " + ", ".join(bits))
    return "<br>".join(parts)


async def dashboard(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.pool is not None
    async with service.pool.acquire() as conn:
        alerts = await status.recent_alerts(conn, 50)
        docs = await status.documents_summary(conn)
        pauses = await status.channel_pauses(conn)
    rows = []
    for a in alerts:
        ex = "" if a["status"] == "actual" else f' <span class="tag ex">{html.escape(a["status"])}</span>'
        rows.append(
            f'<tr class="p{a["priority"]}"><td><a href="/alerts/{a["id"]}/deliveries">{a["id"]}</a></td>'
            f"<td>{datetime.fromisoformat(a['received_at']).astimezone(JST):%m-%d %H:%M:%S}</td>"
            f'<td><span class="tag">{html.escape(a["source"])}</span> {html.escape(a["kind"])}</td>'
            f"<td><b>{html.escape(a['event'])}</b>{ex}<br>"
            f"<span class=muted>{html.escape(a['headline'][:140])}</span></td>"
            f"<td>{html.escape(a['state'])}</td><td>{_counts_cell(a['deliveries'])}</td></tr>"
        )
    doc_line = ", ".join(f"{n} {k}" for k, n in sorted(docs.items())) or "none yet"
    body = (
        _pause_banner(pauses) + f"<p>Channels: {html.escape(', '.join(service.channels) or 'none enabled')} · "
        f"Documents received: {html.escape(doc_line)}</p>"
        "<table><tr><th>#</th><th>Received (JST)</th><th>Source</th><th>Alert</th><th>State</th>"
        "<th>Deliveries</th></tr>" + ("".join(rows) or '<tr><td colspan="6">No alerts yet.</td></tr>') + "</table>"
    )
    return _page(service.settings.service.name + " — 配信状況 / delivery status", body, refresh=3)


def _pause_banner(pauses: list[dict[str, Any]]) -> str:
    """Paused channels, on top of the dashboard: red when more than routine flood control."""
    if not pauses:
        return ""
    kind = "banner" if status.health(pauses) == "degraded" else "notice"
    items = "".join(f"<li>{html.escape(status.describe_pause(p))}</li>" for p in pauses)
    resume = " · ".join(
        f"<code>dispatcher channel resume {html.escape(name)}</code>" for name in sorted({p["channel"] for p in pauses})
    )
    return (
        f'<div class="{kind}" role="alert"><b>⚠ 配信一時停止中 / Delivery paused</b>'
        f"<ul>{items}</ul>To resume now: {resume}</div>"
    )


async def _public_alert(conn: asyncpg.Connection, key: str) -> asyncpg.Record:
    """The alert residents' links name: its public id (or a link sent before public ids)."""
    a = await alert_store.public_alert(conn, key) if _PUBLIC_KEY.fullmatch(key) else None
    if a is None:
        raise web.HTTPNotFound(text="no such alert")
    return a


async def _operator_alert(conn: asyncpg.Connection, key: str) -> asyncpg.Record:
    """The alert operators' pages name: its row number."""
    a = await alert_store.alert_by_id(conn, int(key)) if key.isascii() and key.isdigit() and len(key) < 19 else None
    if a is None:
        raise web.HTTPNotFound(text=f"no alert {key!r}")
    return a


# What residents see when the alert they followed a link to is no longer current.
_STATE_NOTES = {
    "cancelled": "この情報は取り消されました。 This alert was cancelled.",
    "superseded": "この情報は更新されました。最新の情報を確認してください。 This alert was updated: check the latest.",
    "stale": "より新しい情報があります。 A newer alert of this series exists.",
}


async def alert_page(request: web.Request) -> web.Response:
    """The alert as residents read it: no deliveries, no operators' notes."""
    service = request.app[SERVICE]
    assert service.pool is not None
    async with service.pool.acquire() as conn:
        a = await _public_alert(conn, request.match_info["id"])
    if a["state"] == "held":  # not issued (yet): nothing to show residents
        raise web.HTTPNotFound(text="no such alert")
    areas = ", ".join(html.escape(x.get("description", "")) for x in a["areas"]) or "-"
    note = _STATE_NOTES.get(a["state"])
    expires = f" · 有効期限 {a['expires'].astimezone(JST):%Y-%m-%d %H:%M} JST" if a["expires"] else ""
    exercise = "" if a["status"] == "actual" else f' <span class="tag ex">{html.escape(a["status"])}</span>'
    body = (
        (f'<p class="bad"><b>{html.escape(note)}</b></p>' if note else "")
        + f"<p><b>{html.escape(a['event'])}</b>{exercise} — {html.escape(a['headline'])}</p>"
        f"<p class=muted>{html.escape(a['sender'])} · 発表 {a['sent'].astimezone(JST):%Y-%m-%d %H:%M} JST{expires}</p>"
        f"<p>対象地域 Areas: {areas}</p>"
        + (f"<pre>{html.escape(a['description'])}</pre>" if a["description"] else "")
        + (f"<pre>{html.escape(a['instruction'])}</pre>" if a["instruction"] else "")
    )
    return _page(a["event"], body)


def _integer(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    """Query parameter ``key`` as an integer from ``low`` to ``high``, else a 400 that says so."""
    text = request.query.get(key)
    if text is None or text == "":
        return default
    wrong = integer_problem(text, key, low=low, high=high)
    if wrong is not None:
        raise web.HTTPBadRequest(text=wrong)
    return int(text)


def _delivery_query(request: web.Request) -> dict[str, Any]:
    """The operators' filters, checked: a bad one is a 400 that says what is allowed."""
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in status.FILTERS:
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(status.FILTERS)}, not {state[:60]!r}")
    channel = q.get("channel") or None
    if channel is not None and channel not in REGISTRY:
        raise web.HTTPBadRequest(text=f"channel must be one of {', '.join(sorted(REGISTRY))}, not {channel[:60]!r}")
    # Delivery ids are bigint; more than 1000 rows is a dump, not a page.
    after = _integer(request, "after", 0, 0, BIGINT_MAX)
    limit = _integer(request, "limit", 200, 1, 1000)
    return {"state": state, "channel": channel, "after": after, "limit": limit}


@dataclass(frozen=True, slots=True)
class _AlertDeliveries:
    alert: Any
    query: dict[str, Any]
    rows: list[dict[str, Any]]
    reasons: list[dict[str, Any]]
    counts: dict[str, dict[str, int]]


async def _alert_deliveries(request: web.Request) -> _AlertDeliveries:
    service = request.app[SERVICE]
    assert service.pool is not None
    query = _delivery_query(request)
    async with service.pool.acquire() as conn:
        a = await _operator_alert(conn, request.match_info["id"])
        alert_id = int(a["id"])
        return _AlertDeliveries(
            a,
            query,
            await status.alert_deliveries(conn, alert_id, **query),
            await status.failure_reasons(conn, alert_id),
            await status.delivery_counts(conn, alert_id),
        )


async def deliveries_page(request: web.Request) -> web.Response:
    found = await _alert_deliveries(request)
    a, query, rows, reasons = found.alert, found.query, found.rows, found.reasons
    alert_id = int(a["id"])
    details = a["details"] or {}
    problems = "".join(f'<p class="bad">⚠ {html.escape(str(p))}</p>' for p in details.get("problems") or ())
    base = f"/alerts/{alert_id}/deliveries"
    filters = " · ".join(
        f'<a href="{base}?{urlencode({"state": st} if st else {})}">{html.escape(st or "all")}</a>'
        for st in (None, "failed", "pending", "delivered", "superseded", "expired")
    )
    reason_rows = "".join(
        f"<tr><td>{html.escape(r['channel'])}</td><td>{html.escape(r['state'])}</td><td>{r['n']}</td>"
        f"<td>{html.escape(r['reason'])}</td></tr>"
        for r in reasons
    )
    table = "".join(
        f'<tr><td><a href="/deliveries/{d["id"]}">{d["id"]}</a></td><td>{html.escape(d["channel"])}</td>'
        f"<td>{html.escape(_mask(d['address']))}</td><td>{html.escape(d['language'])}</td>"
        f"<td>{html.escape(d['state'])}</td><td>{d['attempts']}</td><td>{html.escape(d['remote_id'] or '')}</td>"
        f"<td>{html.escape(d['last_error'] or '')}</td><td>{d['updated_at'].astimezone(JST):%H:%M:%S}</td></tr>"
        for d in rows
    )
    more = ""
    if len(rows) == query["limit"]:
        nxt = {k: v for k, v in {**query, "after": rows[-1]["id"]}.items() if v is not None}
        more = f'<p><a href="{base}?{urlencode(nxt)}">next {query["limit"]} →</a></p>'
    body = (
        f"<p><b>{html.escape(a['event'])}</b> — {html.escape(a['headline'])} "
        f'(<a href="/alerts/{quote(a["public_id"], safe="")}">as residents see it</a>)</p>'
        f"<p class=muted>{html.escape(a['sender'])} · sent {a['sent'].astimezone(JST):%Y-%m-%d %H:%M} JST"
        f" · {html.escape(a['status'])} · {html.escape(a['msg_type'])} · state {html.escape(a['state'])}</p>"
        f"{problems}<p>{_counts_cell(found.counts)}</p>"
        + (
            "<h2>Why deliveries failed or wait for a retry</h2><table><tr><th>Channel</th><th>State</th>"
            f"<th>Deliveries</th><th>Reason</th></tr>{reason_rows}</table>"
            if reasons
            else ""
        )
        + f"<h2>Deliveries</h2><p>{filters}</p>"
        "<table><tr><th>#</th><th>Channel</th><th>To</th><th>Lang</th><th>State</th><th>Attempts</th>"
        f"<th>Provider id</th><th>Last error</th><th>Updated</th></tr>{table}</table>{more}"
    )
    return _page(f"{a['event']} (#{alert_id}) — deliveries", body)


async def delivery_page(request: web.Request) -> web.Response:
    d = await _delivery(request)
    events = "".join(
        f"<tr><td>{e['at'].astimezone(JST).isoformat(sep=' ', timespec='milliseconds')[:23]}</td>"
        f"<td>{html.escape(e['state'])}</td><td>{e['attempt']}</td><td>{html.escape(e['detail'] or '')}</td></tr>"
        for e in d["events"]
    )
    body = (
        f'<p>Alert <a href="/alerts/{d["alert_id"]}/deliveries">#{d["alert_id"]}</a> '
        f"{html.escape(d['alert_event'])} · {html.escape(d['channel'])} to {html.escape(_mask(d['address']))}"
        f" ({html.escape(d['language'])})</p>"
        f"<p>State <b>{html.escape(d['state'])}</b> after {d['attempts']} attempt(s)"
        + (f" · provider id {html.escape(d['remote_id'])}" if d["remote_id"] else "")
        + (f' · <span class="bad">{html.escape(d["last_error"])}</span>' if d["last_error"] else "")
        + "</p><h2>Transitions</h2><table><tr><th>At (JST)</th><th>State</th><th>Attempt</th><th>Detail</th></tr>"
        f"{events}</table>"
    )
    return _page(f"Delivery #{d['id']}", body)


async def _delivery(request: web.Request) -> dict[str, Any]:
    service = request.app[SERVICE]
    assert service.pool is not None
    key = request.match_info["id"]
    if integer_problem(key, "delivery id", low=1) is not None:
        raise web.HTTPNotFound(text=f"no delivery {key[:60]!r}")
    async with service.pool.acquire() as conn:
        d = await status.delivery_history(conn, int(key))
    if d is None:
        raise web.HTTPNotFound(text=f"no delivery {key!r}")
    return d


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """Timestamps as ISO 8601; addresses masked as on the pages."""
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    if "address" in out:
        out["address"] = _mask(out["address"])
    return out


async def api_deliveries(request: web.Request) -> web.Response:
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
    d = await _delivery(request)
    events = [_json_row(e) for e in d.pop("events")]
    return web.json_response({"delivery": _json_row(d), "events": events})


async def api_alerts(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.pool is not None
    limit = _integer(request, "limit", 50, 1, 500)
    async with service.pool.acquire() as conn:
        data: dict[str, Any] = {"alerts": await status.recent_alerts(conn, limit), "totals": await status.totals(conn)}
    return web.json_response(data)


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.pool is not None
    try:
        async with service.pool.acquire(timeout=2) as conn:
            pauses = await status.channel_pauses(conn)
    except Exception as exc:
        return web.json_response({"ok": False, "error": str(exc)}, status=503)
    # Still 200 when degraded: the daemon is alive; a paused channel is for people to act on.
    body: dict[str, Any] = {"ok": True, "status": status.health(pauses), "paused": pauses}
    if service.peers is not None:
        # This daemon and its share of each provider's limits (dispatcher.peers).
        body["daemon"] = {
            "id": service.peers.id,
            "channels": {
                name: {"daemons": share.live, "rank": share.rank} for name, share in service.peers.shares.items()
            },
        }
    return web.json_response(body)


async def stylesheet(_request: web.Request) -> web.Response:
    """The pages' CSS, from our own origin: the CSP allows no inline style."""
    return web.Response(
        text=_CSS, content_type="text/css", charset="utf-8", headers={"Cache-Control": "public, max-age=3600"}
    )


def create_app(service: Service) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[SERVICE] = service
    hygiene.install(app, body_timeout=service.settings.web.body_timeout_seconds, public=(alert_page, stylesheet))
    app.router.add_get("/style.css", stylesheet)
    app.router.add_get("/", dashboard)
    app.router.add_get("/alerts/{id}", alert_page)
    app.router.add_get("/alerts/{id}/deliveries", deliveries_page)
    app.router.add_get("/deliveries/{id}", delivery_page)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/api/alerts/{id}/deliveries", api_deliveries)
    app.router.add_get("/api/deliveries/{id}", api_delivery)
    app.router.add_get("/healthz", healthz)
    # Pushed sources (webhooks) bring their own routes.
    if service.context is not None:
        for source in service.pushed:
            app.router.add_routes(source.routes(service.context))
    return app
