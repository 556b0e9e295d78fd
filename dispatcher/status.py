"""Text for people about the operators' read models: the tables and lines of ``dispatcher status``.

The data comes from :mod:`dispatcher.store.reports`; the dashboard's banner uses
:func:`describe_pause` too, so the terminal and the page say the same thing.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

from dispatcher.store.quotas import QuotaRow
from dispatcher.store.reports import AlertSummary, Pause, health

JST = ZoneInfo("Asia/Tokyo")


def format_documents(documents: dict[str, int]) -> str:
    """One line: unsupported and failed documents are what an operator must notice."""
    order = ["parsed", "unsupported", "error", "fetch_failed", "pending"]
    keys = [k for k in order if k in documents] + sorted(set(documents) - set(order))
    return "documents: " + (", ".join(f"{k} {documents[k]}" for k in keys) or "none")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    """Cut and pad ``text`` to ``width`` terminal columns (CJK characters take two)."""
    out = ""
    for ch in text:
        if _width(out + ch) > width:
            break
        out += ch
    return out + " " * (width - _width(out))


def format_table(alerts: list[AlertSummary], documents: dict[str, int] | None = None) -> str:
    """A plain-text table for the terminal (with the documents line when given)."""
    footer = "" if documents is None else "\n" + format_documents(documents)
    if not alerts:
        return "no alerts yet" + footer
    lines = [f"{'id':>5}  {'received':<19}  {'kind':<7} {'state':<10} {_fit('event', 24)} deliveries"]
    for a in alerts:
        per = "; ".join(
            f"{ch}: {c['delivered']} delivered, {c['queued'] + c['sending']} pending, {c['failed']} failed"
            for ch, c in sorted(a["deliveries"].items())
        )
        lines.append(
            f"{a['id']:>5}  {a['received_at'][:19].replace('T', ' '):<19}  {a['kind']:<7} {a['state']:<10} "
            f"{_fit(a['event'], 24)} {per or '-'}"
        )
    return "\n".join(lines) + footer


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
