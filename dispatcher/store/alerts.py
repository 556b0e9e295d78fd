"""Alerts in PostgreSQL: dedup by identifier, series resolution, replacement, public ids.

"Have we seen this?" is answered by the unique constraint ``alerts (sender,
identifier)``, never by memory (documents have theirs: :mod:`dispatcher.store.documents`).
An alert's public page is addressed by a ``public_id`` minted here, never by a
string its sender chose.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatcher.model import JST, Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency

# Public ids are read aloud and typed from paper: no l/1, o/0.
_PUBLIC_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def mint_public_id(now: datetime | None = None) -> str:
    """A new public id: the day in JST and 40 random bits, e.g. ``20261204-k3x9q2mt``."""
    day = (now or datetime.now(UTC)).astimezone(JST).strftime("%Y%m%d")
    return day + "-" + "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(8))


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
    """The alert whose public page is ``key``: its public id, or an identifier ``alert_links`` keeps working."""
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM alerts WHERE public_id = $1", key)
    if row is None:
        row = await conn.fetchrow(
            "SELECT a.* FROM alert_links l JOIN alerts a ON a.id = l.alert_id WHERE l.identifier = $1", key
        )
    return row


async def alerts_by_ids(conn: asyncpg.Connection, ids: Collection[int]) -> dict[int, Alert]:
    """The alerts ``ids`` as model objects, by id (those that exist)."""
    rows = await conn.fetch("SELECT * FROM alerts WHERE id = ANY($1::bigint[])", list(ids))
    return {int(row["id"]): row_to_alert(row) for row in rows}


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
