"""Outbox workers: claim deliveries, render, send, record the outcome.

One :class:`OutboxWorker` per enabled channel and process. Workers of several
processes share the queue through ``FOR UPDATE SKIP LOCKED`` and the provider's
limits through their :class:`~dispatcher.peers.Share` (an equal part of the
global budget each; on a per-recipient-paced channel, a part of the
recipients); they wake on
``NOTIFY deliveries`` (see :class:`~dispatcher.store.wakeups.Wakeups`) and poll as a fallback. The
channel makes one attempt; every retry decision is taken here and written to
the database (``not_before``, ``channel_state``, ``recipient_pauses``), so a
provider outage slows only its channel and survives restarts.

The worker streams rather than working in rounds: it keeps up to two claims'
worth of deliveries in flight, claims again as soon as one claim's worth has
been recorded, and a single recorder writes whatever answers have arrived in
one transaction (bulk completion), about ``RECORD_DELAY`` (20 ms) after the
first of them, so the window in which a crash can cause a duplicate is one
send plus 20 ms plus one commit. A slow recipient (per-chat pacing, a slow
endpoint) holds only its own slot, never the batch.
Pauses a provider asks for act in memory at once (deliveries not yet sent go
back to the queue unsent, no attempt spent) and in the database for every
other worker and after a restart. The database is authoritative and memory
the fast path: a follower task reads ``channel_state`` a few times a second
(even while paused) and takes its pauses (the provider's, the backoff, an
operator's hold). An operator's action (``dispatcher channel pause|resume``)
moves the channel's ``generation`` on; a worker that reads a newer generation
drops the pauses it holds in memory, all set before it knew of the action, so
a resume ends even a provider's pause at once, while a read that merely comes
between a 429 and its write keeps the pause. A pause longer than
:data:`~dispatcher.status.LONG_PAUSE` is logged as a warning.

Retries are bounded by time, not count: a transient failure is retried with
capped, jittered backoff until the alert expires, or, for an alert without
expiry, until ``[delivery] max_age`` after the service received it; a retry
whose next try would come later ends the delivery (``expired``, or ``failed``
with the reason). ``attempts`` counts real provider attempts only: a crash, a
lease expiry, a shutdown or a rate limit spends none.

Leases: every delivery claimed and not yet recorded (sending, waiting for a send
slot or for its recipient's pacing, or answered and waiting for the recorder) has
its lease renewed by a keeper task on a timer of its own, whatever the worker's
load or pause, so only a dead (or cut-off) process's leases expire. The keeper
renews before it requeues expired leases, and never requeues a delivery this
worker still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from channels.base import Channel, Delivered, Reject, Retry, SendResult
from dispatcher.model import Alert, DeliveryState, Message, Recipient
from dispatcher.peers import Share
from dispatcher.privacy import redact_reason
from dispatcher.ratelimit import RateLimiter, RecipientSpacing, backoff_delay
from dispatcher.settings import ChannelSettings, DeliveryConfig
from dispatcher.status import LONG_PAUSE
from dispatcher.store import alerts as alert_store
from dispatcher.store import outbox
from dispatcher.store.db import DB_ERRORS
from dispatcher.store.outbox import Claimed, Completion

Answer = SendResult | Completion
# Seconds between two reads of channel_state (pauses, backoff and holds set elsewhere)
# while the worker has work in flight or is paused, and while it is idle.
STATE_EVERY = 0.25
STATE_IDLE_EVERY = 1.0
# An operator's hold without an end, as an in-memory pause: a resume ends it.
HOLD_FOREVER = 10 * 365 * 86400.0
# Longest a delivery given back unsent, or rate limited channel-wide, is put off: a
# channel's pause is held by channel_state (read before any claim), not by the
# deliveries' not_before, so that a resume finds them due.
MAX_GIVE_BACK = 60.0
# The lease keeper looks every LEASE_TICK of a lease and renews what is older than
# LEASE_RENEW of one: renewed at most half a lease after the claim, a lease keeps half
# of itself as margin for a slow database or a stalled event loop.
LEASE_TICK = 1 / 6
LEASE_RENEW = 1 / 3
# Longest wait for a spent window budget spent in memory; beyond it the channel
# pauses and its claimed deliveries go back to the queue until the window has room.
MAX_WINDOW_WAIT = 5.0
# Longest an answer waits for company before it is written, unless a claim's worth
# has arrived: one completion statement costs PostgreSQL about as much as fifty of
# its rows. It widens the crash window (sent, not yet recorded) by as much.
RECORD_DELAY = 0.02

log = logging.getLogger(__name__)
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _pauses(state: outbox.ChannelState, now: datetime) -> list[tuple[str, datetime | None]]:
    """The pauses in force in ``state``: (why, until), until None for a hold without an end."""
    found: list[tuple[str, datetime | None]] = []
    if state.held(now):
        found.append(("operator", state.held_until))
    for why, until in (("provider", state.paused_until), ("backoff", state.backoff_until)):
        if until is not None and until > now:
            found.append((why, until))
    return found


class OutboxWorker:
    """Drives one channel: claim → render → send → record, under its rate limits."""

    def __init__(
        self,
        channel: Channel,
        pool: asyncpg.Pool,
        *,
        delivery: DeliveryConfig,
        settings: ChannelSettings | None = None,
        wakeup: asyncio.Event | None = None,
        share: Share | None = None,
    ) -> None:
        self.channel = channel
        self.name = channel.name
        self.pool = pool
        self.cfg = delivery

        def configured(key: str) -> Any:
            # [channels.<name>] overrides the channel's built-in default (same names on both).
            return (getattr(settings, key) if settings is not None else None) or getattr(channel, key)

        rate: float = configured("rate_per_second")
        interval: float | None = configured("per_recipient_interval")
        self.batch_size: int = configured("batch_size")
        # This process's share of the channel's budget (dispatcher.peers), applied to the bucket.
        self.share = share or Share()
        self._live: int | None = None  # the share's live count last applied
        self.bucket = RateLimiter(rate, window=configured("rate_window"))
        self.spacing = RecipientSpacing(interval) if interval else None
        # Claim about one second of work at a time, and hold at most about a
        # second's worth (two claims at least): a crash leaves at most that much to
        # lease expiry, and a higher-priority alert is claimed within about a second.
        self.claim_size = max(1, min(delivery.batch_size, int(rate * self.batch_size) or 1))
        # Fast channels keep up to a second of work (at most 1,000) in flight, so
        # that claiming and recording (a commit each) never leave the sends idle.
        self.max_inflight = max(2 * self.claim_size, min(int(rate), 1000))
        # Longest in-memory wait for a recipient's pacing slot; beyond it the
        # delivery goes back to the queue with ``not_before`` at that slot.
        # Waiting in memory holds one in-flight slot; going back to the queue costs a
        # round trip and a wake-up per delivery, which thrashes when few chats get
        # many messages. So wait in memory up to a second or two (within the lease).
        self.max_spacing_wait = min(max(1.0, 2.0 * (interval or 0.0)), delivery.lease_seconds / 3)
        self.wakeup = wakeup or asyncio.Event()
        self._stopping = asyncio.Event()
        self.concurrency: int = max(1, configured("concurrency") or delivery.concurrency)
        self._sem = asyncio.Semaphore(self.concurrency)
        self._alerts: dict[int, Alert] = {}
        # Rendered once per (alert, language, place): the place is the area of the
        # alert that concerns the recipient, which the message leads with.
        self._messages: dict[tuple[int, str, int | None], Message] = {}
        # Claimed and not yet recorded: id → (claim, time.monotonic() of the claim or last renewal).
        self._inflight: dict[int, tuple[Claimed, float]] = {}
        # Answers waiting for the recorder, each with the channel's generation when it came.
        self._answers: list[tuple[Claimed, Answer, int]] = []
        self._answered = asyncio.Event()
        self._recorded = asyncio.Event()
        self._closing = False
        # Whether channel_state may hold failures to reset; True at start to clear leftovers.
        self._unhealthy = True
        self._sends: set[asyncio.Task[None]] = set()
        # Channels without per-recipient pacing are driven by a fixed pool of
        # sender coroutines fed by a queue: no task and no semaphore wait per
        # delivery. Paced channels (Telegram) keep a task per send, so a chat's
        # pacing wait never holds one of the pool's slots.
        self._pooled = self.spacing is None
        self._queue: asyncio.Queue[tuple[Message, Sequence[Claimed]]] = asyncio.Queue()
        self._senders: list[asyncio.Task[None]] = []
        # In-memory pauses (monotonic deadlines), mirrored in the database.
        self._paused_until = 0.0
        self._recipient_paused: dict[str, float] = {}
        # channel_state.generation last read (None: not read yet, nothing is claimed before).
        self._generation: int | None = None
        # The database's pause last seen (for logging a new one once).
        self._db_pause: tuple[str, datetime | None] | None = None
        # Set when a pause ends early (an operator's action) and by stop(): wakes a paused idle wait.
        self._unpaused = asyncio.Event()
        self._last_requeue = 0.0
        self.sent = 0

    # -- lifecycle ---------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; what is in flight finishes and is recorded."""
        self._stopping.set()
        self._unpaused.set()
        self.wakeup.set()

    @property
    def paused_seconds(self) -> float:
        """Seconds this worker's channel-wide pause still lasts (0: not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    async def run(self) -> None:
        """Work until :meth:`stop` (or cancellation, when the shutdown grace runs out)."""
        log.info(
            "worker started", extra={"channel": self.name, "claim_size": self.claim_size, "inflight": self.max_inflight}
        )
        recorder = asyncio.create_task(self._recorder(), name=f"recorder-{self.name}")
        keeper = asyncio.create_task(self._keep_leases(), name=f"leases-{self.name}")
        follower = asyncio.create_task(self._follow(), name=f"state-{self.name}")
        if self._pooled:
            self._senders = [
                asyncio.create_task(self._sender(), name=f"sender-{self.name}-{i}") for i in range(self.concurrency)
            ]
        try:
            await self._work(recorder)
        finally:
            for task in (keeper, follower):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        log.info("worker stopped", extra={"channel": self.name, "sent": self.sent})

    async def _work(self, recorder: asyncio.Task[None]) -> None:
        """Claim and send until stopped; then finish what is in flight, or give it back if cancelled."""
        try:
            while not self._stopping.is_set():
                try:
                    worked = await self.run_once()
                except DB_ERRORS as exc:
                    log.warning("database unavailable; worker waits", extra={"channel": self.name, "error": str(exc)})
                    await self._sleep(1.0)
                    continue
                except Exception:
                    # A bug must not silently kill the channel: log it, wait, go on.
                    # Claimed rows stay "sending" until their lease expires.
                    log.exception("worker round failed", extra={"channel": self.name})
                    await self._sleep(5.0)
                    continue
                if not worked:
                    await self._idle()
            if self._sends:
                await asyncio.gather(*list(self._sends), return_exceptions=True)
            await self._queue.join()
            await self._stop_senders()
            await self._drain(recorder)
        except asyncio.CancelledError:
            # Shutdown grace ran out: keep what was answered, give the rest back.
            for task in list(self._sends):
                task.cancel()
            await asyncio.gather(*list(self._sends), return_exceptions=True)
            # Chunks still queued stay in _inflight and are released below.
            await self._stop_senders()
            await self._drain(recorder)
            unanswered = [c for c, _at in self._inflight.values()]
            if unanswered:
                async with self.pool.acquire() as conn:
                    n = await outbox.release(
                        conn, [c.id for c in unanswered], [c.claim for c in unanswered], "shutdown"
                    )
                log.warning(
                    "shutdown: unsent deliveries returned to the queue", extra={"channel": self.name, "count": n}
                )
            raise

    async def _drain(self, recorder: asyncio.Task[None]) -> None:
        """Let the recorder write every answer received, then end it."""
        self._closing = True
        self._answered.set()
        await recorder

    async def _idle(self) -> None:
        wait = self.cfg.poll_interval
        # Cleared before looking at the pause, so an end of it from now on wakes the wait.
        self._unpaused.clear()
        now = time.monotonic()
        if self._paused_until > now:
            # Paused: a NOTIFY must not wake us early, only the pause's end or stop() may.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unpaused.wait(), timeout=min(self._paused_until - now, 60.0))
            return
        with contextlib.suppress(*DB_ERRORS):
            async with self.pool.acquire() as conn:
                due = await outbox.next_due(conn, self.name, partition=self._partition())
            if due is not None:
                wait = max(0.01, min(wait, (due - _now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=wait)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=max(0.0, seconds))

    # -- claiming ----------------------------------------------------------

    async def run_once(self) -> bool:
        """Claim one batch and start sending it; False when there was nothing to claim."""
        free = self.max_inflight - len(self._inflight)
        if free < max(1, self.claim_size // 2):
            # Full: wait until the recorder has made room.
            self._recorded.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recorded.wait(), timeout=1.0)
            return True
        self._apply_share()
        if self._generation is None:
            # Nothing is claimed before the channel's state (a pause, a hold) is known,
            # nor before what a dead predecessor left "sending" is back in the queue:
            # taken over at once, it goes out in priority order with the rest.
            await self.follow_state()
            await self.keep_leases()
        if self._paused_until > time.monotonic():
            return False
        # Cleared before claiming, so a NOTIFY arriving during the claim is kept.
        self.wakeup.clear()
        async with self.pool.acquire() as conn:
            claimed_at = time.monotonic()  # before the statement: the lease runs from the database's now()
            claimed = await outbox.claim(
                conn, self.name, min(free, self.claim_size), self.cfg.lease_seconds, partition=self._partition()
            )
            if not claimed:
                return False
            # Held from now on: the lease keeper renews what _inflight holds.
            for c in claimed:
                self._inflight[c.id] = (c, claimed_at)
            missing = {c.alert_id for c in claimed} - set(self._alerts)
            if missing:
                await self._load_alerts(conn, missing)
        self._dispatch(claimed)
        return True

    def _apply_share(self) -> None:
        """Take ``1/live`` of the channel's global budget when the number of daemons changed.

        On a change (and when starting beside others) the channel holds for one
        window: what was sent under the old split, by us or by the others, still
        counts at the provider for that long, globally and per recipient.
        """
        live = max(1, self.share.live)
        if live == self._live:
            return
        alone_from_start = self._live is None and live == 1
        self._live = live
        self.bucket.set_share(live)
        if alone_from_start:
            return
        hold = max(1.0, self.spacing.interval if self.spacing is not None else 0.0)
        self._pause_for(hold)
        log.info(
            "channel budget shared",
            extra={
                "channel": self.name,
                "daemons": live,
                "rate_per_second": round(self.bucket.rate, 3),
                "hold_s": round(hold, 2),
            },
        )

    def _partition(self) -> tuple[int, int] | None:
        """Recipients this process serves on a per-recipient-paced channel: (daemons, rank)."""
        if self.spacing is None or self.share.live <= 1:
            return None
        return self.share.live, self.share.rank

    async def _follow(self) -> None:
        """Follow channel_state: pauses, backoff and holds set by other processes and by operators."""
        while True:
            busy = bool(self._inflight) or self._paused_until > time.monotonic()
            await asyncio.sleep(STATE_EVERY if busy else STATE_IDLE_EVERY)
            try:
                await self.follow_state()
            except DB_ERRORS as exc:
                log.warning("cannot read channel state yet", extra={"channel": self.name, "error": str(exc)})
            except Exception:
                log.exception("following channel state failed", extra={"channel": self.name})

    async def follow_state(self) -> None:
        """Read the channel's row of channel_state once and take it (see the module docstring)."""
        async with self.pool.acquire() as conn:
            state = await outbox.channel_state(conn, self.name)
        if state.failures or state.backoff_until is not None:
            self._unhealthy = True
        known, self._generation = self._generation, state.generation
        if known is not None and state.generation != known:
            # An operator acted since the last read: every pause held in memory was
            # set before this worker knew of it, and gives way to the database's state.
            was_paused = self._paused_until > time.monotonic()
            self._paused_until = 0.0
            self._recipient_paused.clear()
            self._db_pause = None
            self._unpaused.set()
            self.wakeup.set()
            if was_paused and not state.held(_now()):
                log.info("channel resumed by an operator", extra={"channel": self.name})
        now = _now()
        pauses = _pauses(state, now)
        if not pauses:
            self._db_pause = None
            return
        # The one that ends last (an operator's hold without an end: never).
        why, until = max(pauses, key=lambda p: p[1] or datetime.max.replace(tzinfo=UTC))
        seconds = HOLD_FOREVER if until is None else (until - now).total_seconds()
        extended = self._pause_for(seconds)
        seen, self._db_pause = self._db_pause, (why, until)
        if (why, until) != seen and (why == "operator" or (extended and seconds > LONG_PAUSE)):
            operator = why == "operator"
            log.warning(
                "channel paused by an operator" if operator else f"channel paused ({why}), as the database says",
                extra={
                    "channel": self.name,
                    "why": why,
                    "until": until.isoformat() if until is not None else "resumed",
                    "by": state.held_by if operator else None,
                    "reason": state.held_reason if operator else (state.pause_reason or state.last_error),
                },
            )

    async def _keep_leases(self) -> None:
        """Keep the leases of this worker's live deliveries; requeue dead workers' expired ones.

        On its own timer: claiming waits while the worker is full or paused, and a
        lease that lapses meanwhile would let any worker (this one included)
        requeue a delivery whose send is under way, and send it twice.
        """
        tick = max(0.05, self.cfg.lease_seconds * LEASE_TICK)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.keep_leases()
            except DB_ERRORS as exc:
                log.warning("cannot renew leases yet; retrying", extra={"channel": self.name, "error": str(exc)})
            except Exception:
                log.exception("lease upkeep failed; retrying", extra={"channel": self.name})

    async def keep_leases(self) -> None:
        """One round of lease upkeep: renew ours that are due, then requeue expired ones of others."""
        lease = self.cfg.lease_seconds
        now = time.monotonic()
        due = [c for c, at in self._inflight.values() if now - at >= lease * LEASE_RENEW]
        requeue = now - self._last_requeue >= lease / 4
        if not due and not requeue:
            return
        async with self.pool.acquire() as conn:
            if due:
                await outbox.renew_leases(conn, [c.id for c in due], [c.claim for c in due], lease)
                for c in due:
                    entry = self._inflight.get(c.id)
                    if entry is not None and entry[0] is c:
                        self._inflight[c.id] = (c, now)
            if requeue:
                # After renewing: only leases nobody renewed are expired. Ours are
                # excluded all the same, should the database have been slower than the margin.
                n = await outbox.requeue_expired_leases(conn, self.name, keep=list(self._inflight))
                self._last_requeue = now
                if n:
                    log.warning("expired leases requeued (a worker died?)", extra={"channel": self.name, "count": n})

    async def _load_alerts(self, conn: asyncpg.Connection, ids: set[int]) -> None:
        # Only the body is cached; the alert's state comes with every claim.
        self._alerts.update(await alert_store.alerts_by_ids(conn, ids))
        if len(self._alerts) > 1000:
            for aid in list(self._alerts)[:500]:
                self._alerts.pop(aid, None)
                for key in [k for k in self._messages if k[0] == aid]:
                    del self._messages[key]

    def _message(self, alert_id: int, alert: Alert, language: str, place: int | None) -> Message:
        key = (alert_id, language, place)
        msg = self._messages.get(key)
        if msg is None:
            area = alert.areas[place] if place is not None and 0 <= place < len(alert.areas) else None
            msg = self.channel.render(alert, language, area)
            self._messages[key] = msg
        return msg

    # -- sending -----------------------------------------------------------

    def _dispatch(self, claimed: Sequence[Claimed]) -> None:
        """Answer what need not be sent; start a send task per chunk of the rest."""
        sendable: list[Claimed] = []
        now = _now()
        for c in claimed:
            if c.alert_state in ("cancelled", "superseded"):
                self._answer(
                    c,
                    Completion(
                        c.id, DeliveryState.SUPERSEDED, error=f"alert {c.alert_state} before sending", claim=c.claim
                    ),
                )
            elif c.alert_expires is not None and c.alert_expires <= now:
                error = f"alert expired at {c.alert_expires.isoformat()}"
                self._answer(c, Completion(c.id, DeliveryState.EXPIRED, error=error, claim=c.claim))
            elif c.alert_id not in self._alerts:
                self._answer(c, Completion(c.id, DeliveryState.FAILED, error="alert row not found", claim=c.claim))
            else:
                sendable.append(c)
        groups: dict[tuple[int, str, int | None], list[Claimed]] = defaultdict(list)
        for c in sendable:
            groups[(c.alert_id, c.language, c.place)].append(c)
        for (alert_id, language, place), items in groups.items():
            message = self._message(alert_id, self._alerts[alert_id], language, place)
            for i in range(0, len(items), self.batch_size):
                chunk = items[i : i + self.batch_size]
                if self._pooled:
                    self._queue.put_nowait((message, chunk))
                    continue
                task = asyncio.create_task(self._send_chunk(message, chunk))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    def _answer(self, c: Claimed, answer: Answer) -> None:
        self._answers.append((c, answer, self._generation or 0))
        self._answered.set()

    def _give_back(self, chunk: Sequence[Claimed], until: float, reason: str) -> None:
        """Return unsent deliveries to the queue until ``until`` (monotonic, capped), no attempt spent."""
        not_before = _now() + timedelta(seconds=min(MAX_GIVE_BACK, max(0.0, until - time.monotonic())))
        for c in chunk:
            self._answer(c, Completion(c.id, DeliveryState.QUEUED, error=reason, not_before=not_before, claim=c.claim))

    def _held_until(self, chunk: Sequence[Claimed]) -> float:
        """Monotonic time until which a pause holds this chunk back (0: not held)."""
        now = time.monotonic()
        held = self._paused_until if self._paused_until > now else 0.0
        for c in chunk:
            until = self._recipient_paused.get(c.address, 0.0)
            if until > now:
                held = max(held, until)
        return held

    async def _sender(self) -> None:
        while True:
            message, chunk = await self._queue.get()
            try:
                await self._send_chunk(message, chunk)
            finally:
                self._queue.task_done()

    async def _stop_senders(self) -> None:
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders = []

    async def _send_chunk(self, message: Message, chunk: Sequence[Claimed]) -> None:
        try:
            await self._send_chunk_inner(message, chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a claim unanswered
            log.exception("send task failed", extra={"channel": self.name})
            for c in chunk:
                self._answer(c, Retry(f"internal error: {exc!r}"))

    async def _send_chunk_inner(self, message: Message, chunk: Sequence[Claimed]) -> None:
        if self.spacing is not None and len(chunk) == 1:
            wait = self.spacing.reserve(chunk[0].address, max_wait=self.max_spacing_wait)
            if wait > self.max_spacing_wait:
                self._give_back(chunk, time.monotonic() + wait, "per-recipient pacing")
                return
            if wait > 0:
                await asyncio.sleep(wait)
        held = self._held_until(chunk)
        if held:
            self._give_back(chunk, held, "bucket paused")
            return
        recipients = [Recipient(c.id, c.address, c.language, c.subscription_id) for c in chunk]
        # Derived from the delivery, so a retry after a lost answer carries the
        # same key and the provider can drop the duplicate.
        key = f"delivery-{chunk[0].id}" if len(chunk) == 1 else f"deliveries-{chunk[0].id}-{len(chunk)}"
        message = message.with_idempotency_key(key)
        if self._pooled:
            # The sender pool is the concurrency limit.
            results = await self._attempt(message, chunk, recipients)
        else:
            async with self._sem:
                results = await self._attempt(message, chunk, recipients)
        if results is None:
            return
        answers, elapsed = results
        for c in chunk:
            # Providers quote the address they refused: masked before it is logged or stored.
            result = redact_reason(answers.get(c.id) or Retry("channel gave no answer for this recipient"), c.address)
            if isinstance(result, Retry) and result.rate_limited:
                # Act at once: sends waiting in this process must not hit the provider too.
                after = result.after if result.after is not None else 1.0
                if result.bucket is None:
                    if self._pause_for(after) and after > LONG_PAUSE:
                        log.warning(
                            "provider paused the channel for longer than a minute",
                            extra={
                                "channel": self.name,
                                "alert_id": c.alert_id,
                                "delivery_id": c.id,
                                "retry_after": after,
                                "until": (_now() + timedelta(seconds=after)).isoformat(),
                                "reason": result.reason,
                            },
                        )
                else:
                    until = time.monotonic() + after
                    self._recipient_paused[result.bucket] = max(self._recipient_paused.get(result.bucket, 0.0), until)
            self._answer(c, result)
            self._emit(c, result, elapsed)

    async def _attempt(
        self, message: Message, chunk: Sequence[Claimed], recipients: list[Recipient]
    ) -> tuple[Mapping[int, SendResult], float] | None:
        """One provider request, with a send slot in hand; None: held back by a pause."""
        # A spent window budget (X: 200 posts per 15 min) can mean minutes: rather
        # than hold claims that long, pause the channel and give them back.
        window_wait = self.bucket.window_wait()
        if window_wait > MAX_WINDOW_WAIT:
            self._pause_for(window_wait)
            self._give_back(chunk, time.monotonic() + window_wait, "window budget spent")
            return None
        # The rate budget is taken right before the request: taken earlier, a
        # wait for the slot could bunch requests up at the provider beyond its
        # per-second limit.
        await self.bucket.acquire()
        held = self._held_until(chunk)
        if held:
            self._give_back(chunk, held, "bucket paused")
            return None
        if self.spacing is not None and len(chunk) == 1:
            early = self.spacing.sending(chunk[0].address)
            if early > 0:
                # The queue for the global budget held the previous request to this
                # recipient past its slot, and this one would follow it too closely.
                # Its token goes unused: waiting with it would bunch requests up.
                self._give_back(chunk, time.monotonic() + early, "per-recipient pacing")
                return None
        started = time.monotonic()
        try:
            answers: Mapping[int, SendResult] = await self.channel.send(message, recipients)
        except Exception as exc:  # a channel must translate errors; this guards against bugs
            log.exception("channel raised instead of answering", extra={"channel": self.name})
            answers = {c.id: Retry(f"channel error: {exc!r}") for c in chunk}
        return answers, time.monotonic() - started

    def _pause_for(self, seconds: float) -> bool:
        """Pause the channel in memory for ``seconds``; True if that ends more than a second later than before."""
        until = time.monotonic() + seconds
        extended = until > self._paused_until + 1.0
        self._paused_until = max(self._paused_until, until)
        return extended

    def _outcome(self, c: Claimed, result: SendResult) -> Completion:
        now = _now()
        if isinstance(result, Delivered):
            return Completion(c.id, DeliveryState.DELIVERED, remote_id=result.remote_id, spent=True, claim=c.claim)
        if isinstance(result, Reject):
            return Completion(c.id, DeliveryState.FAILED, error=result.reason, spent=True, claim=c.claim)
        if result.rate_limited:
            # Not the delivery's failure: no attempt spent, and exactly the wait asked for.
            error = f"rate limited: {result.reason}"
            spent = False
            delay = result.after if result.after is not None else 1.0
            if result.bucket is None:
                # The channel's pause (in memory, in channel_state) holds it back that long;
                # put off by no more than MAX_GIVE_BACK itself, it is due as soon as a resume ends the pause.
                delay = min(delay, MAX_GIVE_BACK)
        else:
            error = result.reason
            spent = True
            attempt = c.attempts + 1
            delay = (
                result.after
                if result.after is not None
                else backoff_delay(attempt, self.cfg.backoff_base, self.cfg.backoff_max)
            )
        next_try = now + timedelta(seconds=delay)
        deadline = self._deadline(c, now)
        if next_try > deadline:
            return self._too_late(c, error, deadline, spent)
        return Completion(c.id, DeliveryState.QUEUED, error=error, not_before=next_try, spent=spent, claim=c.claim)

    def _deadline(self, c: Claimed, now: datetime) -> datetime:
        """Until when ``c`` is worth trying: its alert's expiry, else ``max_age`` after the alert came."""
        if c.alert_expires is not None:
            return c.alert_expires
        return (c.alert_received or now) + timedelta(seconds=self.cfg.max_age)

    def _too_late(self, c: Claimed, error: str, deadline: datetime, spent: bool) -> Completion:
        """The next try would come after the deadline: end the delivery, saying why."""
        if c.alert_expires is not None:
            state = DeliveryState.EXPIRED
            why = f"alert expires at {deadline.isoformat()} before the next try"
        else:
            state = DeliveryState.FAILED
            why = f"gave up: the next try would come after [delivery] max_age ({self.cfg.max_age:g} s)"
        log.warning(
            "delivery ends: its deadline comes before the next try",
            extra={
                "channel": self.name,
                "delivery_id": c.id,
                "alert_id": c.alert_id,
                "attempts": c.attempts + int(spent),
                "state": state,
                "reason": error,
            },
        )
        return Completion(c.id, state, error=f"{why}: {error}", spent=spent, claim=c.claim)

    def _emit(self, c: Claimed, result: SendResult, elapsed: float) -> None:
        if isinstance(result, Delivered):
            self.sent += 1
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "delivered",
                    extra={
                        "channel": self.name,
                        "delivery_id": c.id,
                        "alert_id": c.alert_id,
                        "attempt": c.attempts + 1,
                        "remote_id": result.remote_id,
                        "ms": round(elapsed * 1000, 1),
                    },
                )
            return
        extra = {"channel": self.name, "delivery_id": c.id, "alert_id": c.alert_id, "attempt": c.attempts + 1}
        if isinstance(result, Reject):
            log.warning("delivery rejected", extra={**extra, "reason": result.reason})
        else:
            log.warning("delivery will be retried", extra={**extra, "reason": result.reason, "after": result.after})

    # -- recording ---------------------------------------------------------

    async def _recorder(self) -> None:
        """Write answers as they arrive, all that are waiting in one transaction.

        Never cancelled mid-write: :meth:`_drain` asks it to finish instead.
        """
        while True:
            if not self._answers:
                if self._closing:
                    return
                await self._answered.wait()
                self._answered.clear()
                continue
            if len(self._answers) < self.claim_size and not self._closing:
                await asyncio.sleep(RECORD_DELAY)
            batch, self._answers = self._answers, []
            try:
                await self._record(batch)
            except Exception:
                # A bug or an unexpected database error must not lose answers.
                log.exception("recording outcomes failed; retrying", extra={"channel": self.name})
                self._answers[:0] = batch
                await asyncio.sleep(1.0)

    async def _record(self, done: Sequence[tuple[Claimed, Answer, int]]) -> None:
        outcomes: list[Completion] = []
        unsubscribe: list[int] = []
        channel_pause: tuple[datetime, str, int] | None = None
        recipient_pauses: dict[str, datetime] = {}
        sent = [r for _c, r, _g in done if not isinstance(r, Completion)]
        for c, r, generation in done:
            if isinstance(r, Completion):
                outcomes.append(r)
                continue
            o = self._outcome(c, r)
            outcomes.append(o)
            if isinstance(r, Reject) and r.unsubscribe and c.subscription_id is not None:
                unsubscribe.append(c.subscription_id)
            if isinstance(r, Retry) and r.rate_limited:
                # The provider's wait holds the bucket even when this delivery has ended (deadline).
                until = _now() + timedelta(seconds=r.after if r.after is not None else 1.0)
                if r.bucket is None:
                    if channel_pause is None or until > channel_pause[0]:
                        channel_pause = (until, r.reason, generation)
                else:
                    recipient_pauses[r.bucket] = max(until, recipient_pauses.get(r.bucket, until))
        delivered = any(isinstance(r, Delivered) for r in sent)
        transient = [r for r in sent if isinstance(r, Retry) and not r.rate_limited]
        channel_down = bool(sent) and len(transient) == len(sent)
        backoff: list[float] = []

        # Only write channel health when it changes: the common case is one statement.
        mark_healthy = delivered and self._unhealthy
        simple = not (unsubscribe or channel_pause or recipient_pauses or mark_healthy or channel_down)

        async def write(conn: asyncpg.Connection) -> None:
            if simple:
                await outbox.complete(conn, outcomes)
                return
            async with conn.transaction():
                await outbox.complete(conn, outcomes)
                await outbox.deactivate_subscriptions(conn, unsubscribe, "provider says the recipient is gone")
                if channel_pause is not None:
                    until, reason, generation = channel_pause
                    await outbox.pause_channel(conn, self.name, until, reason, generation=generation)
                for address, until in recipient_pauses.items():
                    await outbox.pause_recipient(conn, self.name, address, until)
                if mark_healthy:
                    await outbox.record_channel_success(conn, self.name)
                elif channel_down:
                    reason = transient[0].reason if isinstance(transient[0], Retry) else ""
                    failures = await outbox.record_channel_failure(conn, self.name, reason)
                    delay = backoff_delay(failures, self.cfg.backoff_base, self.cfg.backoff_max)
                    await outbox.set_channel_backoff(conn, self.name, _now() + timedelta(seconds=delay))
                    backoff[:] = [delay, float(failures)]

        await self._with_db(write)
        if mark_healthy:
            self._unhealthy = False
        elif channel_down:
            self._unhealthy = True
        for c, _r, _g in done:
            self._inflight.pop(c.id, None)
        self._recorded.set()
        if backoff:
            # Sends still waiting in this process go back instead of failing too.
            self._pause_for(backoff[0])
            log.warning(
                "channel failing; backing off",
                extra={"channel": self.name, "failures": int(backoff[1]), "backoff_s": round(backoff[0], 1)},
            )

    async def _with_db(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` until the database takes it: outcomes must not be lost."""
        delay = 0.2
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await fn(conn)
            except DB_ERRORS as exc:
                log.warning("cannot record outcomes yet; retrying", extra={"channel": self.name, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
