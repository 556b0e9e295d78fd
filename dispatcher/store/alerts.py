"""Alert and document persistence: dedup by identifier, series resolution.

"Have we seen this?" is answered by unique constraints, never by memory:
``documents (source, url)`` for fetched files and ``alerts (sender, identifier)``
for alerts.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from typing import Any

import asyncpg

from dispatcher.model import Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency


def compress(data: bytes) -> bytes:
    return zlib.compress(data, 6)


def decompress(data: bytes) -> bytes:
    return zlib.decompress(data)


async def claim_document(conn: asyncpg.Connection, source: str, url: str) -> int | None:
    """Record that ``url`` is about to be fetched; None if it already was (or is being)."""
    row = await conn.fetchrow(
        "INSERT INTO documents (source, url) VALUES ($1, $2) ON CONFLICT (source, url) DO NOTHING RETURNING id",
        source,
        url,
    )
    return None if row is None else int(row["id"])


async def known_documents(conn: asyncpg.Connection, source: str, urls: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT url FROM documents WHERE source = $1 AND url = ANY($2::text[]) AND outcome <> 'fetch_failed'",
        source,
        urls,
    )
    return {r["url"] for r in rows}


async def reclaim_failed_document(conn: asyncpg.Connection, source: str, url: str, max_attempts: int) -> int | None:
    """A document whose fetch failed may be tried again, a bounded number of times.

    So may one left ``pending`` for over five minutes: its claimer died between
    claiming and recording it (the fetch itself has a timeout far below that).
    """
    row = await conn.fetchrow(
        "UPDATE documents SET outcome = 'pending', received_at = now(),"
        " attempts = attempts + CASE WHEN outcome = 'pending' THEN 1 ELSE 0 END"
        " WHERE source = $1 AND url = $2 AND attempts < $3"
        " AND (outcome = 'fetch_failed' OR (outcome = 'pending' AND received_at < now() - interval '5 minutes'))"
        " RETURNING id",
        source,
        url,
        max_attempts,
    )
    return None if row is None else int(row["id"])


async def record_document(
    conn: asyncpg.Connection,
    doc_id: int,
    *,
    outcome: str,
    content: bytes | None = None,
    kind: str | None = None,
    title: str | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE documents SET outcome = $2, content = COALESCE($3, content), size = COALESCE($4, size),"
        " kind = COALESCE($5, kind), title = COALESCE($6, title), error = $7,"
        " attempts = attempts + CASE WHEN $2 = 'fetch_failed' THEN 1 ELSE 0 END WHERE id = $1",
        doc_id,
        outcome,
        compress(content) if content is not None else None,
        len(content) if content is not None else None,
        kind,
        title,
        error,
    )


def _areas_json(alert: Alert) -> list[dict[str, Any]]:
    return [
        {
            "description": a.description,
            "codes": list(a.codes),
            "polygons": [[list(p) for p in ring] for ring in a.polygons],
            "circles": [list(c) for c in a.circles],
            "details": {str(k): str(v) for k, v in a.details.items()},
        }
        for a in alert.areas
    ]


async def insert_alert(
    conn: asyncpg.Connection, alert: Alert, *, target_codes: list[str], document_id: int | None, state: str = "active"
) -> int | None:
    """Insert ``alert``; None when (sender, identifier) is already stored."""
    row = await conn.fetchrow(
        """
        INSERT INTO alerts (identifier, sender, source, kind, sent, status, msg_type, refs, event,
            severity, urgency, certainty, priority, headline, description, instruction, areas,
            area_codes, target_codes, expires, series_key, details, document_id, state)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb,
            $18, $19, $20, $21, $22::jsonb, $23, $24)
        ON CONFLICT (sender, identifier) DO NOTHING
        RETURNING id
        """,
        alert.identifier,
        alert.sender,
        alert.source,
        alert.kind,
        alert.sent,
        alert.status.value,
        alert.msg_type.value,
        list(alert.references),
        alert.event,
        alert.severity.value,
        alert.urgency.value,
        alert.certainty.value,
        int(alert.priority),
        alert.headline,
        alert.description,
        alert.instruction,
        _areas_json(alert),
        list(alert.area_codes),
        target_codes,
        alert.expires,
        alert.series_key,
        json.loads(json.dumps(dict(alert.details), ensure_ascii=False, default=str)),
        document_id,
        state,
    )
    return None if row is None else int(row["id"])


async def newer_in_series(conn: asyncpg.Connection, series_key: str, sent: datetime, alert_id: int) -> bool:
    """Whether the series already holds a newer alert (then this one is stale)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE series_key = $1 AND sent > $2 AND id <> $3)",
            series_key,
            sent,
            alert_id,
        )
    )


async def replaced_alerts(conn: asyncpg.Connection, alert: Alert, alert_id: int) -> list[int]:
    """Ids of the alerts ``alert`` replaces: named by ``references`` or older in its series."""
    rows = await conn.fetch(
        """
        SELECT id FROM alerts
        WHERE id <> $1 AND state IN ('active', 'held')
          AND ((series_key IS NOT NULL AND series_key = $2 AND sent <= $3)
               OR identifier = ANY($4::text[])
               OR (series_key IS NOT NULL AND series_key = ANY($4::text[])))
        """,
        alert_id,
        alert.series_key,
        alert.sent,
        list(alert.references),
    )
    return [int(r["id"]) for r in rows]


async def mark_replaced(conn: asyncpg.Connection, old_ids: list[int], new_id: int, cancelled: bool) -> None:
    await conn.execute(
        "UPDATE alerts SET state = $3::alert_state, replaced_by = $2 WHERE id = ANY($1::bigint[])",
        old_ids,
        new_id,
        "cancelled" if cancelled else "superseded",
    )


def row_to_alert(row: asyncpg.Record) -> Alert:
    """Rebuild the model object from an ``alerts`` row (without the original)."""
    areas = tuple(
        Area(
            description=a.get("description", ""),
            codes=tuple(a.get("codes", ())),
            polygons=tuple(tuple((float(p[0]), float(p[1])) for p in ring) for ring in a.get("polygons", ())),
            circles=tuple((float(c[0]), float(c[1]), float(c[2])) for c in a.get("circles", ())),
            details=dict(a.get("details") or {}),
        )
        for a in row["areas"]
    )
    details: dict[str, Any] = dict(row["details"] or {})
    return Alert(
        identifier=row["identifier"],
        sender=row["sender"],
        sent=row["sent"],
        status=Status(row["status"]),
        msg_type=MsgType(row["msg_type"]),
        event=row["event"],
        severity=Severity(row["severity"]),
        urgency=Urgency(row["urgency"]),
        certainty=Certainty(row["certainty"]),
        headline=row["headline"],
        source=row["source"],
        priority=Priority(row["priority"]),
        references=tuple(row["refs"]),
        description=row["description"],
        instruction=row["instruction"],
        areas=areas,
        expires=row["expires"],
        series_key=row["series_key"],
        kind=row["kind"],
        details=details,
    )
