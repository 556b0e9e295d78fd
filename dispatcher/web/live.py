"""The live dashboard's one listener: delivery progress pushed by the database, shared by every browser.

Every statement that inserts or changes deliveries sends one ``delivery_progress``
notification naming the alerts it touched (migration 0012). :class:`LiveProgress`
listens on one connection of its own, coalesces what arrives for
:data:`COALESCE_SECONDS`, reads the counts of just those alerts once
(:func:`dispatcher.store.progress.progress_counts`) and the channels' pauses, derives
each channel's health and each alert's estimate (:mod:`dispatcher.web.estimates`) and
publishes one new version. However many dashboards watch, the database does the same
work; each Server-Sent Events stream (:func:`live_events`, ``GET /api/live``) sends
its browser the alerts changed since the version it last sent.

The ``publication`` notification of every stored or changed alert (migration 0011)
brings new rows and alerts' own states (superseded, cancelled). Without
notifications (a lost connection) the hub re-reads every tracked alert each second
until it is back, so a dashboard is late, never wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp_sse import sse_response

from dispatcher.store import progress, reports
from dispatcher.web.auth import session_alive
from dispatcher.web.context import WEB, ChannelInfo
from dispatcher.web.estimates import alert_estimates, channel_health

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "delivery_progress"
# Stored or changed alerts (new rows, a supersession, a cancellation): schema.sql's 0011 trigger.
ALERTS_CHANNEL = "publication"
# Notifications gathered into one read: at thousands of deliveries a second one read
# serves hundreds of statements, and a browser still sees a change within a second.
COALESCE_SECONDS = 0.2
# Health (rates, pauses' countdown) is refreshed this often even when nothing changes.
IDLE_SECONDS = 1.0
# The dashboard's rows; alerts with work still queued are tracked besides.
ROWS = 50
RATE_WINDOW = 10.0
ERROR_WINDOW = 300.0
# How often a stream checks that its session is still live.
SESSION_CHECK = 30.0


class LiveProgress:
    """The shared, versioned view of delivery progress (see the module docstring)."""

    def __init__(
        self, pool: asyncpg.Pool, dsn: str | None, channel_info: dict[str, ChannelInfo], rows: int = ROWS
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.info = channel_info
        self.rows = rows
        self.version = 0
        self.heads: dict[int, progress.AlertHead] = {}
        self.counts: progress.Progress = {}
        self.changed: dict[int, int] = {}  # alert id → version it last changed in
        self.alerts_view: dict[int, dict[str, Any]] = {}
        self.health: dict[str, Any] = {}
        self.pauses: list[reports.Pause] = []
        self.reads = 0  # count reads so far (one per batch of notifications)
        self.notifications = 0
        self._dirty: set[int] = set()
        self._alerts_dirty: set[int] = set()
        self._everything = True
        self._wake = asyncio.Event()
        self._published = asyncio.Event()
        self._closing = False
        self._listening = False
        # channel → (monotonic time, delivered so far, failed so far) samples, for rates.
        self._done: dict[str, deque[tuple[float, int, int]]] = {}
        self._totals: dict[str, list[int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._lock = asyncio.Lock()
        self._json_cache: tuple[int, int, str] | None = None
        self._busy_since: dict[str, float] = {}  # channel → since when work has waited on it

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Read what the dashboard shows now, then listen and publish until :meth:`stop`."""
        async with self._lock:
            await self._refresh()
        self._tasks = [
            asyncio.create_task(self._listen(), name="listen-delivery-progress"),
            asyncio.create_task(self._run(), name="live-progress"),
        ]

    async def stop(self) -> None:
        """Stop listening; every stream waiting for a version ends."""
        self._closing = True
        self._published.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def closing(self) -> bool:
        return self._closing

    def _on_notify(self, _conn: Any, _pid: int, _name: str, payload: str) -> None:
        self.notifications += 1
        if payload == "*":
            self._everything = True
        else:
            self._dirty.update(int(x) for x in payload.split(",") if x.isdigit())
        self._wake.set()

    def _on_alert(self, _conn: Any, _pid: int, _name: str, payload: str) -> None:
        """An alert stored or changed (migration 0011's ``publication`` notification): its row and state."""
        if payload.isdigit():
            self._alerts_dirty.add(int(payload))
            self._wake.set()

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            held: Any = None
            try:
                if self.dsn is not None:
                    conn = await asyncpg.connect(self.dsn)
                else:
                    held = await self.pool.acquire()
                    conn = held
            except Exception as exc:  # the hub re-reads every second meanwhile
                log.warning("LISTEN delivery_progress failed, retrying", extra={"error": str(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, ev=lost: ev.set())
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                await conn.add_listener(ALERTS_CHANNEL, self._on_alert)
                self._listening = True
                self._everything = True  # what changed while nobody listened
                self._wake.set()
                await lost.wait()
                log.warning("LISTEN delivery_progress lost; reconnecting")
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                    await conn.remove_listener(ALERTS_CHANNEL, self._on_alert)
                if held is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.release(held)
                else:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_SECONDS)
            if self._wake.is_set():
                await asyncio.sleep(COALESCE_SECONDS)  # let the batch gather
            self._wake.clear()
            if not self._listening:
                self._everything = True
            try:
                async with self._lock:
                    await self._refresh()
            except Exception as exc:  # the database is away: try again at the next tick
                log.warning("live dashboard read failed", extra={"error": str(exc)})
                await asyncio.sleep(IDLE_SECONDS)

    # -- reading -----------------------------------------------------------------

    async def fresh_view(self) -> dict[str, Any]:
        """:meth:`view` after reading the page's rows now: a page shows what was committed before it was
        asked for (a page load reads, as the dashboard always did; the streams still share the reads)."""
        async with self._lock:
            await self._refresh(page=True)
        return self.view()

    async def _refresh(self, *, page: bool = False) -> None:
        everything, self._everything = self._everything, False
        dirty, self._dirty = self._dirty, set()
        alerts_dirty, self._alerts_dirty = self._alerts_dirty, set()
        before = dict(self.heads)
        async with self.pool.acquire() as conn:
            if everything:
                ids = set(await progress.recent_alert_ids(conn, self.rows))
                ids |= set(await progress.busy_alert_ids(conn)) | set(self.counts)
            elif page:
                ids = dirty | set(await progress.recent_alert_ids(conn, self.rows))
            else:
                ids = dirty
            ids |= alerts_dirty
            new = [i for i in ids if i not in self.heads]
            # Heads of alerts first seen, of alerts that changed (superseded, cancelled), of a page's rows.
            wanted = set(new) | alerts_dirty | (ids if page or everything else set())
            heads = await progress.alert_heads(conn, sorted(wanted)) if wanted else {}
            self.heads.update(heads)
            counts = await progress.progress_counts(conn, sorted(i for i in ids if i in self.heads)) if ids else {}
            self.pauses = await reports.channel_pauses(conn)
        self.reads += 1
        version = self.version + 1
        for alert_id, h in heads.items():
            if before.get(alert_id) != h:
                self.changed[alert_id] = version
        for alert_id, per in counts.items():
            old = self.counts.get(alert_id)
            if old != per:
                # An alert already there when the hub started brings its past, not a rate.
                self._account(old or {}, per, first=old is None and (not self._started or alert_id not in new))
                self.counts[alert_id] = per
                self.changed[alert_id] = version
        self._started = True
        self._prune()
        now = time.monotonic()
        self._sample(now)
        rates = self._rates(now)
        paces = self._paces(now, rates)
        self.health = channel_health(self.info, self.counts, self.heads, self.pauses, rates, paces)
        views = alert_estimates(self.info, self.counts, self.heads, self.pauses, paces)
        for alert_id, view in views.items():
            if self.alerts_view.get(alert_id) != view:
                self.alerts_view[alert_id] = view
                self.changed[alert_id] = version
        self.version = version
        self._published.set()
        self._published = asyncio.Event()

    def _account(self, old: dict[str, dict[str, int]], new: dict[str, dict[str, int]], *, first: bool) -> None:
        """Add what newly went delivered or failed to each channel's running totals (for rates)."""
        if first:
            return  # an alert seen for the first time on an old page: its past is no rate
        for channel, states in new.items():
            before = old.get(channel, {})
            totals = self._totals.setdefault(channel, [0, 0])
            totals[0] += max(0, states.get("delivered", 0) - before.get("delivered", 0))
            totals[1] += max(0, states.get("failed", 0) - before.get("failed", 0))

    def _sample(self, now: float) -> None:
        for channel in set(self.info) | set(self._totals):
            delivered, failed = self._totals.get(channel, [0, 0])
            samples = self._done.setdefault(channel, deque())
            samples.append((now, delivered, failed))
            while len(samples) > 2 and samples[1][0] < now - ERROR_WINDOW:
                samples.popleft()

    def _rates(self, now: float) -> dict[str, tuple[float, float | None]]:
        """Per channel: deliveries a second over the last :data:`RATE_WINDOW` seconds, and
        the share failed over the last :data:`ERROR_WINDOW` (None: nothing finished)."""
        out: dict[str, tuple[float, float | None]] = {}
        for channel, samples in self._done.items():
            t1, d1, f1 = samples[-1]
            recent = next((s for s in samples if s[0] >= now - RATE_WINDOW), samples[-1])
            older = samples[0]
            span = t1 - recent[0]
            rate = (d1 + f1 - recent[1] - recent[2]) / span if span > 0.5 else 0.0
            done = d1 + f1 - older[1] - older[2]
            out[channel] = (rate, (f1 - older[2]) / done if done else None)
        return out

    def _paces(self, now: float, rates: dict[str, tuple[float, float | None]]) -> dict[str, float]:
        """The rates measured over a window in which the channel had work waiting throughout:
        the pace to expect (a window that began idle, or a ramp-up, says nothing of it)."""
        out: dict[str, float] = {}
        for channel, (rate, _errors) in rates.items():
            pending = any(c.get(channel, {}).get("queued", 0) for c in self.counts.values())
            if not pending:
                self._busy_since.pop(channel, None)
                continue
            since = self._busy_since.setdefault(channel, now)
            if now - since >= RATE_WINDOW + COALESCE_SECONDS:
                out[channel] = rate
        return out

    def _prune(self) -> None:
        """Forget alerts off the page with nothing pending, beyond the page's rows."""
        if len(self.counts) <= 4 * self.rows:
            return
        keep = set(sorted(self.heads, reverse=True)[: self.rows])
        for alert_id in list(self.counts):
            pending = any(c["queued"] + c["sending"] for c in self.counts[alert_id].values())
            if alert_id not in keep and not pending:
                for table in (self.counts, self.heads, self.changed, self.alerts_view):
                    table.pop(alert_id, None)

    # -- what the streams send -------------------------------------------------------

    def alert_ids(self) -> list[int]:
        """The dashboard's rows: newest first, the page's number of them and every busy one."""
        newest = sorted(self.heads, key=lambda i: (self.heads[i]["received_at"], i), reverse=True)
        shown = newest[: self.rows]
        busy = [i for i in newest[self.rows :] if i in self.alerts_view and self.alerts_view[i]["pending"]]
        return shown + busy

    def view(self, since: int | None = None) -> dict[str, Any]:
        """What changed after version ``since`` (None: everything), JSON-ready."""
        ids = [i for i in self.alert_ids() if since is None or self.changed.get(i, 0) > since]
        return {
            "version": self.version,
            "alerts": [{**self.heads[i], **self.alerts_view.get(i, {})} for i in ids if i in self.heads],
            "channels": self.health,
            "pauses": self.pauses,
            "degraded": reports.health(self.pauses) == "degraded",
        }

    def changes_json(self, since: int) -> tuple[str, int]:
        """:meth:`view` after ``since`` as JSON text, and its version; serialized once for every stream
        that was at the same version (nearly all of them)."""
        cached = self._json_cache
        if cached is not None and cached[0] == since and cached[1] == self.version:
            return cached[2], cached[1]
        text = json.dumps(self.view(since=since), ensure_ascii=False)
        self._json_cache = (since, self.version, text)
        return text, self.version

    async def published_after(self, version: int, timeout: float) -> bool:
        """Wait until a version newer than ``version`` exists (False: ``timeout`` passed or closing)."""
        if self.version > version:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._published.wait(), timeout)
        return self.version > version and not self._closing


