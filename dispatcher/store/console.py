"""The messages staff compose and the held alerts they approve (migration 0009).

Named queries only; the state machine and the two-person rule are
:mod:`dispatcher.console.workflow`'s (the database checks the rule again: the
``console_messages_four_eyes`` constraint). Every state change locks the row first
(:func:`lock_message`), so two approvers clicking at once decide once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

EDITABLE = ("draft", "returned")

_SELECT = """
SELECT m.id, m.exercise, m.kind, m.state::text AS state, m.areas, m.texts, m.expires, m.replaces,
       m.created_by, m.created_at, m.updated_at, m.contributors, m.submitted_by, m.submitted_at,
       m.decided_by, m.decided_at, m.reason, m.alert_id, m.cancel_alert_id, m.cancelled_by,
       c.username AS created_by_name, s.username AS submitted_by_name, d.username AS decided_by_name,
       x.username AS cancelled_by_name, a.public_id, a.identifier AS alert_identifier,
       (SELECT count(*) FROM deliveries WHERE alert_id = m.alert_id) AS deliveries
FROM console_messages m
JOIN staff c ON c.id = m.created_by
LEFT JOIN staff s ON s.id = m.submitted_by
LEFT JOIN staff d ON d.id = m.decided_by
LEFT JOIN staff x ON x.id = m.cancelled_by
LEFT JOIN alerts a ON a.id = m.alert_id
"""


def _texts(texts: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(dict(texts), ensure_ascii=False))


async def insert_message(
    conn: asyncpg.Connection,
    *,
    exercise: bool,
    kind: str,
    areas: Sequence[str],
    texts: Mapping[str, Any],
    expires: datetime,
    staff_id: int,
    replaces: int | None = None,
) -> int:
    value = await conn.fetchval(
        "INSERT INTO console_messages (exercise, kind, areas, texts, expires, replaces, created_by, contributors)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, ARRAY[$7]::bigint[]) RETURNING id",
        exercise,
        kind,
        list(areas),
        _texts(texts),
        expires,
        replaces,
        staff_id,
    )
    return int(value)


async def update_message(
    conn: asyncpg.Connection,
    message_id: int,
    *,
    kind: str,
    areas: Sequence[str],
    texts: Mapping[str, Any],
    expires: datetime,
    staff_id: int,
) -> None:
    """Edit a message (the caller checked it is editable); the editor joins its contributors."""
    await conn.execute(
        "UPDATE console_messages SET kind = $2, areas = $3, texts = $4::jsonb, expires = $5, updated_at = now(),"
        " state = 'draft', contributors = CASE WHEN $6 = ANY(contributors) THEN contributors"
        " ELSE contributors || $6::bigint END WHERE id = $1",
        message_id,
        kind,
        list(areas),
        _texts(texts),
        expires,
        staff_id,
    )


async def lock_message(conn: asyncpg.Connection, message_id: int) -> asyncpg.Record | None:
    """The message row, locked until the end of the transaction."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, exercise, kind, state::text AS state, areas, texts, expires, replaces, created_by,"
        " contributors, submitted_by, decided_by, alert_id, cancel_alert_id, reason"
        " FROM console_messages WHERE id = $1 FOR UPDATE",
        message_id,
    )
    return row


async def submit(conn: asyncpg.Connection, message_id: int, staff_id: int) -> None:
    await conn.execute(
        "UPDATE console_messages SET state = 'submitted', submitted_by = $2, submitted_at = now(), reason = '',"
        " decided_by = NULL, decided_at = NULL, updated_at = now(),"
        " contributors = CASE WHEN $2 = ANY(contributors) THEN contributors ELSE contributors || $2::bigint END"
        " WHERE id = $1",
        message_id,
        staff_id,
    )


async def decide(conn: asyncpg.Connection, message_id: int, state: str, staff_id: int, reason: str = "") -> None:
    """Approve (``approved``), reject or return a submitted message."""
    await conn.execute(
        "UPDATE console_messages SET state = $2::console_state, decided_by = $3, decided_at = now(), reason = $4,"
        " updated_at = now() WHERE id = $1",
        message_id,
        state,
        staff_id,
        reason,
    )


