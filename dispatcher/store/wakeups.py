"""LISTEN/NOTIFY wake-ups of the outbox workers.

https://www.postgresql.org/docs/current/sql-notify.html

Triggers on ``deliveries`` (``schema.sql``) ``NOTIFY deliveries`` with the channel's
name when deliveries are queued; :class:`Wakeups` listens on a connection of its own
(pooled connections carry no session state, see :func:`dispatcher.store.db.create_pool`)
and sets that channel's event, which its worker waits on. Workers poll as a fallback,
so a lost connection or a missed notification only delays, never loses, work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "deliveries"


class Wakeups:
    """``LISTEN deliveries`` on a dedicated connection; one event per channel.

    Reconnects after a database restart; meanwhile workers poll.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def event(self, channel: str) -> asyncio.Event:
        """The event set when deliveries of ``channel`` are queued (or may have been, after a reconnect)."""
        return self.events[channel]

    def _on_notify(self, _conn: Any, _pid: int, _name: str, payload: str) -> None:
        self.events[payload].set()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except Exception as exc:  # unreachable database: workers poll meanwhile
                log.warning("LISTEN connection failed, retrying", extra={"error": str(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, ev=lost: ev.set())
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self.connected.set()
                # Anything queued while we were not listening must be looked at.
                for ev in self.events.values():
                    ev.set()
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    def start(self) -> None:
        """Listen in a background task until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="listen-deliveries")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
