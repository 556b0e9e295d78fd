"""The ``daemons`` table: the processes serving one database, and who serves which channel.

Each daemon keeps a row (host, pid, the channels it serves, when it was last seen),
refreshed by its heartbeat; :mod:`dispatcher.peers` reads from it each channel's
number of live daemons and this one's rank among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class ChannelPeers:
    """For one channel: how many live daemons serve it, and how many of them registered before us."""

    channel: str
    live: int
    rank: int


async def on_host(conn: asyncpg.Connection, host: str) -> dict[int, int]:
    """The daemons registered from ``host``: id → pid."""
    rows = await conn.fetch("SELECT id, pid FROM daemons WHERE host = $1", host)
    return {int(r["id"]): int(r["pid"]) for r in rows}


async def forget(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    """Delete the rows ``ids`` (daemons that are gone, or this one leaving)."""
    if ids:
        await conn.execute("DELETE FROM daemons WHERE id = ANY($1::bigint[])", list(ids))


async def beat(conn: asyncpg.Connection, daemon_id: int, channels: Sequence[str]) -> bool:
    """Refresh the row of ``daemon_id`` with the channels it serves; False when the row is gone."""
    return bool(
        await conn.fetchval(
            "UPDATE daemons SET seen_at = now(), channels = $2 WHERE id = $1 RETURNING true",
            daemon_id,
            list(channels),
        )
    )


async def register(conn: asyncpg.Connection, host: str, pid: int, channels: Sequence[str]) -> int:
    """A new row for this daemon; its id (ids grow: the rank among peers is by id)."""
    return int(
        await conn.fetchval(
            "INSERT INTO daemons (host, pid, channels) VALUES ($1, $2, $3) RETURNING id", host, pid, list(channels)
        )
    )


async def peers(
    conn: asyncpg.Connection, daemon_id: int, channels: Sequence[str], *, ttl: float, forget_after: float
) -> list[ChannelPeers]:
    """Per channel of ``channels``, the daemons seen within ``ttl`` seconds that serve it.

    Rows silent for ``forget_after`` seconds are deleted on the way.
    """
    rows = await conn.fetch(
        """
        WITH gone AS (
            DELETE FROM daemons WHERE seen_at < now() - make_interval(secs => $3)
        )
        SELECT c AS channel, count(*) AS live, count(*) FILTER (WHERE d.id < $1) AS rank
        FROM unnest($4::text[]) AS c
        JOIN daemons d ON c = ANY (d.channels)
        WHERE d.seen_at >= now() - make_interval(secs => $2)
        GROUP BY c
        """,
        daemon_id,
        ttl,
        forget_after,
        list(channels),
    )
    return [ChannelPeers(r["channel"], int(r["live"]), int(r["rank"])) for r in rows]
