"""Read models of the live dashboard and of an alert's timeline; the operators' retry of failed deliveries.

The live dashboard (:mod:`dispatcher.web.live`) reads :func:`progress_counts` once per
batch of ``delivery_progress`` notifications (see migration 0012) for the alerts they
name, whatever the number of browsers watching. :func:`timeline` gathers the moments
of one alert's life, from its source's issue time to the last delivery per channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

import asyncpg

from dispatcher.store.reports import STATES

# What a progress bar shows per alert and channel: every state, and how many of the
# queued ones wait for a retry after an error.
PROGRESS_KEYS: tuple[str, ...] = (*STATES, "retrying")

# alert id → channel → state (and "retrying") → deliveries
Progress = dict[int, dict[str, dict[str, int]]]


class AlertHead(TypedDict):
    """What a dashboard row says of an alert besides its counts (times as ISO 8601 text)."""

    id: int
    event: str
    headline: str
    source: str
    kind: str
    status: str
    state: str
    priority: int
    received_at: str


async def recent_alert_ids(conn: asyncpg.Connection, limit: int) -> list[int]:
    """The newest alerts' ids, newest first (the dashboard's rows)."""
    rows = await conn.fetch("SELECT id FROM alerts ORDER BY received_at DESC, id DESC LIMIT $1", limit)
    return [int(r["id"]) for r in rows]


async def busy_alert_ids(conn: asyncpg.Connection) -> list[int]:
    """Alerts with deliveries still queued (the queue ahead of any other alert), via the queue index."""
    rows = await conn.fetch(
        "SELECT DISTINCT alert_id FROM deliveries WHERE state = 'queued'"
        " UNION SELECT DISTINCT alert_id FROM deliveries WHERE state = 'sending'"
    )
    return [int(r["alert_id"]) for r in rows]


async def progress_counts(conn: asyncpg.Connection, alert_ids: Sequence[int]) -> Progress:
    """Per alert (of ``alert_ids``) and channel, deliveries by state; every state present."""
    rows = await conn.fetch(
        """
        SELECT alert_id, channel, state::text AS state, count(*) AS n,
               count(*) FILTER (WHERE state = 'queued' AND last_error IS NOT NULL) AS retrying
        FROM deliveries WHERE alert_id = ANY($1::bigint[]) GROUP BY 1, 2, 3
        """,
        list(alert_ids),
    )
    out: Progress = {int(a): {} for a in alert_ids}
    for r in rows:
        per = out[int(r["alert_id"])].setdefault(r["channel"], dict.fromkeys(PROGRESS_KEYS, 0))
        per[r["state"]] = int(r["n"])
        per["retrying"] += int(r["retrying"])
    return out


async def alert_heads(conn: asyncpg.Connection, alert_ids: Sequence[int]) -> dict[int, AlertHead]:
    """The dashboard's words for each alert of ``alert_ids`` that exists."""
    rows = await conn.fetch(
        "SELECT id, event, headline, source, kind, status::text AS status, state::text AS state, priority,"
        " received_at FROM alerts WHERE id = ANY($1::bigint[])",
        list(alert_ids),
    )
    return {
        int(r["id"]): {
            "id": int(r["id"]),
            "event": r["event"],
            "headline": r["headline"][:140],
            "source": r["source"],
            "kind": r["kind"],
            "status": r["status"],
            "state": r["state"],
            "priority": int(r["priority"]),
            "received_at": r["received_at"].isoformat(),
        }
        for r in rows
    }


class ChannelSpan(TypedDict):
    """One channel's deliveries of an alert: when the first and the last were delivered."""

    channel: str
    delivered: int
    total: int
    first: datetime | None
    last: datetime | None


class TimelineData(TypedDict):
    """The moments of an alert, from the source's issue time to the last delivery per channel."""

    id: int
    identifier: str
    event: str
    source: str
    status: str
    issued: datetime
    approved: datetime | None
    received: datetime
    # Whether ``received`` is a document's arrival (a JMA telegram, a pushed broadcast), else the storage.
    from_document: bool
    stored: datetime
    channels: list[ChannelSpan]


async def timeline(conn: asyncpg.Connection, alert_id: int) -> TimelineData | None:
    """An alert's moments: issued (``sent``: JMA's ReportDateTime, the broadcast's air time, the
    console's approval), the console's approval where it came from there, received (the
    document's arrival for a fetched or pushed document, else the storage), stored, and per
    channel the first and last delivery (their deliveries' last update)."""
    row = await conn.fetchrow(
        """
        SELECT a.id, a.identifier, a.event, a.source, a.status::text AS status, a.sent, a.received_at,
               d.received_at AS document_at,
               (SELECT m.decided_at FROM console_messages m WHERE m.alert_id = a.id OR m.cancel_alert_id = a.id
                ORDER BY m.decided_at LIMIT 1) AS approved
        FROM alerts a LEFT JOIN documents d ON d.id = a.document_id WHERE a.id = $1
        """,
        alert_id,
    )
    if row is None:
        return None
    spans = await conn.fetch(
        """
        SELECT channel, count(*) FILTER (WHERE state = 'delivered') AS delivered, count(*) AS total,
               min(updated_at) FILTER (WHERE state = 'delivered') AS first,
               max(updated_at) FILTER (WHERE state = 'delivered') AS last
        FROM deliveries WHERE alert_id = $1 GROUP BY channel ORDER BY channel
        """,
        alert_id,
    )
    received = row["document_at"] if row["document_at"] is not None else row["received_at"]
    return {
        "id": int(row["id"]),
        "identifier": row["identifier"],
        "event": row["event"],
        "source": row["source"],
        "status": row["status"],
        "issued": row["sent"],
        "approved": row["approved"],
        "received": min(received, row["received_at"]),
        "from_document": row["document_at"] is not None,
        "stored": row["received_at"],
        "channels": [
            {
                "channel": s["channel"],
                "delivered": int(s["delivered"]),
                "total": int(s["total"]),
                "first": s["first"],
                "last": s["last"],
            }
            for s in spans
        ],
    }


async def retry_failed(
    conn: asyncpg.Connection, *, alert_id: int, delivery_id: int | None = None, channel: str | None = None
) -> list[int]:
    """Put an alert's failed deliveries (one, or one channel's, or all) back in the queue, due now.

    Only ``failed`` ones: a delivered, superseded or expired delivery stays as it is. The
    update trigger logs each transition and wakes the channel's workers; the attempts
    spent so far stay counted. Returns the ids requeued.
    """
    rows = await conn.fetch(
        """
        UPDATE deliveries SET state = 'queued', not_before = now(), lease_until = NULL, updated_at = now(),
               last_error = 'retry asked by an operator (was: ' || COALESCE(last_error, '?') || ')'
        WHERE alert_id = $1 AND state = 'failed'
          AND ($2::bigint IS NULL OR id = $2) AND ($3::text IS NULL OR channel = $3)
        RETURNING id
        """,
        alert_id,
        delivery_id,
        channel,
    )
    return sorted(int(r["id"]) for r in rows)


def json_ready(value: Any) -> Any:
    """Datetimes as ISO 8601 text, recursively (for the JSON answers)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
