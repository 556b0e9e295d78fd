"""The posts broadcast channels made, per alert: how updates find their thread and cancels their originals.

A broadcast channel (Mastodon, X, Bluesky) posts once per alert. What the provider
answered (its id, and for Bluesky the record's ``uri`` and ``cid``) is remembered here,
so that an update is posted as a reply in the thread of the alert it replaces and a
cancel edits or deletes what was posted. The chain of an alert is followed through
``alerts.replaced_by`` (set by the pipeline when an update or cancel replaces it).
:class:`StorePostLog` is the :class:`channels.posts.PostLog` the channels are given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from channels.posts import PostRef, Thread

# Every earlier alert of the chain ending at the alert with this public id, nearest first.
_CHAIN = """
    WITH RECURSIVE chain(id, depth) AS (
        SELECT id, 0 FROM alerts WHERE public_id = $1
        UNION ALL
        SELECT a.id, c.depth + 1 FROM alerts a JOIN chain c ON a.replaced_by = c.id WHERE c.depth < 50
    )
    SELECT c.id AS alert_id, c.depth, p.remote_id, p.meta, p.retracted, a.public_id
    FROM chain c JOIN alerts a ON a.id = c.id
    LEFT JOIN channel_posts p ON p.alert_id = c.id AND p.channel = $2
    ORDER BY c.depth, p.posted_at
"""


def _ref(row: Mapping[str, Any]) -> PostRef:
    meta = row["meta"]
    return PostRef(
        remote_id=row["remote_id"],
        public_id=row["public_id"],
        meta=json.loads(meta) if isinstance(meta, str) else dict(meta or {}),
        retracted=row["retracted"],
    )


async def thread(conn: asyncpg.Connection, channel: str, public_id: str) -> Thread:
    """The posts of ``channel`` for the alerts the one with ``public_id`` replaces (directly or not)."""
    rows = await conn.fetch(_CHAIN, public_id, channel)
    earlier = [_ref(r) for r in rows if r["depth"] > 0 and r["remote_id"] is not None]
    own = [_ref(r) for r in rows if r["depth"] == 0 and r["remote_id"] is not None]
    return Thread(own=tuple(own), earlier=tuple(earlier))


async def remember(
    conn: asyncpg.Connection, channel: str, public_id: str, remote_id: str, meta: Mapping[str, Any]
) -> None:
    """Record a post ``channel`` made for the alert with ``public_id`` (again: harmless)."""
    await conn.execute(
        "INSERT INTO channel_posts (channel, alert_id, remote_id, meta)"
        " SELECT $1, id, $3, $4::jsonb FROM alerts WHERE public_id = $2"
        " ON CONFLICT (channel, remote_id) DO NOTHING",
        channel,
        public_id,
        remote_id,
        json.dumps(dict(meta)),
    )


async def mark_retracted(conn: asyncpg.Connection, channel: str, remote_id: str, how: str) -> None:
    """The post was edited or deleted by a cancel."""
    await conn.execute(
        "UPDATE channel_posts SET retracted = $3 WHERE channel = $1 AND remote_id = $2", channel, remote_id, how
    )


class StorePostLog:
    """:class:`channels.posts.PostLog` on the daemon's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def thread(self, channel: str, public_id: str) -> Thread:
        async with self.pool.acquire() as conn:
            return await thread(conn, channel, public_id)

    async def remember(self, channel: str, public_id: str, remote_id: str, meta: Mapping[str, Any]) -> None:
        async with self.pool.acquire() as conn:
            await remember(conn, channel, public_id, remote_id, meta)

    async def retracted(self, channel: str, remote_id: str, how: str) -> None:
        async with self.pool.acquire() as conn:
            await mark_retracted(conn, channel, remote_id, how)
