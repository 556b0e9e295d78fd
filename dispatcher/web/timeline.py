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

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Layout:
    """The chart's geometry: wide (labels in a column on the left) or narrow (labels above each row)."""

    width: int
    left: int
    right: int
    row: int
    top: int
    narrow: bool


WIDE = Layout(760, 200, 24, 30, 34, narrow=False)
NARROW = Layout(380, 10, 14, 44, 34, narrow=True)


def chart(t: progress.TimelineData, lay: Layout = WIDE) -> Markup:
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
    plot = lay.width - lay.left - lay.right
    height = lay.top + lay.row * len(rows) + 10

    def x(m: datetime) -> float:
        return lay.left + plot * max(0.0, (m - issued).total_seconds()) / span

    kind = "narrow" if lay.narrow else "wide"
    parts = [
        f'<svg class="timeline timeline-{kind}" viewBox="0 0 {lay.width} {height}" role="img" '
        f'aria-label="{escape(t["event"])}: timeline from issue to last delivery" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{lay.left}" y="14" class="muted">{escape(issued.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"))}'
        " JST = 0</text>",
    ]
    ticks = 2 if lay.narrow else 4
    for i in range(ticks + 1):
        gx = lay.left + plot * i / ticks
        anchor = "start" if lay.narrow and i == 0 else "end" if lay.narrow and i == ticks else "middle"
        parts.append(f'<line class="grid" x1="{gx:.1f}" y1="{lay.top - 12}" x2="{gx:.1f}" y2="{height - 6}"></line>')
        parts.append(
            f'<text x="{gx:.1f}" y="{lay.top - 2}" class="muted" text-anchor="{anchor}">'
            f"{_secs(span * i / ticks)}</text>"
        )
    for n, (label, a, b, note) in enumerate(rows):
        y = lay.top + lay.row * n + (lay.row - 10 if lay.narrow else lay.row / 2)
        when = "nothing delivered yet" if a is None else _secs((a - issued).total_seconds())
        if a is not None and b is not None:
            when = f"first {when} · last {_secs((b - issued).total_seconds())}"
        parts.append(
            f'<line class="axis" x1="{lay.left}" y1="{y:.1f}" x2="{lay.width - lay.right}" y2="{y:.1f}"></line>'
        )
        if lay.narrow:
            parts.append(
                f'<text x="4" y="{y - 12:.1f}"><tspan font-weight="bold">{escape(label)}</tspan> {escape(when)}'
                f"{' · ' + escape(note) if n >= first_channel else ''}</text>"
            )
        else:
            parts.append(f'<text x="4" y="{y + 4:.1f}">{escape(label)}</text>')
        if a is None:
            if not lay.narrow:
                parts.append(f'<text x="{lay.left + 4}" y="{y - 4:.1f}" class="muted">{when} · {escape(note)}</text>')
            continue
        cls = "dot delivery" if n >= first_channel else "dot"
        if b is not None and b != a:
            parts.append(f'<line class="span" x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(b):.1f}" y2="{y:.1f}"></line>')
        parts.append(f'<circle class="{cls}" cx="{x(a):.1f}" cy="{y:.1f}" r="5"></circle>')
        if b is not None:
            parts.append(f'<circle class="{cls}" cx="{x(b):.1f}" cy="{y:.1f}" r="5"></circle>')
        if lay.narrow:
            continue
        end = x(b if b is not None else a)
        anchor, tx = ("end", end - 8) if end > lay.left + plot * 0.55 else ("start", end + 8)
        parts.append(
            f'<text x="{tx:.1f}" y="{y - 6:.1f}" text-anchor="{anchor}">{escape(when)}'
            f' <tspan class="muted">{escape(note)}</tspan></text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text above is escaped)


async def timeline_page(request: web.Request) -> web.Response:
    """The chart and a table of the same figures."""
    t = await _data(request)
    # Both drawn; the stylesheet shows the narrow one on phones.
    values = {"t": t, "f": figures(t), "chart": chart(t) + chart(t, NARROW)}
    return page(request, "timeline.html", f"{t['event']} (#{t['id']}) — timeline", values)


async def api_timeline(request: web.Request) -> web.Response:
    """The figures as JSON."""
    return web.json_response(figures(await _data(request)))
