"""An alert's timeline: from its source's issue time to the last delivery per channel, as SVG and as JSON.

    GET /alerts/{id}/timeline       the chart, drawn on the server (inline SVG: no script, CSP-clean)
    GET /api/alerts/{id}/timeline   the same figures as JSON

The moments (:func:`dispatcher.store.progress.timeline`): issued (JMA's
ReportDateTime, the broadcast's air time, the console's approval: the alert's
``sent``), received (the document's arrival), stored, and per channel the first and
the last delivery. Every figure is also given in seconds after the issue time and
after our receipt, which is what a review asks ("how long from JMA to phones?").
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from aiohttp import web
from markupsafe import Markup

from dispatcher.status import JST
from dispatcher.store import progress
from dispatcher.web.context import WEB
from dispatcher.web.templating import page

ISSUED_AS = {
    "jma": "JMA ReportDateTime",
    "broadcast": "aired (municipal broadcast)",
    "console": "approved in the console",
}
WIDTH, LEFT, RIGHT, ROW, TOP = 760, 200, 24, 30, 34


async def _data(request: web.Request) -> progress.TimelineData:
    key = request.match_info["id"]
    found = None
    if key.isascii() and key.isdigit() and len(key) < 19:
        async with request.app[WEB].pool.acquire() as conn:
            found = await progress.timeline(conn, int(key))
    if found is None:
        raise web.HTTPNotFound(text=f"no alert {key[:60]!r}")
    return found


def _after(t: datetime | None, origin: datetime) -> float | None:
    return None if t is None else round((t - origin).total_seconds(), 3)


def figures(t: progress.TimelineData) -> dict[str, Any]:
    """The timeline as JSON-ready figures: each moment, and seconds after issue and after receipt."""
    issued, received = t["issued"], t["received"]
    return {
        "alert": {
            "id": t["id"],
            "identifier": t["identifier"],
            "event": t["event"],
            "source": t["source"],
            "status": t["status"],
        },
        "issued": issued.isoformat(),
        "issued_as": ISSUED_AS.get(t["source"], "sent"),
        "approved": t["approved"].isoformat() if t["approved"] else None,
        "received": received.isoformat(),
        "received_as": "document arrived" if t["from_document"] else "handed to the pipeline (no document)",
        "stored": t["stored"].isoformat(),
        "receipt_after_issue_s": _after(received, issued),
        "stored_after_receipt_s": _after(t["stored"], received),
        "channels": [
            {
                "channel": c["channel"],
                "delivered": c["delivered"],
                "total": c["total"],
                "first_delivery": c["first"].isoformat() if c["first"] else None,
                "last_delivery": c["last"].isoformat() if c["last"] else None,
                "first_after_issue_s": _after(c["first"], issued),
                "last_after_issue_s": _after(c["last"], issued),
                "first_after_receipt_s": _after(c["first"], received),
                "last_after_receipt_s": _after(c["last"], received),
            }
            for c in t["channels"]
        ],
    }


def _secs(s: float) -> str:
    if abs(s) < 10:
        return f"+{s:.2f} s"
    if abs(s) < 120:
        return f"+{s:.1f} s"
    return f"+{s / 60:.1f} min"


def chart(t: progress.TimelineData) -> Markup:
    """The SVG: a row per moment (a dot) and per channel (a bar from first to last delivery)."""
    issued = t["issued"]
    rows: list[tuple[str, datetime | None, datetime | None, str]] = [
        ("発表 issued", issued, None, ISSUED_AS.get(t["source"], "sent")),
    ]
    if t["approved"] is not None and t["source"] != "console":
        rows.append(("承認 approved", t["approved"], None, "console approval"))
    rows.append(("受信 received", t["received"], None, "document arrived" if t["from_document"] else "handed to us"))
    rows.append(("保存 stored", t["stored"], None, "alert stored"))
    for c in t["channels"]:
        note = f"{c['delivered']:,}/{c['total']:,} delivered"
        rows.append((c["channel"], c["first"], c["last"], note))
    first_channel = len(rows) - len(t["channels"])
    moments = [m for _l, a, b, _n in rows for m in (a, b) if m is not None]
    span = max(1e-3, max((m - issued).total_seconds() for m in moments))
    plot = WIDTH - LEFT - RIGHT
    height = TOP + ROW * len(rows) + 10

    def x(m: datetime) -> float:
        return LEFT + plot * max(0.0, (m - issued).total_seconds()) / span

    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(t["event"])}: timeline from issue to last delivery" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{LEFT}" y="14" class="muted">{escape(issued.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"))}'
        " JST = 0</text>",
    ]
    for i in range(5):
        gx = LEFT + plot * i / 4
        parts.append(f'<line class="grid" x1="{gx:.1f}" y1="{TOP - 12}" x2="{gx:.1f}" y2="{height - 6}"></line>')
        parts.append(
            f'<text x="{gx:.1f}" y="{TOP - 2}" class="muted" text-anchor="middle">{_secs(span * i / 4)}</text>'
        )
    for n, (label, a, b, note) in enumerate(rows):
        y = TOP + ROW * n + ROW / 2
        parts.append(f'<text x="4" y="{y + 4:.1f}">{escape(label)}</text>')
        parts.append(f'<line class="axis" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"></line>')
        if a is None:
            parts.append(
                f'<text x="{LEFT + 4}" y="{y - 4:.1f}" class="muted">nothing delivered yet · {escape(note)}</text>'
            )
            continue
        cls = "dot delivery" if n >= first_channel else "dot"
        if b is not None and b != a:
            parts.append(f'<line class="span" x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(b):.1f}" y2="{y:.1f}"></line>')
        parts.append(f'<circle class="{cls}" cx="{x(a):.1f}" cy="{y:.1f}" r="5"></circle>')
        if b is not None:
            parts.append(f'<circle class="{cls}" cx="{x(b):.1f}" cy="{y:.1f}" r="5"></circle>')
        when = _secs((a - issued).total_seconds())
        if b is not None:
            when = f"first {when} · last {_secs((b - issued).total_seconds())}"
        end = x(b if b is not None else a)
        anchor, tx = ("end", end - 8) if end > LEFT + plot * 0.55 else ("start", end + 8)
        parts.append(
            f'<text x="{tx:.1f}" y="{y - 6:.1f}" text-anchor="{anchor}">{escape(when)}'
            f' <tspan class="muted">{escape(note)}</tspan></text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text above is escaped)


async def timeline_page(request: web.Request) -> web.Response:
    """The chart and a table of the same figures."""
    t = await _data(request)
    values = {"t": t, "f": figures(t), "chart": chart(t)}
    return page(request, "timeline.html", f"{t['event']} (#{t['id']}) — timeline", values)


async def api_timeline(request: web.Request) -> web.Response:
    """The figures as JSON."""
    return web.json_response(figures(await _data(request)))
