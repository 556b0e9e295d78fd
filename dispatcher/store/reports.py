"""Read models for operators: recent alerts with per-channel delivery counts, deliveries, paused channels.

The queries behind ``dispatcher status``, the dashboard, the deliveries pages,
``/healthz`` and the JSON API. Each answers plain data, JSON-ready where it goes
out as JSON as it is (:func:`recent_alerts`, :func:`channel_pauses`); the text
for people is :mod:`dispatcher.status`'s and the pages' templates'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypedDict, cast

import asyncpg

from dispatcher.model import DeliveryState
from dispatcher.store import outbox

STATES: tuple[str, ...] = tuple(state.value for state in DeliveryState)
# Filters an operator can put on an alert's deliveries; "pending" is queued or sending.
FILTERS: dict[str, tuple[str, ...]] = {**{st: (st,) for st in STATES}, "pending": ("queued", "sending")}
# A provider's pause longer than this is no routine flood control: the worker logs a
# warning and /healthz says "degraded". A backoff or an operator's hold always does.
LONG_PAUSE = 60.0

# Per channel, deliveries by state (every state present).
Counts = dict[str, dict[str, int]]


class AlertSummary(TypedDict):
    """One row of the dashboard and of ``dispatcher status`` (times as ISO 8601 text)."""

    id: int
    identifier: str
    public_id: str
    source: str
    kind: str
    event: str
    headline: str
    status: str
    msg_type: str
    state: str
    priority: int
    severity: str
    sent: str
    received_at: str
    area_codes: list[str]
    deliveries: Counts


class DeliveryRow(TypedDict):
    """One delivery on an alert's deliveries page."""

    id: int
    channel: str
    address: str
    language: str
    state: str
    attempts: int
    remote_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    not_before: datetime


class DeliveryEvent(TypedDict):
    """One transition of a delivery (``delivery_events``)."""

    at: datetime
    state: str
    attempt: int
    detail: str | None


class DeliveryHistory(DeliveryRow):
    """One delivery, its alert's name and every transition it went through, oldest first."""

    alert_id: int
    alert_identifier: str
    alert_event: str
    priority: int
    lease_until: datetime | None
    events: list[DeliveryEvent]


class FailureReason(TypedDict):
    """How many of an alert's deliveries on one channel, in one state, share one reason."""

    channel: str
    state: str
    reason: str
    n: int


class Pause(TypedDict):
    """One pause in force on a channel (JSON-ready): why, until when, what was said."""

    channel: str
    why: Literal["operator", "provider", "backoff"]
    until: str | None
    seconds_left: int | None
    reason: str
    by: str | None
    since: str | None
    failures: int
    degraded: bool


async def recent_alerts(conn: asyncpg.Connection, limit: int = 20) -> list[AlertSummary]:
    """The newest alerts, each with its deliveries counted per channel and state."""
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
    out: list[AlertSummary] = []
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


async def totals(conn: asyncpg.Connection) -> Counts:
    """Per channel, deliveries of alerts by state (whole database; bots' replies, 0010, are not counted)."""
    rows = await conn.fetch(
        "SELECT channel, state::text AS state, count(*) AS n FROM deliveries WHERE alert_id IS NOT NULL GROUP BY 1, 2"
    )
    return _by_channel(rows)


def _by_channel(rows: list[asyncpg.Record]) -> Counts:
    """(channel, state, n) rows as {channel: {state: n}}, every state present."""
    out: Counts = {}
    for r in rows:
        out.setdefault(r["channel"], dict.fromkeys(STATES, 0))[r["state"]] = int(r["n"])
    return out


async def alert_deliveries(
    conn: asyncpg.Connection,
    alert_id: int,
    *,
    state: str | None = None,
    channel: str | None = None,
    recipient: str | None = None,
    after: int = 0,
    limit: int = 200,
) -> list[DeliveryRow]:
    """One page of an alert's deliveries, by id, optionally of one state (see FILTERS), channel and
    recipient (the address exactly, through the (alert, channel, address) index)."""
    states = list(FILTERS[state]) if state else None
    rows = await conn.fetch(
        """
        SELECT id, channel, address, language, state::text AS state, attempts, remote_id, last_error,
               created_at, updated_at, not_before
        FROM deliveries
        WHERE alert_id = $1 AND id > $2
          AND ($3::text[] IS NULL OR state::text = ANY($3)) AND ($4::text IS NULL OR channel = $4)
          AND ($6::text IS NULL OR address = $6)
        ORDER BY id LIMIT $5
        """,
        alert_id,
        after,
        states,
        channel,
        limit,
        recipient,
    )
    return [cast(DeliveryRow, dict(r)) for r in rows]


async def delivery_counts(conn: asyncpg.Connection, alert_id: int) -> Counts:
    """Per channel, an alert's deliveries by state."""
    rows = await conn.fetch(
        "SELECT channel, state::text AS state, count(*) AS n FROM deliveries WHERE alert_id = $1 GROUP BY 1, 2",
        alert_id,
    )
    return _by_channel(rows)


async def failure_reasons(conn: asyncpg.Connection, alert_id: int, limit: int = 20) -> list[FailureReason]:
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
    return [{"channel": r["channel"], "state": r["state"], "reason": r["reason"], "n": int(r["n"])} for r in rows]


async def delivery_history(conn: asyncpg.Connection, delivery_id: int) -> DeliveryHistory | None:
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
    return cast(DeliveryHistory, {**dict(row), "events": [dict(e) for e in events]})


async def documents_summary(conn: asyncpg.Connection) -> dict[str, int]:
    """Fetched and pushed documents by outcome (parsed, unsupported, error, fetch_failed, pending)."""
    rows = await conn.fetch("SELECT outcome, count(*) AS n FROM documents GROUP BY 1")
    return {r["outcome"]: int(r["n"]) for r in rows}


async def channel_pauses(conn: asyncpg.Connection) -> list[Pause]:
    """Every pause in force now, channel by channel.

    Each says why (``provider``: a 429; ``backoff``: after consecutive failures;
    ``operator``: a hold), until when (None: until resumed) and the reason, and
    for a hold who and since when; ``degraded`` marks more than routine flood control.
    """
    now: datetime = await conn.fetchval("SELECT now()")
    out: list[Pause] = []
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
    why: Literal["operator", "provider", "backoff"],
    until: datetime | None,
    now: datetime,
    reason: str | None,
    *,
    by: str | None = None,
    since: datetime | None = None,
) -> Pause:
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


def health(pauses: list[Pause]) -> Literal["ok", "degraded"]:
    """``degraded`` when a channel is held, backing off or paused for longer than :data:`LONG_PAUSE`."""
    return "degraded" if any(p["degraded"] for p in pauses) else "ok"
