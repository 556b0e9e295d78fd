"""The daemon's web server: operators' dashboard, alert pages and JSON API.

Routes:
    GET /               dashboard: recent alerts with per-channel delivery counts
    GET /alerts/{id}    one alert: its text, areas and every delivery's fate
    GET /api/alerts     the dashboard's data as JSON
    GET /healthz        liveness (database reachable), this daemon's share among the live ones
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from dispatcher import status

if TYPE_CHECKING:
    from dispatcher.app import Service

SERVICE: web.AppKey[Service] = web.AppKey("service")
JST = ZoneInfo("Asia/Tokyo")

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
"""


def _page(title: str, body: str, *, refresh: int | None = None) -> web.Response:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    text = (
        f'<!doctype html><html lang="ja"><head><meta charset="utf-8">{meta}'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
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
    rows = []
    for a in alerts:
        ex = "" if a["status"] == "actual" else f' <span class="tag ex">{html.escape(a["status"])}</span>'
        rows.append(
            f'<tr class="p{a["priority"]}"><td><a href="/alerts/{quote(a["identifier"], safe="")}">{a["id"]}</a></td>'
            f"<td>{datetime.fromisoformat(a['received_at']).astimezone(JST):%m-%d %H:%M:%S}</td>"
            f'<td><span class="tag">{html.escape(a["source"])}</span> {html.escape(a["kind"])}</td>'
            f"<td><b>{html.escape(a['event'])}</b>{ex}<br>"
            f"<span class=muted>{html.escape(a['headline'][:140])}</span></td>"
            f"<td>{html.escape(a['state'])}</td><td>{_counts_cell(a['deliveries'])}</td></tr>"
        )
    doc_line = ", ".join(f"{n} {k}" for k, n in sorted(docs.items())) or "none yet"
    body = (
        f"<p>Channels: {html.escape(', '.join(service.channels) or 'none enabled')} · "
        f"Documents received: {html.escape(doc_line)}</p>"
        "<table><tr><th>#</th><th>Received (JST)</th><th>Source</th><th>Alert</th><th>State</th>"
        "<th>Deliveries</th></tr>" + ("".join(rows) or '<tr><td colspan="6">No alerts yet.</td></tr>') + "</table>"
    )
    return _page(service.settings.service.name + " — 配信状況 / delivery status", body, refresh=3)


async def alert_page(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.pool is not None
    key = request.match_info["id"]
    async with service.pool.acquire() as conn:
        # Links (residents' messages, the dashboard) carry the identifier, which
        # may itself be all digits; a bare row number is accepted as a fallback.
        a = await conn.fetchrow("SELECT * FROM alerts WHERE identifier = $1 ORDER BY id DESC LIMIT 1", key)
        if a is None and key.isdigit() and len(key) < 19:
            a = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1", int(key))
        if a is None:
            raise web.HTTPNotFound()
        alert_id = int(a["id"])
        deliveries = await conn.fetch(
            "SELECT id, channel, address, language, state::text, attempts, remote_id, last_error, updated_at"
            " FROM deliveries WHERE alert_id = $1 ORDER BY channel, id LIMIT 500",
            alert_id,
        )
    areas = ", ".join(html.escape(x.get("description", "")) for x in a["areas"]) or "-"
    # What the source reported for operators (unknown loudspeaker groups, unusable CAP shapes…).
    details = a["details"] or {}
    reported = [str(p) for p in details.get("problems") or ()]
    problems = "".join(f'<p class="bad">⚠ {html.escape(p)}</p>' for p in reported)
    rows = "".join(
        f"<tr><td>{d['id']}</td><td>{html.escape(d['channel'])}</td><td>{html.escape(_mask(d['address']))}</td>"
        f"<td>{html.escape(d['language'])}</td><td>{html.escape(d['state'])}</td><td>{d['attempts']}</td>"
        f"<td>{html.escape(d['remote_id'] or '')}</td><td>{html.escape(d['last_error'] or '')}</td>"
        f"<td>{d['updated_at'].astimezone(JST):%H:%M:%S}</td></tr>"
        for d in deliveries
    )
    body = (
        f"<p><b>{html.escape(a['event'])}</b> — {html.escape(a['headline'])}</p>"
        f"<p class=muted>{html.escape(a['sender'])} · sent {a['sent'].astimezone(JST):%Y-%m-%d %H:%M} JST"
        f" · {html.escape(a['status'])}"
        f" · {html.escape(a['msg_type'])} · state {html.escape(a['state'])}</p>"
        f"<p>Areas: {areas}</p>{problems}<pre>{html.escape(a['description'])}</pre>"
        "<h2>Deliveries</h2><table><tr><th>#</th><th>Channel</th><th>To</th><th>Lang</th><th>State</th>"
        f"<th>Attempts</th><th>Provider id</th><th>Last error</th><th>Updated</th></tr>{rows}</table>"
    )
    return _page(f"{a['event']} (#{alert_id})", body)


def _mask(address: str) -> str:
    """Operators see enough of an address to tell recipients apart, not all of it."""
    if "@" in address:
        user, _, domain = address.partition("@")
        return user[:2] + "…@" + domain
    return address if len(address) <= 4 else "…" + address[-4:]


async def api_alerts(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.pool is not None
    limit = min(int(request.query.get("limit", "50")), 500)
    async with service.pool.acquire() as conn:
        data: dict[str, Any] = {"alerts": await status.recent_alerts(conn, limit), "totals": await status.totals(conn)}
    return web.json_response(data)


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.pool is not None
    try:
        async with service.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return web.json_response({"ok": False, "error": str(exc)}, status=503)
    body: dict[str, Any] = {"ok": True}
    if service.peers is not None:
        # This daemon and its share of each provider's limits (dispatcher.peers).
        body["daemon"] = {
            "id": service.peers.id,
            "channels": {
                name: {"daemons": share.live, "rank": share.rank} for name, share in service.peers.shares.items()
            },
        }
    return web.json_response(body)


def create_app(service: Service) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[SERVICE] = service
    app.router.add_get("/", dashboard)
    app.router.add_get("/alerts/{id}", alert_page)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/healthz", healthz)
    # Pushed sources (webhooks) bring their own routes.
    if service.context is not None:
        for source in service.pushed:
            app.router.add_routes(source.routes(service.context))
    return app