async def mark_sent(conn: asyncpg.Connection, message_id: int, alert_id: int) -> None:
    await conn.execute(
        "UPDATE console_messages SET state = 'sent', alert_id = $2, reason = '', updated_at = now() WHERE id = $1",
        message_id,
        alert_id,
    )


async def send_failed(conn: asyncpg.Connection, message_id: int, reason: str) -> None:
    """Sending an approved message failed: back to the queue, with why."""
    await conn.execute(
        "UPDATE console_messages SET state = 'submitted', decided_by = NULL, decided_at = NULL, reason = $2,"
        " updated_at = now() WHERE id = $1",
        message_id,
        reason,
    )


async def mark_cancelled(conn: asyncpg.Connection, message_id: int, cancel_alert_id: int, staff_id: int) -> None:
    await conn.execute(
        "UPDATE console_messages SET state = 'cancelled', cancel_alert_id = $2, cancelled_by = $3,"
        " updated_at = now() WHERE id = $1",
        message_id,
        cancel_alert_id,
        staff_id,
    )


async def mark_superseded(conn: asyncpg.Connection, message_id: int) -> None:
    await conn.execute(
        "UPDATE console_messages SET state = 'superseded', updated_at = now() WHERE id = $1 AND state = 'sent'",
        message_id,
    )


async def message(conn: asyncpg.Connection, message_id: int) -> asyncpg.Record | None:
    """One message with the names of who wrote, submitted, decided and cancelled it."""
    row: asyncpg.Record | None = await conn.fetchrow(_SELECT + " WHERE m.id = $1", message_id)
    return row


async def messages(
    conn: asyncpg.Connection, *, exercise: bool, states: Sequence[str] | None = None, limit: int = 50
) -> list[asyncpg.Record]:
    """Messages of one mode (live or exercise), newest first, optionally in ``states`` only."""
    return list(
        await conn.fetch(
            _SELECT + " WHERE m.exercise = $1 AND ($2::text[] IS NULL OR m.state::text = ANY($2::text[]))"
            " ORDER BY m.id DESC LIMIT $3",
            exercise,
            list(states) if states is not None else None,
            limit,
        )
    )


async def held_alerts(conn: asyncpg.Connection, *, exercise: bool, limit: int = 50) -> list[asyncpg.Record]:
    """Alerts held for approval (held broadcasts), of one mode: exercise ones in exercise mode only."""
    return list(
        await conn.fetch(
            "SELECT id, identifier, sender, source, sent, status::text AS status, msg_type::text AS msg_type, event,"
            " headline, description, areas, details, received_at, public_id FROM alerts"
            " WHERE state = 'held' AND (status = 'actual') <> $1 ORDER BY priority, id LIMIT $2",
            exercise,
            limit,
        )
    )


async def held_alert(conn: asyncpg.Connection, alert_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, identifier, sender, source, sent, status::text AS status, msg_type::text AS msg_type, event,"
        " headline, description, areas, area_codes, details, received_at, public_id, state::text AS state"
        " FROM alerts WHERE id = $1",
        alert_id,
    )
    return row


async def correct_held(
    conn: asyncpg.Connection,
    alert_id: int,
    *,
    areas: list[dict[str, Any]],
    area_codes: list[str],
    target_codes: list[str],
    headline: str,
    details: Mapping[str, Any],
) -> bool:
    """Where a held alert goes, as an approver corrected it; False when it is no longer held."""
    status = await conn.execute(
        "UPDATE alerts SET areas = $2::jsonb, area_codes = $3, target_codes = $4, headline = $5,"
        " details = details || $6::jsonb WHERE id = $1 AND state = 'held'",
        alert_id,
        json.loads(json.dumps(areas, ensure_ascii=False)),
        area_codes,
        target_codes,
        headline,
        json.loads(json.dumps(dict(details), ensure_ascii=False, default=str)),
    )
    return str(status).endswith(" 1")


async def alert_state(conn: asyncpg.Connection, alert_id: int) -> str | None:
    value = await conn.fetchval("SELECT state::text FROM alerts WHERE id = $1", alert_id)
    return None if value is None else str(value)
