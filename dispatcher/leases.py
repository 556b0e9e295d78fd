"""The deliveries an outbox worker holds, and the upkeep of their leases.

A claimed delivery is "sending" under a lease (``lease_until``): should its worker
die, another requeues it once the lease has expired. Every delivery claimed and not
yet recorded (sending, waiting for a send slot or for its recipient's pacing, or
answered and waiting for the recorder) is held in :class:`Leases`, and a keeper task
renews those leases on a timer of its own, whatever the worker's load or pause, so
only a dead (or cut-off) process's leases expire. The keeper renews before it
requeues expired leases, and never requeues a delivery this worker still holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

import asyncpg

from dispatcher.store import outbox
from dispatcher.store.db import DB_ERRORS
from dispatcher.store.outbox import Claimed

# The keeper looks every LEASE_TICK of a lease and renews what is older than
# LEASE_RENEW of one: renewed at most half a lease after the claim, a lease keeps half
# of itself as margin for a slow database or a stalled event loop.
LEASE_TICK = 1 / 6
LEASE_RENEW = 1 / 3

log = logging.getLogger(__name__)


class Leases:
    """Claimed and not yet recorded deliveries of one channel in this worker, with their leases."""

    def __init__(self, pool: asyncpg.Pool, channel: str, lease_seconds: float) -> None:
        self.pool = pool
        self.channel = channel
        self.lease_seconds = lease_seconds
        # id → (claim, time.monotonic() of the claim or of the last renewal).
        self._held: dict[int, tuple[Claimed, float]] = {}
        self._last_requeue = 0.0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, claimed: Iterable[Claimed], at: float) -> None:
        """Hold ``claimed`` from ``at`` (``time.monotonic()`` taken before the claim's statement)."""
        for c in claimed:
            self._held[c.id] = (c, at)

    def drop(self, claimed: Iterable[Claimed]) -> None:
        """No longer held: recorded."""
        for c in claimed:
            self._held.pop(c.id, None)

    def held(self) -> list[Claimed]:
        """Every delivery held now."""
        return [c for c, _at in self._held.values()]

    async def keep(self) -> None:
        """One round of upkeep: renew ours that are due, then requeue expired ones of others."""
        lease = self.lease_seconds
        now = time.monotonic()
        due = [c for c, at in self._held.values() if now - at >= lease * LEASE_RENEW]
        requeue = now - self._last_requeue >= lease / 4
        if not due and not requeue:
            return
        async with self.pool.acquire() as conn:
            if due:
                await outbox.renew_leases(conn, [c.id for c in due], [c.claim for c in due], lease)
                self._renewed(due, now)
            if requeue:
                # After renewing: only leases nobody renewed are expired. Ours are
                # excluded all the same, should the database have been slower than the margin.
                n = await outbox.requeue_expired_leases(conn, self.channel, keep=list(self._held))
                self._last_requeue = now
                if n:
                    log.warning("expired leases requeued (a worker died?)", extra={"channel": self.channel, "count": n})

    def _renewed(self, due: Sequence[Claimed], at: float) -> None:
        for c in due:
            entry = self._held.get(c.id)
            if entry is not None and entry[0] is c:
                self._held[c.id] = (c, at)

    async def run(self) -> None:
        """Keep the leases until cancelled.

        On its own timer: claiming waits while the worker is full or paused, and a
        lease that lapses meanwhile would let any worker (this one included)
        requeue a delivery whose send is under way, and send it twice.
        """
        tick = max(0.05, self.lease_seconds * LEASE_TICK)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.keep()
            except DB_ERRORS as exc:
                log.warning("cannot renew leases yet; retrying", extra={"channel": self.channel, "error": str(exc)})
            except Exception:
                log.exception("lease upkeep failed; retrying", extra={"channel": self.channel})
