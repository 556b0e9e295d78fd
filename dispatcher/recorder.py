"""The recorder of one outbox worker: what became of each claimed delivery, written to the database.

Every claimed delivery ends in exactly one :class:`Answer` (its
:class:`~dispatcher.retry.Decision`, whether the provider was asked or not), and a
single :class:`Recorder` task writes whatever answers have arrived in one
transaction (bulk completion), about :data:`RECORD_DELAY` after the first of them
unless a claim's worth is waiting, so the window in which a crash can cause a
duplicate is one send plus that delay plus one commit. Besides the deliveries'
states it writes what the answers say of the channel: the provider's pauses (not
over a newer operator action, see ``generation``), unsubscriptions, and the channel's
health, with a jittered backoff when every answer of a batch was a transient failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg

from dispatcher.gate import SendGate
from dispatcher.leases import Leases
from dispatcher.metrics import ChannelMetrics
from dispatcher.retry import Decision, RetryPolicy, Said
from dispatcher.store import outbox
from dispatcher.store.db import DB_ERRORS
from dispatcher.store.outbox import Claimed, Completion

# Longest an answer waits for company before it is written, unless a claim's worth
# has arrived: one completion statement costs PostgreSQL far more than one of its
# rows, so batching pays. It widens the crash window (sent, not yet recorded) by as much.
RECORD_DELAY = 0.02

log = logging.getLogger(__name__)
T = TypeVar("T")
# The metrics' names of what a provider said (dispatcher.metrics.ANSWERS).
_SAID = {
    Said.DELIVERED: "delivered",
    Said.REJECTED: "rejected",
    Said.FAILED: "failed",
    Said.RATE_LIMITED: "rate_limited",
}


# Not frozen (but never changed), as Decision: one per delivery.
@dataclass(slots=True)
class Answer:
    """What became of one claimed delivery, waiting for the recorder.

    ``generation``: the channel's ``channel_state.generation`` when it came, so that
    a provider's pause answered before an operator's resume is not written over it.
    """

    claim: Claimed
    decision: Decision
    generation: int


class Recorder:
    """Writes answers as they arrive, all that are waiting in one transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        *,
        policy: RetryPolicy,
        batch: int,
        gate: SendGate,
        leases: Leases,
        metrics: ChannelMetrics | None = None,
    ) -> None:
        self.pool = pool
        # Counts what providers said once it is written, and which alerts were delivered for.
        self.metrics = metrics
        self.channel = channel
        self.policy = policy
        # A batch this large is written at once, without waiting RECORD_DELAY.
        self.batch = batch
        self.gate = gate
        self.leases = leases
        self._answers: list[Answer] = []
        self._answered = asyncio.Event()
        # Set after every write: the worker waits on it when it holds all it may.
        self.recorded = asyncio.Event()
        self._closing = False
        # Whether channel_state may hold failures to reset; True at start to clear leftovers.
        self.unhealthy = True

    def add(self, answer: Answer) -> None:
        """Queue ``answer`` for the next write."""
        self._answers.append(answer)
        self._answered.set()

    async def run(self) -> None:
        """Write answers until :meth:`drain`. Never cancelled mid-write: :meth:`drain` asks it to finish."""
        while True:
            if not self._answers:
                if self._closing:
                    return
                await self._answered.wait()
                self._answered.clear()
                continue
            if len(self._answers) < self.batch and not self._closing:
                await asyncio.sleep(RECORD_DELAY)
            batch, self._answers = self._answers, []
            try:
                await self.record(batch)
            except Exception:
                # A bug or an unexpected database error must not lose answers.
                log.exception(
                    "recording outcomes failed; retrying", extra={"event": "recorder.failed", "channel": self.channel}
                )
                self._answers[:0] = batch
                await asyncio.sleep(1.0)

    async def drain(self, task: asyncio.Task[None]) -> None:
        """Let the recorder task write every answer received, then end it."""
        self._closing = True
        self._answered.set()
        await task

    async def record(self, done: Sequence[Answer]) -> None:
        """Write ``done``: the deliveries, then what their answers say of the channel."""
        now = datetime.now(UTC)
        completions: list[Completion] = []
        unsubscribe: list[int] = []
        channel_pause: tuple[datetime, str, int] | None = None
        recipient_pauses: dict[str, datetime] = {}
        delivered = False
        asked = 0
        failed: list[Decision] = []
        for a in done:
            c, d = a.claim, a.decision
            completions.append(Completion(c.id, d.state, d.remote_id, d.error, d.not_before, d.spent, c.claim))
            if d.unsubscribe and c.subscription_id is not None:
                unsubscribe.append(c.subscription_id)
            if d.pause is not None:
                until = now + timedelta(seconds=d.pause.seconds)
                if d.pause.bucket is None:
                    if channel_pause is None or until > channel_pause[0]:
                        channel_pause = (until, d.pause.reason, a.generation)
                else:
                    recipient_pauses[d.pause.bucket] = max(until, recipient_pauses.get(d.pause.bucket, until))
            if d.said is not None:
                asked += 1
                delivered |= d.said is Said.DELIVERED
                if d.said is Said.FAILED:
                    failed.append(d)
        channel_down = asked > 0 and len(failed) == asked
        backoff: list[float] = []

        # Only write channel health when it changes: the common case is one statement.
        mark_healthy = delivered and self.unhealthy
        simple = not (unsubscribe or channel_pause or recipient_pauses or mark_healthy or channel_down)

        async def write(conn: asyncpg.Connection) -> None:
            if simple:
                await outbox.complete(conn, completions)
                return
            async with conn.transaction():
                await outbox.complete(conn, completions)
                await outbox.deactivate_subscriptions(conn, unsubscribe, "provider says the recipient is gone")
                if channel_pause is not None:
                    until, reason, generation = channel_pause
                    await outbox.pause_channel(conn, self.channel, until, reason, generation=generation)
                for address, until in recipient_pauses.items():
                    await outbox.pause_recipient(conn, self.channel, address, until)
                if mark_healthy:
                    await outbox.record_channel_success(conn, self.channel)
                elif channel_down:
                    failures = await outbox.record_channel_failure(conn, self.channel, failed[0].reason)
                    delay = self.policy.backoff(failures)
                    await outbox.set_channel_backoff(conn, self.channel, datetime.now(UTC) + timedelta(seconds=delay))
                    backoff[:] = [delay, float(failures)]

        await self._with_db(write)
        if mark_healthy:
            self.unhealthy = False
        elif channel_down:
            self.unhealthy = True
        self.leases.drop(a.claim for a in done)
        self.recorded.set()
        if self.metrics is not None:
            self.metrics.answered(
                (_SAID[a.decision.said] for a in done if a.decision.said is not None),
                {a.claim.alert_id for a in done if a.decision.said is Said.DELIVERED},
            )
        if backoff:
            # Sends still waiting in this process go back instead of failing too.
            self.gate.pause_for(backoff[0])
            log.warning(
                "channel failing; backing off",
                extra={
                    "event": "channel.backoff",
                    "channel": self.channel,
                    "failures": int(backoff[1]),
                    "backoff_s": round(backoff[0], 1),
                },
            )

    async def _with_db(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` until the database takes it: outcomes must not be lost."""
        delay = 0.2
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await fn(conn)
            except DB_ERRORS as exc:
                log.warning(
                    "cannot record outcomes yet; retrying",
                    extra={"event": "recorder.database_unavailable", "channel": self.channel, "error": str(exc)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
