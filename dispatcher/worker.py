"""Outbox workers: claim deliveries, render, send, and hand each answer to the recorder.

One :class:`OutboxWorker` per enabled channel and process. Workers of several
processes share the queue through ``FOR UPDATE SKIP LOCKED`` and the provider's
limits through their :class:`~dispatcher.peers.Share` (an equal part of the global
budget each; on a per-recipient-paced channel, a part of the recipients); they wake
on ``NOTIFY deliveries`` (:class:`~dispatcher.store.wakeups.Wakeups`) and poll as a
fallback. The channel makes one attempt; the worker's parts decide the rest, each in
one place, and write it to the database so that a provider outage slows only its
channel and survives restarts:

* :class:`~dispatcher.gate.SendGate`: whether a request may leave now (the budget,
  per-recipient spacing, the pauses of the provider, of the backoff and of an
  operator, which it follows from ``channel_state``);
* :func:`~dispatcher.retry.decide`: what an answer makes of the delivery (retried
  with backoff until its alert expires or ``[delivery] max_age``, paused, failed,
  done; ``attempts`` counts real provider attempts only);
* :class:`~dispatcher.recorder.Recorder`: writes the decisions, in bulk;
* :class:`~dispatcher.leases.Leases`: keeps the leases of everything claimed and
  not yet recorded, whatever the load.

The worker streams rather than working in rounds: it keeps up to two claims' worth
of deliveries in flight, claims again as soon as one claim's worth has been
recorded, and a slow recipient (per-chat pacing, a slow endpoint) holds only its own
slot, never the batch. Deliveries a pause holds back go back to the queue unsent,
no attempt spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from channels.base import Channel, Delivered, Reject, Retry, SendResult
from dispatcher.delivery_config import DeliveryConfig
from dispatcher.gate import SendGate
from dispatcher.leases import Leases
from dispatcher.metrics import ChannelMetrics
from dispatcher.model import Alert, Message, Recipient
from dispatcher.peers import Share
from dispatcher.privacy import redact_reason
from dispatcher.recorder import Answer, Recorder
from dispatcher.retry import Decision, Held, RetryPolicy, decide, unsendable
from dispatcher.settings import ChannelSettings
from dispatcher.store import alerts as alert_store
from dispatcher.store import outbox
from dispatcher.store.db import DB_ERRORS
from dispatcher.store.outbox import Claimed

# Seconds between two reads of channel_state (pauses, backoff and holds set elsewhere)
# while the worker has work in flight or is paused, and while it is idle.
STATE_EVERY = 0.25
STATE_IDLE_EVERY = 1.0
# Alert bodies kept for rendering; beyond it the oldest half is forgotten.
MAX_CACHED_ALERTS = 1000

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _about(channel: str, chunk: Sequence[Claimed]) -> dict[str, Any]:
    """A log line's fields about a chunk of deliveries: the first's ids, and how many."""
    first = chunk[0] if chunk else None
    return {
        "channel": channel,
        "alert_id": first.alert_id if first else None,
        "delivery_id": first.id if first else None,
        "deliveries": len(chunk),
    }


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Wait until any of ``events`` is set, at most ``timeout`` seconds."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def reply_message(reply: Mapping[str, Any], language: str) -> Message:
    """The message of a bot's reply delivery: its text, the whole payload in ``extra["reply"]``."""
    return Message(text=str(reply.get("text") or ""), language=language, extra={"reply": reply})


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
        metrics: ChannelMetrics | None = None,
    ) -> None:
        self.channel = channel
        # The daemon's /metrics (dispatcher.metrics): answers counted, latencies observed.
        self.metrics = metrics
        self.name = channel.name
        self.pool = pool
        self.cfg = delivery

        def configured(key: str) -> Any:
            # [channels.<name>] overrides the channel's built-in default (same names on both).
            return (getattr(settings, key) if settings is not None else None) or getattr(channel, key)

        rate: float = configured("rate_per_second")
        interval: float | None = configured("per_recipient_interval")
        self.batch_size: int = configured("batch_size")
        # The channel's budget as configured (the dashboard's limits and estimates).
        self.rate = rate
        self.rate_window: tuple[int, float] | None = configured("rate_window")
        # This process's share of the channel's budget (dispatcher.peers), applied to the gate.
        self.share = share or Share()
        # Claim about one second of work at a time, and hold at most about a
        # second's worth (two claims at least): a crash leaves at most that much to
        # lease expiry, and a higher-priority alert is claimed within about a second.
        # A claim holds at least one full provider request (LINE: 500 recipients a multicast).
        self.claim_size = max(self.batch_size, min(delivery.batch_size, int(rate * self.batch_size) or 1))
        # Fast channels keep up to a second of work (at most 1,000 deliveries, or 10,000 on a
        # channel that sends many per request) in flight, so that claiming and recording (a
        # commit each) never leave the sends idle.
        per_second = int(rate) if self.batch_size == 1 else int(rate * self.batch_size)
        self.max_inflight = max(2 * self.claim_size, min(per_second, 1000 if self.batch_size == 1 else 10_000))
        self.concurrency: int = max(1, configured("concurrency") or delivery.concurrency)
        # Channels without per-recipient pacing are driven by a fixed pool of sender
        # coroutines fed by a queue: no task and no slot to wait for per delivery.
        # Paced channels (Telegram) keep a task per send, so a chat's pacing wait
        # never holds one of the pool's slots; the gate's send slots limit them.
        self._pooled = not interval
        self.gate = SendGate(
            self.name,
            rate=rate,
            window=configured("rate_window"),
            interval=interval,
            # Waiting in memory for a recipient's slot holds one in-flight slot; going
            # back to the queue costs a round trip and a wake-up per delivery, which
            # thrashes when few chats get many messages. So wait in memory up to a
            # second or two (within the lease).
            max_spacing_wait=min(max(1.0, 2.0 * (interval or 0.0)), delivery.lease_seconds / 3),
            slots=None if self._pooled else self.concurrency,
        )
        self.policy = RetryPolicy(delivery.backoff_base, delivery.backoff_max, delivery.max_age)
        self.leases = Leases(pool, self.name, delivery.lease_seconds)
        self.recorder = Recorder(
            pool,
            self.name,
            policy=self.policy,
            batch=self.claim_size,
            gate=self.gate,
            leases=self.leases,
            metrics=metrics,
        )
        self.wakeup = wakeup or asyncio.Event()
        self._stopping = asyncio.Event()
        self._alerts: dict[int, Alert] = {}
        # Rendered once per (alert, language, place): the place is the area of the
        # alert that concerns the recipient, which the message leads with.
        self._messages: dict[tuple[int, str, int | None], Message] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[tuple[Message, Sequence[Claimed]]] = asyncio.Queue()
        self._senders: list[asyncio.Task[None]] = []
        self.sent = 0

    # -- lifecycle ---------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; what is in flight finishes and is recorded."""
        self._stopping.set()
        self.gate.wake()
        self.wakeup.set()

    @property
    def paused_seconds(self) -> float:
        """Seconds this worker's channel-wide pause still lasts (0: not paused)."""
        return self.gate.paused_seconds

    async def run(self) -> None:
        """Work until :meth:`stop` (or cancellation, when the shutdown grace runs out)."""
        log.info(
            "worker started",
            extra={
                "event": "worker.started",
                "channel": self.name,
                "claim_size": self.claim_size,
                "inflight": self.max_inflight,
            },
        )
        recorder = asyncio.create_task(self.recorder.run(), name=f"recorder-{self.name}")
        keeper = asyncio.create_task(self.leases.run(), name=f"leases-{self.name}")
        follower = asyncio.create_task(self._follow(), name=f"state-{self.name}")
        background = [keeper, follower]
        if self.metrics is not None:
            background.append(asyncio.create_task(self.metrics.run(self.pool), name=f"metrics-{self.name}"))
        if self._pooled:
            self._senders = [
                asyncio.create_task(self._sender(), name=f"sender-{self.name}-{i}") for i in range(self.concurrency)
            ]
        try:
            await self._work(recorder)
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.metrics is not None:
                await self.metrics.flush(self.pool)
        log.info("worker stopped", extra={"event": "worker.stopped", "channel": self.name, "sent": self.sent})

    async def _work(self, recorder: asyncio.Task[None]) -> None:
        """Claim and send until stopped; then finish what is in flight, or give it back if cancelled."""
        try:
            while not self._stopping.is_set():
                try:
                    worked = await self.run_once()
                except DB_ERRORS as exc:
                    log.warning(
                        "database unavailable; worker waits",
                        extra={"event": "worker.database_unavailable", "channel": self.name, "error": str(exc)},
                    )
                    await self._sleep(1.0)
                    continue
                except Exception:
                    # A bug must not silently kill the channel: log it, wait, go on.
                    # Claimed rows stay "sending" until their lease expires.
                    log.exception("worker round failed", extra={"event": "worker.round_failed", "channel": self.name})
                    await self._sleep(5.0)
                    continue
                if not worked:
                    await self._idle()
            if self._sends:
                await asyncio.gather(*list(self._sends), return_exceptions=True)
            await self._queue.join()
            await self._stop_senders()
            await self.recorder.drain(recorder)
        except asyncio.CancelledError:
            # Shutdown grace ran out: keep what was answered, give the rest back.
            for task in list(self._sends):
                task.cancel()
            await asyncio.gather(*list(self._sends), return_exceptions=True)
            # Chunks still queued stay held and are released below.
            await self._stop_senders()
            await self.recorder.drain(recorder)
            unanswered = self.leases.held()
            if unanswered:
                async with self.pool.acquire() as conn:
                    n = await outbox.release(
                        conn, [c.id for c in unanswered], [c.claim for c in unanswered], "shutdown"
                    )
                log.warning(
                    "shutdown: unsent deliveries returned to the queue",
                    extra={"event": "worker.returned_at_shutdown", "channel": self.name, "count": n},
                )
            raise

    async def _idle(self) -> None:
        # Paused: a NOTIFY must not wake us early, only the pause's end or stop() may.
        if await self.gate.wait_while_paused():
            return
        wait = self.cfg.poll_interval
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
        free = self.max_inflight - len(self.leases)
        if free < max(1, self.claim_size // 2):
            if self.wakeup.is_set() and await self._overtake():
                return True
            # Full: wait until the recorder has made room, or something new is queued.
            self.recorder.recorded.clear()
            await _first(self.recorder.recorded, self.wakeup, timeout=1.0)
            return True
        self._apply_share()
        if self.gate.generation is None:
            # Nothing is claimed before the channel's state (a pause, a hold) is known,
            # nor before what a dead predecessor left "sending" is back in the queue:
            # taken over at once, it goes out in priority order with the rest.
            await self.follow_state()
            await self.leases.keep()
        if self.gate.paused_seconds > 0:
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
            # Held from now on: the lease keeper renews what the leases hold.
            self.leases.hold(claimed, claimed_at)
            missing = {c.alert_id for c in claimed if not c.is_reply} - set(self._alerts)
            if missing:
                # Only the body is cached; the alert's state comes with every claim.
                self._alerts.update(await alert_store.alerts_by_ids(conn, missing))
                self._forget_old_alerts()
        self._dispatch(claimed)
        return True

    async def _overtake(self) -> bool:
        """Full, and something was queued: claim what is more urgent than the least urgent in flight.

        At most one claim beyond the in-flight limit; the gate's send slots go most urgent
        first, so a CRITICAL alert leaves next, not after the bot replies already held.
        """
        self.wakeup.clear()
        held = self.leases.held()
        if not held or self.gate.paused_seconds > 0:
            return False
        least = max(c.priority for c in held)
        if least <= 0:
            return False
        async with self.pool.acquire() as conn:
            claimed_at = time.monotonic()
            claimed = await outbox.claim(
                conn,
                self.name,
                self.claim_size,
                self.cfg.lease_seconds,
                partition=self._partition(),
                more_urgent_than=least,
            )
            if not claimed:
                return False
            self.leases.hold(claimed, claimed_at)
            missing = {c.alert_id for c in claimed if not c.is_reply} - set(self._alerts)
            if missing:
                self._alerts.update(await alert_store.alerts_by_ids(conn, missing))
        log.info("urgent deliveries overtake the work in flight", extra={"channel": self.name, "count": len(claimed)})
        self._dispatch(claimed)
        return True

    def _forget_old_alerts(self) -> None:
        if len(self._alerts) > MAX_CACHED_ALERTS:
            for aid in list(self._alerts)[: MAX_CACHED_ALERTS // 2]:
                self._alerts.pop(aid, None)
                for key in [k for k in self._messages if k[0] == aid]:
                    del self._messages[key]

    def _apply_share(self) -> None:
        """Take this daemon's part of the channel's budget when the number of daemons changed."""
        live = max(1, self.share.live)
        hold = self.gate.share(live)
        if hold is not None:
            log.info(
                "channel budget shared",
                extra={
                    "event": "worker.budget_shared",
                    "channel": self.name,
                    "daemons": live,
                    "rate_per_second": round(self.gate.bucket.rate, 3),
                    "hold_s": round(hold, 2),
                },
            )

    def _partition(self) -> tuple[int, int] | None:
        """Recipients this process serves on a per-recipient-paced channel: (daemons, rank)."""
        if self.gate.spacing is None or self.share.live <= 1:
            return None
        return self.share.live, self.share.rank

    async def _follow(self) -> None:
        """Follow channel_state: pauses, backoff and holds set by other processes and by operators."""
        while True:
            busy = bool(len(self.leases)) or self.gate.paused_seconds > 0
            await asyncio.sleep(STATE_EVERY if busy else STATE_IDLE_EVERY)
            try:
                await self.follow_state()
            except DB_ERRORS as exc:
                log.warning(
                    "cannot read channel state yet",
                    extra={"event": "worker.state_unreadable", "channel": self.name, "error": str(exc)},
                )
            except Exception:
                log.exception(
                    "following channel state failed", extra={"event": "worker.state_failed", "channel": self.name}
                )

    async def follow_state(self) -> None:
        """Read the channel's row of channel_state once and take it (see :mod:`dispatcher.gate`)."""
        async with self.pool.acquire() as conn:
            state = await outbox.channel_state(conn, self.name)
        if state.failures or state.backoff_until is not None:
            self.recorder.unhealthy = True
        if self.gate.follow(state):
            self.wakeup.set()

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
        """Answer what need not be sent; queue a send per chunk of the rest."""
        sendable: list[Claimed] = []
        now = _now()
        for c in claimed:
            decision = unsendable(c, now, alert_known=c.is_reply or c.alert_id in self._alerts)
            if decision is None:
                sendable.append(c)
            else:
                self._answer(c, decision)
        # A batch sent before under a durable key is tried again as that batch (see _batch_key).
        durable = self.channel.durable_batch_keys
        groups: dict[tuple[int, str, int | None, str | None], list[Claimed]] = defaultdict(list)
        for c in sendable:
            if c.reply is not None:
                # A bot's reply (dispatcher/residents): its own message, one recipient.
                self._queue_send(reply_message(c.reply, c.language), [c])
                continue
            groups[(c.alert_id, c.language, c.place, c.retry_key if durable else None)].append(c)
        for (alert_id, language, place, _key), items in groups.items():
            message = self._message(alert_id, self._alerts[alert_id], language, place)
            for i in range(0, len(items), self.batch_size):
                self._queue_send(message, items[i : i + self.batch_size])

    def _queue_send(self, message: Message, chunk: Sequence[Claimed]) -> None:
        if self._pooled:
            self._queue.put_nowait((message, chunk))
            return
        task = asyncio.create_task(self._send_chunk(message, chunk))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _answer(self, c: Claimed, decision: Decision) -> None:
        self.recorder.add(Answer(c, decision, self.gate.generation or 0))

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
            await self._send(message, chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a claim unanswered
            log.exception("send task failed", extra={"event": "delivery.send_failed", **_about(self.name, chunk)})
            self._decide(chunk, {}, Retry(f"internal error: {exc!r}"), 0.0)

    async def _send(self, message: Message, chunk: Sequence[Claimed]) -> None:
        """Through the gate, one provider request for ``chunk``; every answer decided and handed on."""
        recipients = [Recipient(c.id, c.address, c.language, c.subscription_id) for c in chunk]
        if self.channel.durable_batch_keys:
            try:
                key = await self._batch_key(chunk)
            except DB_ERRORS as exc:
                # Never sent without its key on record: back to the queue, no attempt spent.
                now = _now()
                for c in chunk:
                    self._answer(c, decide(Held(1.0, f"batch key not stored: {exc}"), c, now, self.policy))
                return
        else:
            # Derived from the delivery, so a retry after a lost answer carries the
            # same key and the provider can drop the duplicate.
            key = f"delivery-{chunk[0].id}" if len(chunk) == 1 else f"deliveries-{chunk[0].id}-{len(chunk)}"
        message = message.with_idempotency_key(key)
        held = await self.gate.admit(chunk)
        if held is not None:
            # Back to the queue unsent, no attempt spent.
            now = _now()
            for c in chunk:
                self._answer(c, decide(held, c, now, self.policy))
            return
        started = time.monotonic()
        try:
            answers: Mapping[int, SendResult] = await self.channel.send(message, recipients)
        except Exception as exc:  # a channel must translate errors; this guards against bugs
            log.exception(
                "channel raised instead of answering",
                extra={"event": "delivery.channel_raised", **_about(self.name, chunk)},
            )
            answers = {c.id: Retry(f"channel error: {exc!r}") for c in chunk}
        finally:
            self.gate.release()
        self._decide(chunk, answers, Retry("channel gave no answer for this recipient"), time.monotonic() - started)

    async def _batch_key(self, chunk: Sequence[Claimed]) -> str:
        """The provider's idempotency key for ``chunk``: the stored one, or a new UUID stored first.

        A key is reused only when the chunk is exactly the deliveries still holding it
        (queued or sending): every request made with a key then went to all of its
        present holders, so a provider's "already accepted" (LINE's 409) proves that
        each of them was in the accepted request. A batch that comes back split (claims
        cut it, some rows were cancelled) gets a new key: at worst a duplicate of what
        was accepted, never a message counted as sent that was not.
        """
        keys = {c.retry_key for c in chunk}
        async with self.pool.acquire() as conn:
            old = next(iter(keys)) if len(keys) == 1 else None
            if old is not None and await outbox.retry_key_holders(conn, old) == len(chunk):
                return old
            key = str(uuid.uuid4())
            await outbox.assign_retry_key(conn, [c.id for c in chunk], [c.claim for c in chunk], key)
        return key

    def _decide(
        self, chunk: Sequence[Claimed], answers: Mapping[int, SendResult], missing: SendResult, elapsed: float
    ) -> None:
        now = _now()
        for c in chunk:
            # Providers quote the address they refused: masked before it is logged or stored.
            result = redact_reason(answers.get(c.id) or missing, c.address)
            decision = decide(result, c, now, self.policy)
            if decision.pause is not None:
                self.gate.take(decision.pause, c)
            self._answer(c, decision)
            self._log(c, result, decision, elapsed)
            if isinstance(result, Reject) and result.moved_to:
                task = asyncio.create_task(self._move(c, result.moved_to))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    async def _move(self, c: Claimed, new_address: str) -> None:
        """The recipient moved (a group became a supergroup): record its new address, send there again."""
        try:
            async with self.pool.acquire() as conn:
                moved = await outbox.move_recipient(conn, c.id, new_address)
        except DB_ERRORS as exc:
            log.warning("could not follow a moved recipient", extra={"channel": self.name, "error": str(exc)})
            return
        log.info(
            "recipient moved; message queued again",
            extra={"channel": self.name, "delivery_id": c.id, "new_delivery_id": moved},
        )

    def _log(self, c: Claimed, result: SendResult, decision: Decision, elapsed: float) -> None:
        extra: dict[str, Any] = {"channel": self.name, "delivery_id": c.id, "alert_id": c.alert_id}
        if isinstance(result, Delivered):
            self.sent += 1
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "delivered",
                    extra={
                        **extra,
                        "event": "delivery.delivered",
                        "attempt": c.attempts + 1,
                        "remote_id": result.remote_id,
                        "ms": round(elapsed * 1000, 1),
                    },
                )
            return
        if isinstance(result, Reject):
            log.warning(
                "delivery rejected",
                extra={**extra, "event": "delivery.rejected", "attempt": c.attempts + 1, "reason": result.reason},
            )
        else:
            limited = result.rate_limited
            log.warning(
                "delivery rate limited; will be retried" if limited else "delivery will be retried",
                extra={
                    **extra,
                    "event": "delivery.rate_limited" if limited else "delivery.retry",
                    "attempt": c.attempts + 1,
                    "reason": result.reason,
                    "after": result.after,
                },
            )
        if decision.late:
            log.warning(
                "delivery ends: its deadline comes before the next try",
                extra={
                    **extra,
                    "event": "delivery.deadline",
                    "attempts": c.attempts + int(decision.spent),
                    "state": str(decision.state),
                    "reason": decision.error,
                },
            )