LIVE: web.AppKey[LiveProgress] = web.AppKey("live", LiveProgress)


async def live_events(request: web.Request) -> web.StreamResponse:
    """``GET /api/live``: Server-Sent Events, a ``snapshot`` then a ``progress`` per new version.

    The session is checked again every :data:`SESSION_CHECK` seconds: once it has ended
    (logout, a disabled account, a timeout) the stream says ``logout`` and closes.
    """
    hub = request.app[LIVE]
    async with sse_response(request, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}) as stream:
        seen = hub.version
        checked = time.monotonic()
        try:
            await stream.send(json.dumps(hub.view(), ensure_ascii=False), event="snapshot", id=str(seen))
            while stream.is_connected() and not hub.closing:
                if time.monotonic() - checked > SESSION_CHECK:
                    checked = time.monotonic()
                    if not await session_alive(request):
                        await stream.send('{"login": "/login"}', event="logout")
                        break
                if not await hub.published_after(seen, 15.0):
                    continue
                text, seen = hub.changes_json(seen)
                await stream.send(text, event="progress", id=str(seen))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
    return stream


def install(app: web.Application) -> None:
    """Give ``app`` the hub, started with it and stopped before its streams are waited for."""

    async def start(app: web.Application) -> None:
        ctx = app[WEB]
        hub = LiveProgress(ctx.pool, ctx.dsn, dict(ctx.channel_info))
        app[LIVE] = hub
        if ctx.pool is not None:  # (pages rendered without a database, in unit tests, need no hub running)
            await hub.start()

    async def stop(app: web.Application) -> None:
        if LIVE in app:
            await app[LIVE].stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
