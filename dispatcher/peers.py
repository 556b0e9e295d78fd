"""The daemon processes sharing one database, and this one's share of the providers' limits.

Several daemons may serve one database: ``FOR UPDATE SKIP LOCKED`` already keeps
them from sending a delivery twice. A provider's limits, though, hold for all of
them together (one Telegram bot: about 30 messages/s in all, 1 per second per
chat). So each daemon registers in the ``daemons`` table, beats every
:data:`HEARTBEAT` seconds, and reads how many are alive (seen within
:data:`TTL`) and its rank among them. Workers then take ``1/live`` of each
channel's global budget, and channels with a per-recipient interval claim only
the recipients whose address hashes to their rank, so that one chat is always
paced by one process.

While membership changes (a daemon starts, or dies and its row goes stale), two
daemons may briefly disagree about the split: the provider's 429, honoured as
always, covers that moment. If the database is unreachable the last share is
kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)

# Seconds between two heartbeats, and after which a silent daemon no longer counts.
HEARTBEAT = 2.0
TTL = 3 * HEARTBEAT
# Rows of daemons silent for this long are deleted (by whichever daemon beats).
FORGET_AFTER = 3600.0


@dataclass(slots=True)
class Share:
    """This daemon's place among the live ones: ``rank`` in ``0 .. live - 1``."""

    live: int = 1
    rank: int = 0


class Peers:
    """Registers this daemon, keeps its heartbeat, and keeps :attr:`share` current."""

    def __init__(self, pool: asyncpg.Pool, *, heartbeat: float = HEARTBEAT, ttl: float = TTL) -> None:
        self.pool = pool
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.share = Share()
        self.id: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Forget this host's dead daemons, register, read the first share (best effort: the loop retries)."""
        with contextlib.suppress(*_DB_ERRORS):
            await self.forget_dead_local()
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="peers-heartbeat")

    async def stop(self) -> None:
        """Stop beating and leave, so the others take over this share at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.id is not None:
            with contextlib.suppress(*_DB_ERRORS):
                async with self.pool.acquire() as conn:
                    await conn.execute("DELETE FROM daemons WHERE id = $1", self.id)

    async def forget_dead_local(self) -> int:
        """Delete the rows of daemons on this host whose process is gone.

        A daemon killed and restarted (systemd ``Restart=``) would otherwise count
        its dead predecessor for up to :data:`TTL` seconds and serve half the budget.
        """
        host = socket.gethostname()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, pid FROM daemons WHERE host = $1", host)
            dead = [int(r["id"]) for r in rows if not _running(int(r["pid"]))]
            if dead:
                await conn.execute("DELETE FROM daemons WHERE id = ANY($1::bigint[])", dead)
                log.info("forgot daemons of this host that are gone", extra={"count": len(dead)})
        return len(dead)

    async def beat(self) -> Share:
        """One heartbeat: refresh our row (re-register if it is gone), read the share."""
        async with self.pool.acquire() as conn:
            if self.id is None or not await conn.fetchval(
                "UPDATE daemons SET seen_at = now() WHERE id = $1 RETURNING true", self.id
            ):
                self.id = await conn.fetchval(
                    "INSERT INTO daemons (host, pid) VALUES ($1, $2) RETURNING id", socket.gethostname(), os.getpid()
                )
                log.info("daemon registered", extra={"daemon_id": self.id})
            row = await conn.fetchrow(
                """
                WITH gone AS (
                    DELETE FROM daemons WHERE seen_at < now() - make_interval(secs => $3)
                )
                SELECT count(*) AS live, count(*) FILTER (WHERE id < $1) AS rank
                FROM daemons WHERE seen_at >= now() - make_interval(secs => $2)
                """,
                self.id,
                self.ttl,
                FORGET_AFTER,
            )
        live, rank = max(1, int(row["live"])), int(row["rank"])
        if (live, rank) != (self.share.live, self.share.rank):
            log.info("daemons sharing the database changed", extra={"live": live, "rank": rank})
            self.share.live, self.share.rank = live, min(rank, live - 1)
        return self.share

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.beat()
            except _DB_ERRORS as exc:
                log.warning("heartbeat failed; keeping the last share", extra={"error": str(exc)})


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
