"""Read models for operators: recent alerts with per-channel delivery counts, paused channels.

Shared by ``dispatcher status``, the dashboard, ``/healthz`` and the JSON API.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from dispatcher.store import outbox

STATES = ("queued", "sending", "delivered", "failed", "superseded", "expired")
JST = ZoneInfo("Asia/Tokyo")
# A provider's pause longer than this is no routine flood control: the worker logs a
# warning and /healthz says "degraded". A backoff or an operator's hold always does.
LONG_PAUSE = 60.0


async def recent_alerts(conn: asyncpg.Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        WITH recent AS (
            SELECT id, identifier, public_id, source, kind, event, headline, status, msg_type, state, priority,
                   severity, sent, received_at, area_codes
            FROM alerts ORDER BY received_at DESC, id DESC LIMIT $1
        )
        SELECT r.*, COALESCE(c.counts, '{}'::jsonb) AS counts
        FROM recent r
        LEFT JOIN LATERAL (
            SELECT jsonb_object_agg(channel, states) AS counts FROM (
                SELECT channel, jsonb_object_agg(state, n) AS states
                FROM (SELECT channel, state::text, count(*) AS n FROM deliveries
                      WHERE alert_id = r.id GROUP BY channel, state) s
                GROUP BY channel
            ) per_channel
        ) c ON true
        ORDER BY r.received_at DESC, r.id DESC
        """,
        limit,
    )
    out = []
    for r in rows:
        counts = {ch: {st: int(states.get(st, 0)) for st in STATES} for ch, states in r["counts"].items()}
        out.append(
            {
                "id": r["id"],
                "identifier": r["identifier"],
                "public_id": r["public_id"],
                "source": r["source"],
                "kind": r["kind"],
                "event": r["event"],
                "headline": r["headline"],
                "status": r["status"],
                "msg_type": r["msg_type"],
                "state": r["state"],
                "priority": r["priority"],
                "severity": r["severity"],
                "sent": r["sent"].isoformat(),
                "received_at": r["received_at"].isoformat(),
                "area_codes": list(r["area_codes"]),
                "deliveries": counts,
            }
        )
    return out


