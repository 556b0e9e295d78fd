"""Text for people about the operators' read models: the tables and lines of ``dispatcher status``.

The data comes from :mod:`dispatcher.store.reports`; the dashboard's banner uses
:func:`describe_pause` too, so the terminal and the page say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.cells import cell_len

from dispatcher.privacy import mask
from dispatcher.store.quotas import QuotaRow
from dispatcher.store.reports import AlertSummary, DeliveryRow, Pause, health

JST = ZoneInfo("Asia/Tokyo")


def format_documents(documents: dict[str, int]) -> str:
    """One line: unsupported and failed documents are what an operator must notice."""
    order = ["parsed", "unsupported", "error", "fetch_failed", "pending"]
    keys = [k for k in order if k in documents] + sorted(set(documents) - set(order))
    return "documents: " + (", ".join(f"{k} {documents[k]}" for k in keys) or "none")


def fit(text: str, width: int, *, right: bool = False) -> str:
    """Cut and pad ``text`` to ``width`` terminal columns, as a terminal draws them.

    Display width, not characters: CJK characters and full-width forms take two columns,
    combining marks none (rich's ``cell_len``, the Unicode East Asian Width tables).
    """
    out, used = "", 0
    for ch in text.replace("\n", " "):
        w = cell_len(ch)
        if used + w > width:
            break
        out, used = out + ch, used + w
    pad = " " * (width - used)
    return pad + out if right else out + pad


def table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int], right: frozenset[int] = frozenset()
) -> str:
    """Rows of cells cut and padded to ``widths`` display columns (the last column is left as it is)."""

    def line(cells: Sequence[Any]) -> str:
        parts = [fit(str(c), w, right=i in right) for i, (c, w) in enumerate(zip(cells[:-1], widths, strict=False))]
        return "  ".join([*parts, str(cells[-1])]).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def format_table(alerts: list[AlertSummary], documents: dict[str, int] | None = None) -> str:
    """A plain-text table for the terminal (with the documents line when given)."""
    footer = "" if documents is None else "\n" + format_documents(documents)
    if not alerts:
        return "no alerts yet" + footer
    rows = []
    for a in alerts:
        per = "; ".join(
            f"{ch}: {c['delivered']} delivered, {c['queued'] + c['sending']} pending, {c['failed']} failed"
            for ch, c in sorted(a["deliveries"].items())
        )
        received = datetime.fromisoformat(a["received_at"]).astimezone(JST)
        rows.append([a["id"], f"{received:%Y-%m-%d %H:%M:%S}", a["kind"], a["state"], a["event"], per or "-"])
    header = ["id", "received (JST)", "kind", "state", "event", "deliveries"]
    return table(header, rows, (5, 19, 7, 10, 24), right=frozenset({0})) + footer


def format_deliveries(rows: Sequence[DeliveryRow]) -> str:
    """An alert's deliveries for the terminal, addresses masked as on the pages."""
    if not rows:
        return "no deliveries"
    body = [
        [
            d["id"],
            d["channel"],
            mask(d["address"]),
            d["language"],
            d["state"],
            d["attempts"],
            f"{d['updated_at'].astimezone(JST):%m-%d %H:%M:%S}",
            d["remote_id"] or "-",
            d["last_error"] or "",
        ]
        for d in rows
    ]
    header = ["id", "channel", "address", "lang", "state", "tries", "updated (JST)", "provider id", "last error"]
    return table(header, body, (8, 9, 16, 7, 10, 5, 14, 24), right=frozenset({0, 5}))


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def describe_pause(p: Pause) -> str:
    """One line for people: which channel, why, until when (JST), the reason."""
    if p["why"] == "operator":
        who = f"paused by {p['by'] or 'an operator'}"
    elif p["why"] == "provider":
        who = "paused by the provider (429)"
    else:
        who = f"backing off after {p['failures']} failure(s)"
    if p["until"] is None:
        when = "until resumed"
    else:
        until = datetime.fromisoformat(p["until"]).astimezone(JST)
        when = f"until {until:%Y-%m-%d %H:%M:%S} JST ({_duration(p['seconds_left'] or 0)} left)"
    return f"{p['channel']}: {who} {when}" + (f": {p['reason']}" if p["reason"] else "")


def format_pauses(pauses: list[Pause]) -> str:
    """The channels' lines of ``dispatcher status``."""
    if not pauses:
        return "channels: none paused"
    lines = [f"channels: {health(pauses).upper()}"] + ["  " + describe_pause(p) for p in pauses]
    names = sorted({p["channel"] for p in pauses})
    lines.append("  resume with: " + "; ".join(f"dispatcher channel resume {n}" for n in names))
    return "\n".join(lines)


def describe_quota(q: QuotaRow) -> str:
    """One line for people: a channel's monthly message quota as last read, and whether sends are held."""
    read = datetime.fromisoformat(q["read_at"]).astimezone(JST)
    if q["quota"] is None:
        line = f"{q['channel']}: plan {q['plan']}, no monthly quota"
        if q["plan"] != "municipal":
            line += f" ({q['used']:,} sent this month)"
    else:
        line = (
            f"{q['channel']}: plan {q['plan']}, {q['used']:,} of {q['quota']:,} messages this month"
            f" ({q['percent']}%, {q['remaining']:,} left)"
        )
    line += f", read {read:%Y-%m-%d %H:%M} JST"
    return line + (f"\n    HELD: {q['held']}" if q["held"] else "")


def format_quotas(quotas: list[QuotaRow]) -> str:
    """The quota lines of ``dispatcher status``."""
    return "quotas:\n" + "\n".join("  " + describe_quota(q) for q in quotas)
