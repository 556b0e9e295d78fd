"""What the public site, its feeds and the open data read: issued alerts only, never held or fenced ones.

Public lists (current alerts, feeds, archive, open data) hold ``actual`` alerts only:
exercise and test traffic never reaches the public. An exercise's own page (its link
reaches test recipients) is read by :func:`alert_by_public_id`, marked 訓練 by the page.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

import asyncpg

_PUBLIC = "status = 'actual' AND state <> 'held'"


async def current(conn: asyncpg.Connection, hours: float, limit: int = 200) -> list[asyncpg.Record]:
    """Alerts in force now: not replaced, not cancelled, not expired (no expiry: received within ``hours``)."""
    return list(
        await conn.fetch(
            f"""
            SELECT * FROM alerts
            WHERE {_PUBLIC} AND state = 'active' AND msg_type <> 'cancel'
              AND (expires > now() OR (expires IS NULL AND received_at > now() - make_interval(secs => $1)))
            ORDER BY priority, sent DESC LIMIT $2
            """,  # noqa: S608 (a constant)
            hours * 3600,
            limit,
        )
    )


async def broadcasts(conn: asyncpg.Connection, hours: float, limit: int = 100) -> list[asyncpg.Record]:
    """What the municipal broadcast system aired within ``hours``, newest first, whatever became of
    it since (replaced, cancelled, expired): the site's re-listen list, like the cities' phone lines."""
    return list(
        await conn.fetch(
            f"""
            SELECT * FROM alerts
            WHERE {_PUBLIC} AND source = 'broadcast' AND received_at > now() - make_interval(secs => $1)
            ORDER BY received_at DESC, id DESC LIMIT $2
            """,  # noqa: S608 (a constant)
            hours * 3600,
            limit,
        )
    )


async def recent(conn: asyncpg.Connection, limit: int, code: str | None = None) -> list[asyncpg.Record]:
    """The newest issued public alerts (updates and cancels included), for the feeds; ``code``: those reaching it."""
    return list(
        await conn.fetch(
            f"""
            SELECT * FROM alerts WHERE {_PUBLIC} AND ($2::text IS NULL OR $2 = ANY(target_codes))
            ORDER BY received_at DESC, id DESC LIMIT $1
            """,  # noqa: S608 (a constant)
            limit,
            code,
        )
    )


async def alert_by_public_id(conn: asyncpg.Connection, public_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM alerts WHERE public_id = $1 AND state <> 'held'", public_id
    )
    return row


async def by_ids(conn: asyncpg.Connection, ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM alerts WHERE id = ANY($1::bigint[]) AND state <> 'held'", list(ids)))


async def chain(conn: asyncpg.Connection, alert_id: int) -> list[asyncpg.Record]:
    """Every alert of the update/cancel chain ``alert_id`` belongs to, oldest first."""
    return list(
        await conn.fetch(
            """
            WITH RECURSIVE back(id, n) AS (
                SELECT id, 0 FROM alerts WHERE id = $1
                UNION SELECT a.id, b.n + 1 FROM alerts a JOIN back b ON a.replaced_by = b.id WHERE b.n < 50
            ), fwd(id, next, n) AS (
                SELECT id, replaced_by, 0 FROM alerts WHERE id = $1
                UNION SELECT a.id, a.replaced_by, f.n + 1 FROM alerts a JOIN fwd f ON a.id = f.next WHERE f.n < 50
            )
            SELECT * FROM alerts WHERE id IN (SELECT id FROM back UNION SELECT id FROM fwd) AND state <> 'held'
            ORDER BY received_at, id
            """,
            alert_id,
        )
    )


async def archive(
    conn: asyncpg.Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    event: str | None,
    limit: int = 100,
    offset: int = 0,
) -> list[asyncpg.Record]:
    """Issued public alerts by time (``sent``) and type (a part of the event's name), newest first."""
    return list(
        await conn.fetch(
            f"""
            SELECT * FROM alerts
            WHERE {_PUBLIC} AND ($1::timestamptz IS NULL OR sent >= $1) AND ($2::timestamptz IS NULL OR sent < $2)
              AND ($3::text IS NULL OR strpos(event, $3) > 0)
            ORDER BY sent DESC, id DESC LIMIT $4 OFFSET $5
            """,  # noqa: S608 (a constant)
            since,
            until,
            event,
            limit,
            offset,
        )
    )


async def event_names(conn: asyncpg.Connection) -> list[str]:
    """The types of alert the archive holds, for its search form."""
    rows = await conn.fetch(f"SELECT DISTINCT event FROM alerts WHERE {_PUBLIC} ORDER BY event LIMIT 200")  # noqa: S608
    return [str(r["event"]) for r in rows]


async def every_public(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The whole public archive, oldest first: the open data."""
    return list(await conn.fetch(f"SELECT * FROM alerts WHERE {_PUBLIC} ORDER BY received_at, id"))  # noqa: S608


async def site_key(conn: asyncpg.Connection, name: str) -> bytes:
    """The key ``name``, minted once for every daemon of this database."""
    await conn.execute(
        "INSERT INTO site_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name,
        secrets.token_bytes(32),
    )
    return bytes(await conn.fetchval("SELECT secret FROM site_keys WHERE name = $1", name))