async def totals(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Per channel, deliveries by state (whole database)."""
    rows = await conn.fetch("SELECT channel, state::text AS state, count(*) AS n FROM deliveries GROUP BY 1, 2")
    return _by_channel(rows)


def _by_channel(rows: list[asyncpg.Record]) -> dict[str, dict[str, int]]:
    """(channel, state, n) rows as {channel: {state: n}}, every state present."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["channel"], dict.fromkeys(STATES, 0))[r["state"]] = int(r["n"])
    return out


# Filters an operator can put on an alert's deliveries; "pending" is queued or sending.
FILTERS = {**{st: (st,) for st in STATES}, "pending": ("queued", "sending")}


async def alert_deliveries(
    conn: asyncpg.Connection,
    alert_id: int,
    *,
    state: str | None = None,
    channel: str | None = None,
    after: int = 0,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """One page of an alert's deliveries, by id, optionally of one state (see FILTERS) and channel."""
    states = list(FILTERS[state]) if state else None
    rows = await conn.fetch(
        """
        SELECT id, channel, address, language, state::text AS state, attempts, remote_id, last_error,
               created_at, updated_at, not_before
        FROM deliveries
        WHERE alert_id = $1 AND id > $2
          AND ($3::text[] IS NULL OR state::text = ANY($3)) AND ($4::text IS NULL OR channel = $4)
        ORDER BY id LIMIT $5
        """,
        alert_id,
        after,
        states,
        channel,
        limit,
    )
    return [dict(r) for r in rows]


async def delivery_counts(conn: asyncpg.Connection, alert_id: int) -> dict[str, dict[str, int]]:
    """Per channel, an alert's deliveries by state."""
    rows = await conn.fetch(
        "SELECT channel, state::text AS state, count(*) AS n FROM deliveries WHERE alert_id = $1 GROUP BY 1, 2",
        alert_id,
    )
    return _by_channel(rows)


async def failure_reasons(conn: asyncpg.Connection, alert_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Why an alert's deliveries failed or wait for a retry: per channel, state and reason, most common first."""
    rows = await conn.fetch(
        """
        SELECT channel, state::text AS state, last_error AS reason, count(*) AS n
        FROM deliveries
        WHERE alert_id = $1 AND last_error IS NOT NULL AND state IN ('failed', 'queued', 'sending')
        GROUP BY 1, 2, 3 ORDER BY n DESC, channel, state LIMIT $2
        """,
        alert_id,
        limit,
    )
    return [{**dict(r), "n": int(r["n"])} for r in rows]


async def delivery_history(conn: asyncpg.Connection, delivery_id: int) -> dict[str, Any] | None:
    """One delivery and every transition it went through (delivery_events), oldest first."""
    row = await conn.fetchrow(
        """
        SELECT d.id, d.alert_id, a.identifier AS alert_identifier, a.event AS alert_event, d.channel, d.address,
               d.language, d.state::text AS state, d.priority, d.attempts, d.remote_id, d.last_error,
               d.created_at, d.updated_at, d.not_before, d.lease_until
        FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.id = $1
        """,
        delivery_id,
    )
    if row is None:
        return None
    events = await conn.fetch(
        "SELECT at, state::text AS state, attempt, detail FROM delivery_events WHERE delivery_id = $1 ORDER BY id",
        delivery_id,
    )
    return {**dict(row), "events": [dict(e) for e in events]}


async def documents_summary(conn: asyncpg.Connection) -> dict[str, int]:
    """Fetched and pushed documents by outcome (parsed, unsupported, error, fetch_failed, pending)."""
    rows = await conn.fetch("SELECT outcome, count(*) AS n FROM documents GROUP BY 1")
    return {r["outcome"]: int(r["n"]) for r in rows}


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


def format_table(alerts: list[dict[str, Any]], documents: dict[str, int] | None = None) -> str:
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


async def channel_pauses(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every pause in force now, channel by channel, as plain data (JSON-ready).

    Each says why (``provider``: a 429; ``backoff``: after consecutive failures;
    ``operator``: a hold), until when (None: until resumed) and the reason, and
    for a hold who and since when; ``degraded`` marks more than routine flood control.
    """
    now: datetime = await conn.fetchval("SELECT now()")
    out: list[dict[str, Any]] = []
    for st in await outbox.channel_states(conn):
        if st.held(now):
            out.append(_pause(st, "operator", st.held_until, now, st.held_reason, by=st.held_by, since=st.held_since))
        if st.paused_until is not None and st.paused_until > now:
            out.append(_pause(st, "provider", st.paused_until, now, st.pause_reason))
        if st.backoff_until is not None and st.backoff_until > now:
            out.append(_pause(st, "backoff", st.backoff_until, now, st.last_error))
    return out


def _pause(
    st: outbox.ChannelState,
    why: str,
    until: datetime | None,
    now: datetime,
    reason: str | None,
    *,
    by: str | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    left = None if until is None else (until - now).total_seconds()
    return {
        "channel": st.channel,
        "why": why,
        "until": until.isoformat() if until is not None else None,
        "seconds_left": None if left is None else round(left),
        "reason": reason or "",
        "by": by,
        "since": since.isoformat() if since is not None else None,
        "failures": st.failures,
        "degraded": why != "provider" or left is None or left > LONG_PAUSE,
    }


def health(pauses: list[dict[str, Any]]) -> str:
    """``degraded`` when a channel is held, backing off or paused for longer than :data:`LONG_PAUSE`."""
    return "degraded" if any(p["degraded"] for p in pauses) else "ok"


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def describe_pause(p: dict[str, Any]) -> str:
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
        when = f"until {until:%Y-%m-%d %H:%M:%S} JST ({_duration(p['seconds_left'])} left)"
    return f"{p['channel']}: {who} {when}" + (f": {p['reason']}" if p["reason"] else "")


def format_pauses(pauses: list[dict[str, Any]]) -> str:
    """The channels' lines of ``dispatcher status``."""
    if not pauses:
        return "channels: none paused"
    lines = [f"channels: {health(pauses).upper()}"] + ["  " + describe_pause(p) for p in pauses]
    names = sorted({p["channel"] for p in pauses})
    lines.append("  resume with: " + "; ".join(f"dispatcher channel resume {n}" for n in names))
    return "\n".join(lines)
