"""The daemon processes sharing one database, and this one's share of the providers' limits.

Several daemons may serve one database: ``FOR UPDATE SKIP LOCKED`` already keeps
them from sending a delivery twice. A provider's limits, though, hold for all of
them together (one Telegram bot: about 30 messages/s in all, 1 per second per
chat). So each daemon registers in the ``daemons`` table with the channels it
serves, beats every :data:`HEARTBEAT` seconds, and reads, per channel, how many
daemons serving it are alive (seen within :data:`TTL`) and its rank among them.
Workers then take ``1/live`` of their channel's global budget, and channels with
a per-recipient interval claim only the recipients whose address hashes to their
rank, so that one chat is always paced by one process.

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
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from dispatcher.store import daemons
from dispatcher.store.db import DB_ERRORS

log = logging.getLogger(__name__)

# The heartbeat is best effort: whatever the database answers, the last share is kept.
_BEAT_ERRORS = (*DB_ERRORS, asyncpg.PostgresError)

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
    """Registers this daemon with the channels it serves, beats, and keeps each channel's :class:`Share` current.

    A channel's budget is split among the live daemons that serve that channel only:
    a daemon with Telegram disabled takes nothing of Telegram's.
    """

    def __init__(
        self, pool: asyncpg.Pool, channels: Sequence[str], *, heartbeat: float = HEARTBEAT, ttl: float = TTL
    ) -> None:
        self.pool = pool
        self.channels = sorted(set(channels))
        self.heartbeat = heartbeat
        self.ttl = ttl
        # One Share object per channel for the life of the daemon: workers hold it.
        self.shares = {name: Share() for name in self.channels}
        self.id: int | None = None
        self._task: asyncio.Task[None] | None = None

    def share_for(self, channel: str) -> Share:
        """The (live-updated) share of ``channel``; alone if this daemon does not serve it."""
        return self.shares.get(channel) or Share()

    async def start(self) -> None:
        """Forget this host's dead daemons, register, read the first share (best effort: the loop retries)."""
        with contextlib.suppress(*_BEAT_ERRORS):
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
            with contextlib.suppress(*_BEAT_ERRORS):
                async with self.pool.acquire() as conn:
                    await daemons.forget(conn, [self.id])

    async def forget_dead_local(self) -> int:
        """Delete the rows of daemons on this host whose process is gone.

        A daemon killed and restarted (systemd ``Restart=``) would otherwise count
        its dead predecessor for up to :data:`TTL` seconds and serve half the budget.
        """
        host = socket.gethostname()
        async with self.pool.acquire() as conn:
            dead = [daemon_id for daemon_id, pid in (await daemons.on_host(conn, host)).items() if not _running(pid)]
            if dead:
                await daemons.forget(conn, dead)
                log.info("forgot daemons of this host that are gone", extra={"count": len(dead)})
        return len(dead)

    async def beat(self) -> dict[str, Share]:
        """One heartbeat: refresh our row (re-register if it is gone), read every channel's share."""
        async with self.pool.acquire() as conn:
            if self.id is None or not await daemons.beat(conn, self.id, self.channels):
                self.id = await daemons.register(conn, socket.gethostname(), os.getpid(), self.channels)
                log.info("daemon registered", extra={"daemon_id": self.id, "channels": ",".join(self.channels)})
            found = await daemons.peers(conn, self.id, self.channels, ttl=self.ttl, forget_after=FORGET_AFTER)
        for peer in found:
            share = self.shares[peer.channel]
            live, rank = max(1, peer.live), min(peer.rank, max(1, peer.live) - 1)
            if (live, rank) != (share.live, share.rank):
                log.info(
                    "daemons sharing a channel changed", extra={"channel": peer.channel, "live": live, "rank": rank}
                )
                share.live, share.rank = live, rank
        return self.shares

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.beat()
            except _BEAT_ERRORS as exc:
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
