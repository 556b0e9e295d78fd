"""The send gate of one channel: the one place that says whether a request may leave now.

A :class:`SendGate` holds everything that can keep a request back:

* the budget: the channel's :class:`~dispatcher.ratelimit.RateLimiter` (its share of
  the provider's global rate, and a longer window budget where the provider counts
  one), and the send slots of a per-recipient-paced channel;
* per-recipient spacing (:class:`~dispatcher.ratelimit.RecipientSpacing`);
* pauses, held in memory as monotonic deadlines: the provider's (a 429, for the
  channel or one recipient), the backoff after consecutive failures, an operator's
  hold.

:meth:`SendGate.admit` checks them all, in order, for one chunk; a chunk it keeps
back is given back to the queue unsent (a :class:`~dispatcher.retry.Held`).

Pauses act in memory at once and are mirrored in the database by the recorder, for
every other worker and after a restart. The database is authoritative and memory the
fast path: the worker reads ``channel_state`` a few times a second and hands it to
:meth:`SendGate.follow`. An operator's action (``dispatcher channel pause|resume``)
moves the channel's ``generation`` on; a gate that reads a newer generation drops the
pauses it holds in memory, all set before it knew of the action, so a resume ends
even a provider's pause at once, while a read that merely comes between a 429 and its
write keeps the pause. A pause longer than :data:`~dispatcher.store.reports.LONG_PAUSE` is
logged as a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dispatcher.ratelimit import RateLimiter, RecipientSpacing
from dispatcher.retry import Held, Pause
from dispatcher.store.outbox import ChannelState, Claimed
from dispatcher.store.reports import LONG_PAUSE

# An operator's hold without an end, as an in-memory pause: a resume ends it.
HOLD_FOREVER = 10 * 365 * 86400.0
# Longest wait for a spent window budget spent in memory; beyond it the channel
# pauses and its claimed deliveries go back to the queue until the window has room.
MAX_WINDOW_WAIT = 5.0

log = logging.getLogger(__name__)


def _pauses(state: ChannelState, now: datetime) -> list[tuple[str, datetime | None]]:
    """The pauses in force in ``state``: (why, until), until None for a hold without an end."""
    found: list[tuple[str, datetime | None]] = []
    if state.held(now):
        found.append(("operator", state.held_until))
    for why, until in (("provider", state.paused_until), ("backoff", state.backoff_until)):
        if until is not None and until > now:
            found.append((why, until))
    return found


class SendGate:
    """Budget, per-recipient spacing and pauses of one channel, checked in one place (:meth:`admit`).

    ``slots``: how many requests may be under way at once, for a channel whose sends
    each run in a task of their own (per-recipient pacing); None when the caller's
    pool of senders is the limit.
    """

    def __init__(
        self,
        channel: str,
        *,
        rate: float,
        window: tuple[int, float] | None = None,
        interval: float | None = None,
        max_spacing_wait: float = 1.0,
        slots: int | None = None,
    ) -> None:
        self.channel = channel
        self.bucket = RateLimiter(rate, window=window)
        self.spacing = RecipientSpacing(interval) if interval else None
        # Longest in-memory wait for a recipient's pacing slot; beyond it the delivery
        # goes back to the queue with ``not_before`` at that slot.
        self.max_spacing_wait = max_spacing_wait
        self._slots = PrioritySlots(slots) if slots else None
        self._paused_until = 0.0
        self._recipient_paused: dict[str, float] = {}
        # channel_state.generation last read (None: not read yet).
        self.generation: int | None = None
        # The database's pause last seen (for logging a new one once).
        self._db_pause: tuple[str, datetime | None] | None = None
        # Set when a pause ends early (an operator's action) and by wake(): ends a paused wait.
        self._unpaused = asyncio.Event()
        self._live: int | None = None  # the number of daemons last shared with

    # -- pauses -------------------------------------------------------------

    @property
    def paused_seconds(self) -> float:
        """Seconds the channel-wide pause still lasts (0: not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    def pause_for(self, seconds: float) -> bool:
        """Pause the channel for ``seconds``; True if that ends more than a second later than before."""
        until = time.monotonic() + seconds
        extended = until > self._paused_until + 1.0
        self._paused_until = max(self._paused_until, until)
        return extended

    def take(self, pause: Pause, claim: Claimed) -> None:
        """Act on a provider's pause at once: sends waiting in this process must not hit the provider too."""
        if pause.bucket is not None:
            until = time.monotonic() + pause.seconds
            self._recipient_paused[pause.bucket] = max(self._recipient_paused.get(pause.bucket, 0.0), until)
            return
        if self.pause_for(pause.seconds) and pause.seconds > LONG_PAUSE:
            log.warning(
                "provider paused the channel for longer than a minute",
                extra={
                    "event": "channel.long_pause",
                    "channel": self.channel,
                    "alert_id": claim.alert_id,
                    "delivery_id": claim.id,
                    "retry_after": pause.seconds,
                    "until": (datetime.now(UTC) + timedelta(seconds=pause.seconds)).isoformat(),
                    "reason": pause.reason,
                },
            )

    def _held(self, chunk: Sequence[Claimed]) -> Held | None:
        """Whether a pause of the channel or of a recipient in ``chunk`` holds it back now."""
        now = time.monotonic()
        held = self._paused_until if self._paused_until > now else 0.0
        for c in chunk:
            until = self._recipient_paused.get(c.address, 0.0)
            if until > now:
                held = max(held, until)
        return Held(held - now, "bucket paused") if held else None

    def wake(self) -> None:
        """End a :meth:`wait_while_paused` now (stopping, or an operator's action)."""
        self._unpaused.set()

    async def wait_while_paused(self) -> bool:
        """While the channel is paused, wait for the pause to end (or :meth:`wake`); False if not paused."""
        # Cleared before looking at the pause, so an end of it from now on ends the wait.
        self._unpaused.clear()
        left = self.paused_seconds
        if left <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._unpaused.wait(), timeout=min(left, 60.0))
        return True

    # -- admission ----------------------------------------------------------

    async def admit(self, chunk: Sequence[Claimed]) -> Held | None:
        """Wait until ``chunk`` may be sent, or say why and for how long it goes back.

        On None the request may leave, and it holds a send slot until :meth:`release`.
        The pauses are looked at before and after the waits for a slot and for the
        budget: a chunk paused from the start goes back at once without taking budget,
        and a pause that came while it waited (a 429 answered meanwhile) holds it too.
        """
        single = chunk[0].address if self.spacing is not None and len(chunk) == 1 else None
        if single is not None:
            assert self.spacing is not None
            wait = self.spacing.reserve(single, max_wait=self.max_spacing_wait)
            if wait > self.max_spacing_wait:
                return Held(wait, "per-recipient pacing")
            if wait > 0:
                await asyncio.sleep(wait)
        held = self._held(chunk)
        if held is not None:
            return held
        if self._slots is not None:
            # Most urgent first: a CRITICAL alert claimed behind queued bot replies takes the next slot.
            await self._slots.acquire(min(c.priority for c in chunk))
        try:
            held = await self._budget(chunk, single)
        except BaseException:
            self.release()
            raise
        if held is not None:
            self.release()
        return held

    async def _budget(self, chunk: Sequence[Claimed], single: str | None) -> Held | None:
        # A spent window budget (X: 200 posts per 15 min) can mean minutes: rather
        # than hold claims that long, pause the channel and give them back.
        window_wait = self.bucket.window_wait()
        if window_wait > MAX_WINDOW_WAIT:
            self.pause_for(window_wait)
            return Held(window_wait, "window budget spent")
        # The rate budget is taken right before the request: taken earlier, a wait for
        # the slot could bunch requests up at the provider beyond its per-second limit.
        await self.bucket.acquire()
        held = self._held(chunk)
        if held is not None:
            return held
        if single is not None:
            assert self.spacing is not None
            early = self.spacing.sending(single)
            if early > 0:
                # The queue for the global budget held the previous request to this
                # recipient past its slot, and this one would follow it too closely.
                # Its token goes unused: waiting with it would bunch requests up.
                return Held(early, "per-recipient pacing")
        return None

    def release(self) -> None:
        """Give back the send slot :meth:`admit` took."""
        if self._slots is not None:
            self._slots.release()

    # -- what other daemons and the database say ----------------------------

    def share(self, live: int) -> float | None:
        """Take ``1/live`` of the channel's global budget; the seconds it holds for, if the split changed.

        On a change (and when starting beside others) the channel holds for one
        window: what was sent under the old split, by us or by the others, still
        counts at the provider for that long, globally and per recipient.
        """
        live = max(1, live)
        if live == self._live:
            return None
        alone_from_start = self._live is None and live == 1
        self._live = live
        self.bucket.set_share(live)
        if alone_from_start:
            return None
        hold = max(1.0, self.spacing.interval if self.spacing is not None else 0.0)
        self.pause_for(hold)
        return hold

    def follow(self, state: ChannelState) -> bool:
        """Take the channel's row of ``channel_state``; True when an operator acted since the last read."""
        known, self.generation = self.generation, state.generation
        acted = known is not None and state.generation != known
        if acted:
            # Every pause held in memory was set before this gate knew of the action,
            # and gives way to the database's state.
            was_paused = self._paused_until > time.monotonic()
            self._paused_until = 0.0
            self._recipient_paused.clear()
            self._db_pause = None
            self._unpaused.set()
            if was_paused and not state.held(datetime.now(UTC)):
                log.info("channel resumed by an operator", extra={"event": "channel.resumed", "channel": self.channel})
        now = datetime.now(UTC)
        pauses = _pauses(state, now)
        if not pauses:
            self._db_pause = None
            return acted
        # The one that ends last (an operator's hold without an end: never).
        why, until = max(pauses, key=lambda p: p[1] or datetime.max.replace(tzinfo=UTC))
        seconds = HOLD_FOREVER if until is None else (until - now).total_seconds()
        extended = self.pause_for(seconds)
        seen, self._db_pause = self._db_pause, (why, until)
        if (why, until) != seen and (why == "operator" or (extended and seconds > LONG_PAUSE)):
            operator = why == "operator"
            log.warning(
                "channel paused by an operator" if operator else f"channel paused ({why}), as the database says",
                extra={
                    "event": "channel.paused",
                    "channel": self.channel,
                    "why": why,
                    "until": until.isoformat() if until is not None else "resumed",
                    "by": state.held_by if operator else None,
                    "reason": state.held_reason if operator else (state.pause_reason or state.last_error),
                },
            )
        return acted


class PrioritySlots:
    """A semaphore whose waiters are woken most urgent first (lowest priority number), then in order."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int = 0) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # woken and cancelled at once: pass the slot on
            raise

    def release(self) -> None:
        while self._waiters:
            _priority, _n, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
