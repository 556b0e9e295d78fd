"""Outbox workers: claim deliveries, render, send, record the outcome.

One :class:`OutboxWorker` per enabled channel and process. Workers of several
processes share the queue through ``FOR UPDATE SKIP LOCKED``; they wake on
``NOTIFY deliveries`` (see :class:`Wakeups`) and poll as a fallback. The
channel makes one attempt; every retry decision is taken here and written to
the database (``not_before``, ``channel_state``, ``recipient_pauses``), so a
provider outage slows only its channel and survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from channels.base import Channel, Delivered, Reject, Retry, SendResult
from dispatcher.model import Alert, Message, Recipient
from dispatcher.ratelimit import RecipientSpacing, TokenBucket, backoff_delay
from dispatcher.settings import ChannelSettings, DeliveryConfig
from dispatcher.store import alerts as alert_store
from dispatcher.store import outbox
from dispatcher.store.outbox import Claimed, Outcome

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def _now() -> datetime:
    return datetime.now(UTC)


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
                await conn.add_listener(outbox.NOTIFY_CHANNEL, self._on_notify)
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
        self._task = asyncio.create_task(self._run(), name="listen-deliveries")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.channel = channel
        self.name = channel.name
        self.pool = pool
        self.cfg = delivery
        rate = (settings.rate_per_second if settings else None) or channel.rate_per_second
        interval = settings.per_recipient_interval if settings and settings.per_recipient_interval else None
        interval = interval or channel.per_recipient_interval
        self.batch_size = (settings.batch_size if settings and settings.batch_size else None) or channel.batch_size
        self.bucket = TokenBucket(rate)
        self.spacing = RecipientSpacing(interval) if interval else None
        # Claim about one second of work at a time: a crash loses the outcome
        # records of at most that much, and a higher-priority alert arriving
        # meanwhile is picked at the next claim.
        self.claim_size = max(1, min(delivery.batch_size, int(rate * self.batch_size) or 1))
        self.wakeup = wakeup or asyncio.Event()
        self.on_event = on_event
        self._stopping = asyncio.Event()
        self._sem = asyncio.Semaphore(max(1, delivery.concurrency))
        self._alerts: dict[int, tuple[Alert, str, datetime | None]] = {}
        self._messages: dict[tuple[int, str], Message] = {}
        self.sent = 0

    # -- lifecycle ---------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; the current batch finishes."""
        self._stopping.set()
        self.wakeup.set()

    async def run(self) -> None:
        log.info("worker started", extra={"channel": self.name, "claim_size": self.claim_size})
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
        log.info("worker stopped", extra={"channel": self.name, "sent": self.sent})

    async def _idle(self) -> None:
        self.wakeup.clear()
        wait = self.cfg.poll_interval
        async with self.pool.acquire() as conn:
            state = await outbox.channel_state(conn, self.name)
        now = _now()
        for until in (state.paused_until, state.backoff_until):
            if until and until > now:
                # Paused: a NOTIFY must not wake us early, only stop() may.
                await self._sleep(min((until - now).total_seconds(), 60.0), wake=False)
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=wait)

    async def _sleep(self, seconds: float, *, wake: bool = True) -> None:
        ev = self.wakeup if wake else self._stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout=max(0.0, seconds))

    # -- one round ---------------------------------------------------------

    async def run_once(self) -> bool:
        """Claim and process one batch; False when there was nothing to do."""
        async with self.pool.acquire() as conn:
            state = await outbox.channel_state(conn, self.name)
            now = _now()
            if (state.paused_until and state.paused_until > now) or (state.backoff_until and state.backoff_until > now):
                return False
            await outbox.requeue_expired_leases(conn)
            claimed = await outbox.claim(conn, self.name, self.claim_size, self.cfg.lease_seconds)
            if not claimed:
                return False
            await self._load_alerts(conn, {c.alert_id for c in claimed})
        done: list[tuple[Claimed, SendResult | Outcome]] = []
        try:
            await self._process(claimed, done)
        except asyncio.CancelledError:
            # Shutdown grace ran out: keep what was answered, give the rest back.
            answered = {c.id for c, _r in done}
            await self._record(done)
            async with self.pool.acquire() as conn:
                n = await outbox.release(conn, [c.id for c in claimed if c.id not in answered], "shutdown")
            log.warning("shutdown: unsent deliveries returned to the queue", extra={"channel": self.name, "count": n})
            raise
        await self._record(done)
        return True

    async def _load_alerts(self, conn: asyncpg.Connection, ids: set[int]) -> None:
        # Alert state can change (cancel, supersede) so state is always re-read;
        # the alert body is cached.
        rows = await conn.fetch("SELECT * FROM alerts WHERE id = ANY($1::bigint[])", list(ids))
        for row in rows:
            aid = int(row["id"])
            cached = self._alerts.get(aid)
            alert = cached[0] if cached else alert_store.row_to_alert(row)
            self._alerts[aid] = (alert, str(row["state"]), row["expires"])
        if len(self._alerts) > 1000:
            for aid in list(self._alerts)[:500]:
                self._alerts.pop(aid, None)
                for key in [k for k in self._messages if k[0] == aid]:
                    del self._messages[key]

    def _message(self, alert_id: int, alert: Alert, language: str) -> Message:
        key = (alert_id, language)
        msg = self._messages.get(key)
        if msg is None:
            msg = self.channel.render(alert, language)
            self._messages[key] = msg
        return msg

    async def _process(self, claimed: Sequence[Claimed], done: list[tuple[Claimed, SendResult | Outcome]]) -> None:
        """Send what is still due into ``done``; skipped deliveries get ready Outcomes."""
        sendable: list[Claimed] = []
        now = _now()
        for c in claimed:
            _alert, state, expires = self._alerts[c.alert_id]
            if state in ("cancelled", "superseded"):
                done.append((c, Outcome(c.id, "superseded", error=f"alert {state} before sending")))
            elif expires is not None and expires <= now:
                done.append((c, Outcome(c.id, "expired", error=f"alert expired at {expires.isoformat()}")))
            else:
                sendable.append(c)
        groups: dict[tuple[int, str], list[Claimed]] = defaultdict(list)
        for c in sendable:
            groups[(c.alert_id, c.language)].append(c)
        tasks = []
        for (alert_id, language), items in groups.items():
            message = self._message(alert_id, self._alerts[alert_id][0], language)
            for i in range(0, len(items), self.batch_size):
                tasks.append(self._send_chunk(message, items[i : i + self.batch_size], done))
        await asyncio.gather(*tasks)

    async def _send_chunk(
        self, message: Message, chunk: Sequence[Claimed], done: list[tuple[Claimed, SendResult | Outcome]]
    ) -> None:
        if self.spacing is not None and len(chunk) == 1:
            wait = self.spacing.reserve(chunk[0].address)
            if wait > 0:
                await asyncio.sleep(wait)
        await self.bucket.acquire()
        recipients = [Recipient(c.id, c.address, c.language, c.subscription_id) for c in chunk]
        # Derived from the delivery, so a retry after a lost answer carries the
        # same key and the provider can drop the duplicate.
        key = f"delivery-{chunk[0].id}" if len(chunk) == 1 else f"deliveries-{chunk[0].id}-{len(chunk)}"
        message = dataclasses.replace(message, idempotency_key=key)
        async with self._sem:
            started = time.monotonic()
            try:
                results: dict[int, SendResult] = dict(await self.channel.send(message, recipients))
            except Exception as exc:  # a channel must translate errors; this guards against bugs
                log.exception("channel raised instead of answering", extra={"channel": self.name})
                results = {c.id: Retry(f"channel error: {exc!r}") for c in chunk}
        elapsed = time.monotonic() - started
        for c in chunk:
            result = results.get(c.id) or Retry("channel gave no answer for this recipient")
            done.append((c, result))
            self._emit(c, result, elapsed)

    def _outcome(self, c: Claimed, result: SendResult) -> Outcome:
        now = _now()
        if isinstance(result, Delivered):
            return Outcome(c.id, "delivered", remote_id=result.remote_id)
        if isinstance(result, Reject):
            return Outcome(c.id, "failed", error=result.reason)
        if result.rate_limited:
            after = result.after if result.after is not None else 1.0
            return Outcome(
                c.id,
                "queued",
                error=f"rate limited: {result.reason}",
                not_before=now + timedelta(seconds=after),
                refund_attempt=True,
            )
        if c.attempts >= self.cfg.max_attempts:
            return Outcome(c.id, "failed", error=f"gave up after {c.attempts} attempts: {result.reason}")
        delay = (
            result.after
            if result.after is not None
            else backoff_delay(c.attempts, self.cfg.backoff_base, self.cfg.backoff_max)
        )
        return Outcome(c.id, "queued", error=result.reason, not_before=now + timedelta(seconds=delay))

    def _emit(self, c: Claimed, result: SendResult, elapsed: float) -> None:
        extra = {"channel": self.name, "delivery_id": c.id, "alert_id": c.alert_id, "attempt": c.attempts}
        if isinstance(result, Delivered):
            self.sent += 1
            log.info("delivered", extra={**extra, "remote_id": result.remote_id, "ms": round(elapsed * 1000, 1)})
        elif isinstance(result, Reject):
            log.warning("delivery rejected", extra={**extra, "reason": result.reason})
        else:
            log.warning("delivery will be retried", extra={**extra, "reason": result.reason, "after": result.after})
        if self.on_event:
            self.on_event({**extra, "result": type(result).__name__, "detail": getattr(result, "reason", "")})

    # -- recording ---------------------------------------------------------

    async def _record(self, done: Sequence[tuple[Claimed, SendResult | Outcome]]) -> None:
        outcomes: list[Outcome] = []
        unsubscribe: list[int] = []
        channel_pause: tuple[datetime, str] | None = None
        recipient_pauses: dict[str, datetime] = {}
        sent = [r for _c, r in done if not isinstance(r, Outcome)]
        for c, r in done:
            if isinstance(r, Outcome):
                outcomes.append(r)
                continue
            o = self._outcome(c, r)
            outcomes.append(o)
            if isinstance(r, Reject) and r.unsubscribe and c.subscription_id is not None:
                unsubscribe.append(c.subscription_id)
            if isinstance(r, Retry) and r.rate_limited and o.not_before is not None:
                if r.bucket is None:
                    if channel_pause is None or o.not_before > channel_pause[0]:
                        channel_pause = (o.not_before, r.reason)
                else:
                    recipient_pauses[r.bucket] = max(o.not_before, recipient_pauses.get(r.bucket, o.not_before))
        delivered = any(isinstance(r, Delivered) for r in sent)
        transient = [r for r in sent if isinstance(r, Retry) and not r.rate_limited]
        channel_down = bool(sent) and len(transient) == len(sent)

        async def write(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await outbox.complete(conn, outcomes)
                await outbox.deactivate_subscriptions(conn, unsubscribe, "provider says the recipient is gone")
                if channel_pause is not None:
                    await outbox.pause_channel(conn, self.name, channel_pause[0], channel_pause[1])
                for address, until in recipient_pauses.items():
                    await outbox.pause_recipient(conn, self.name, address, until)
                if delivered:
                    await outbox.record_channel_success(conn, self.name)
                elif channel_down:
                    reason = transient[0].reason if isinstance(transient[0], Retry) else ""
                    failures = await outbox.record_channel_failure(conn, self.name, reason)
                    delay = backoff_delay(failures, self.cfg.backoff_base, self.cfg.backoff_max)
                    await outbox.set_channel_backoff(conn, self.name, _now() + timedelta(seconds=delay))
                    log.warning(
                        "channel failing; backing off",
                        extra={"channel": self.name, "failures": failures, "backoff_s": round(delay, 1)},
                    )

        await self._with_db(write)

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
