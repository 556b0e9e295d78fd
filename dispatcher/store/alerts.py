"""Alert and document persistence: dedup by identifier, series resolution, public ids.

"Have we seen this?" is answered by unique constraints, never by memory:
``documents (source, url)`` for fetched and pushed documents and ``alerts
(sender, identifier)`` for alerts. An alert's public page is addressed by a
``public_id`` minted here, never by a string its sender chose.
"""

from __future__ import annotations

import json
import secrets
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg

from dispatcher.model import Alert, Area, Certainty, Document, MsgType, Priority, Severity, Status, Urgency

JST = timezone(timedelta(hours=9))
# Public ids are read aloud and typed from paper: no l/1, o/0.
_PUBLIC_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def mint_public_id(now: datetime | None = None) -> str:
    """A new public id: the day in JST and 40 random bits, e.g. ``20261204-k3x9q2mt``."""
    day = (now or datetime.now(UTC)).astimezone(JST).strftime("%Y%m%d")
    return day + "-" + "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(8))


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


async def failed_fetches(conn: asyncpg.Connection, source: str, urls: list[str]) -> dict[str, int]:
    """Those of ``urls`` whose last fetch failed, with the attempts spent on them."""
    rows = await conn.fetch(
        "SELECT url, attempts FROM documents WHERE source = $1 AND url = ANY($2::text[]) AND outcome = 'fetch_failed'",
        source,
        urls,
    )
    return {r["url"]: int(r["attempts"]) for r in rows}


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


async def take_document(conn: asyncpg.Connection, doc: Document) -> int | None:
    """The documents row ``doc`` is recorded in: its claimed id, or a claim made now.

    A pushed document is claimed inside the transaction that stores its alert, so a
    failure anywhere releases the claim with everything else. A row left by an
    earlier attempt that stored no alert (its outcome is not ``parsed``) is taken
    over; a ``parsed`` one means the document was already received: None.
    """
    if doc.id is not None:
        return doc.id
    row = await conn.fetchrow(
        "INSERT INTO documents (source, url) VALUES ($1, $2)"
        " ON CONFLICT (source, url) DO UPDATE SET received_at = now(), outcome = 'pending', error = NULL"
        " WHERE documents.outcome <> 'parsed'"
        " RETURNING id",
        doc.source,
        doc.url,
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
    conn: asyncpg.Connection,
    alert: Alert,
    *,
    target_codes: list[str],
    document_id: int | None,
    state: str = "active",
    public_id: str | None = None,
    issuance: str | None = None,
) -> int | None:
    """Insert ``alert`` with ``public_id`` (minted when not given); None when (sender, identifier) is stored."""
    row = await conn.fetchrow(
        """
        INSERT INTO alerts (identifier, sender, source, kind, sent, status, msg_type, refs, event,
            severity, urgency, certainty, priority, headline, description, instruction, areas,
            area_codes, target_codes, expires, series_key, details, document_id, state, public_id, issuance)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb,
            $18, $19, $20, $21, $22::jsonb, $23, $24, $25, $26)
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
        public_id or mint_public_id(),
        issuance,
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


async def replacement_candidates(conn: asyncpg.Connection, alert: Alert, alert_id: int) -> list[asyncpg.Record]:
    """Current alerts that ``alert`` names (``references``) or that are older in its series.

    Who may replace whom is the pipeline's decision (same source, sender and status);
    this returns every candidate with what that decision needs, so that refusals can
    be reported.
    """
    return list(
        await conn.fetch(
            """
            SELECT id, identifier, series_key, source, sender, status::text AS status FROM alerts
            WHERE id <> $1 AND state IN ('active', 'held')
              AND ((series_key IS NOT NULL AND series_key = $2 AND sent <= $3)
                   OR identifier = ANY($4::text[])
                   OR (series_key IS NOT NULL AND series_key = ANY($4::text[])))
            ORDER BY id
            """,
            alert_id,
            alert.series_key,
            alert.sent,
            list(alert.references),
        )
    )


async def add_details(conn: asyncpg.Connection, alert_id: int, details: dict[str, Any]) -> None:
    """Merge ``details`` into an alert's details; a ``problems`` list is appended to, not replaced."""
    extra = dict(details)
    problems = list(extra.pop("problems", ()))
    await conn.execute(
        "UPDATE alerts SET details = details || $2::jsonb || CASE WHEN jsonb_array_length($3::jsonb) = 0"
        " THEN '{}'::jsonb ELSE jsonb_build_object('problems', COALESCE(details->'problems', '[]'::jsonb)"
        " || $3::jsonb) END WHERE id = $1",
        alert_id,
        json.loads(json.dumps(extra, ensure_ascii=False, default=str)),
        problems,
    )


async def issuance_siblings(conn: asyncpg.Connection, issuance: str, alert_id: int) -> list[int]:
    """The other alerts of ``issuance`` already stored (dispatcher/folding.py)."""
    rows = await conn.fetch("SELECT id FROM alerts WHERE issuance = $1 AND id <> $2 ORDER BY id", issuance, alert_id)
    return [int(r["id"]) for r in rows]


async def mark_state(conn: asyncpg.Connection, alert_id: int, state: str) -> None:
    await conn.execute("UPDATE alerts SET state = $2::alert_state WHERE id = $1", alert_id, state)


async def replaced_by(conn: asyncpg.Connection, alert_id: int) -> list[int]:
    """Ids of the alerts ``alert_id`` replaced."""
    return [int(r["id"]) for r in await conn.fetch("SELECT id FROM alerts WHERE replaced_by = $1", alert_id)]


async def lock_alert(conn: asyncpg.Connection, alert_id: int) -> asyncpg.Record | None:
    """The alert row, locked for the rest of the transaction."""
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
    return row


async def public_alert(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """The alert whose public page is ``key``: its public id, or a link sent before public ids existed."""
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM alerts WHERE public_id = $1", key)
    if row is None:
        row = await conn.fetchrow(
            "SELECT a.* FROM alert_links l JOIN alerts a ON a.id = l.alert_id WHERE l.identifier = $1", key
        )
    return row


async def document_alert(conn: asyncpg.Connection, doc_id: int) -> asyncpg.Record | None:
    """What became of a document: its alert (id, public id, state, deliveries so far) or its error."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT a.id, a.public_id, a.state::text AS state, d.error,"
        " (SELECT count(*) FROM deliveries WHERE alert_id = a.id) AS deliveries"
        " FROM documents d LEFT JOIN alerts a ON a.document_id = d.id WHERE d.id = $1",
        doc_id,
    )
    return row


async def alert_by_id(conn: asyncpg.Connection, alert_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)
    return row


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
        public_id=row["public_id"],
    )
