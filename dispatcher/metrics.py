"""Prometheus metrics of one daemon (``GET /metrics``, through prometheus-client).

Each :class:`~dispatcher.app.Service` has its own :class:`Metrics` with its own
``CollectorRegistry`` (never the global one), so several daemons in one process (tests,
benches) do not mix their numbers. Two kinds of figures, chosen for several daemons on
one database:

* **What happens in this process** — counters and histograms updated where it happens;
  with several daemons, sum them over instances (``sum by (channel) (rate(...))``):
  ``dispatcher_provider_answers_total{channel, answer}`` (delivered, rejected, failed,
  rate_limited: what providers said, counted by the recorder once it is written),
  ``dispatcher_rate_limited_total{channel}`` (429s and their equivalents),
  ``dispatcher_polls_total{feed, result}`` (ok, not_modified, error), and the histograms
  ``dispatcher_ingest_to_first_delivery_seconds{channel}`` and
  ``…_to_last_delivery_seconds{channel}``: from the alert's receipt to its first and
  last ``delivered`` row on the channel, observed once per (alert, channel) when nothing
  of it is left queued or sending there. Which daemon observes it is decided in the
  database (``delivery_latency``, :func:`dispatcher.store.metrics.settle`), so the sum over
  daemons counts each alert once, with the database's own timestamps.
* **What the database holds** — gauges read at scrape time by :class:`DatabaseCollector`,
  the same on every daemon (aggregate with ``max``, not ``sum``): ``dispatcher_alerts_total``
  by source, kind, message type and status; ``dispatcher_deliveries`` by channel and
  state; ``dispatcher_queue_depth`` by channel and priority; ``dispatcher_channel_paused``
  and ``dispatcher_channel_pause_seconds`` by channel and why (operator, provider, backoff);
  ``dispatcher_database_up``.

Labels hold channel names, feed URLs, states and alert kinds: never an address or a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dispatcher.store import metrics as store
from dispatcher.store import reports
from dispatcher.store.db import DB_ERRORS

log = logging.getLogger(__name__)

# Seconds, from a fast chat message to a slow hour-long fan-out.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# A scrape within this many seconds of the last reuses its database figures.
CACHE_SECONDS = 1.0
# How often a worker asks whether the alerts it delivered for have settled: every second
# while deliveries of the alert come in, then less and less often (a long tail of retries
# must not cost a scan of the alert's deliveries every second), at least once a minute.
SETTLE_EVERY = 1.0
SETTLE_AT_MOST_EVERY = 60.0
ANSWERS = ("delivered", "rejected", "failed", "rate_limited")
PAUSES = ("operator", "provider", "backoff")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A scrape waits at most two seconds for a pooled connection.
_UNAVAILABLE: tuple[type[BaseException], ...] = (*DB_ERRORS, TimeoutError)


@dataclass(slots=True)
class Snapshot:
    """The database's figures at one moment (None: the database did not answer)."""

    alerts: list[asyncpg.Record] = field(default_factory=list)
    deliveries: list[asyncpg.Record] = field(default_factory=list)
    queue: list[asyncpg.Record] = field(default_factory=list)
    pauses: list[reports.Pause] = field(default_factory=list)
    ok: bool = False


class DatabaseCollector(Collector):
    """The gauges read from PostgreSQL; :meth:`Metrics.refresh` fills them before each scrape."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = tuple(channels)
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        up = GaugeMetricFamily("dispatcher_database_up", "1 when the database answered this scrape's queries")
        up.add_metric([], 1.0 if s.ok else 0.0)
        yield up
        if not s.ok:
            return
        alerts = CounterMetricFamily(
            "dispatcher_alerts",
            "Alerts stored, by source, kind, message type and status",
            labels=["source", "kind", "msg_type", "status"],
        )
        for r in s.alerts:
            alerts.add_metric([r["source"], r["kind"] or "", r["msg_type"], r["status"]], float(r["n"]))
        yield alerts
        deliveries = GaugeMetricFamily(
            "dispatcher_deliveries", "Deliveries in the database, by channel and state", labels=["channel", "state"]
        )
        seen = {(r["channel"], r["state"]): float(r["n"]) for r in s.deliveries}
        for channel in sorted({c for c, _ in seen} | set(self.channels)):
            for state in reports.STATES:
                deliveries.add_metric([channel, state], seen.get((channel, state), 0.0))
        yield deliveries
        queue = GaugeMetricFamily(
            "dispatcher_queue_depth",
            "Queued deliveries (due or waiting for a retry), by channel and priority (0 most urgent)",
            labels=["channel", "priority"],
        )
        for r in s.queue:
            queue.add_metric([r["channel"], str(r["priority"])], float(r["n"]))
        yield queue
        paused = GaugeMetricFamily(
            "dispatcher_channel_paused",
            "1 while a channel is paused: by an operator, by the provider (429) or backing off after failures",
            labels=["channel", "why"],
        )
        left = GaugeMetricFamily(
            "dispatcher_channel_pause_seconds",
            "Seconds a channel's pause still lasts (-1: until an operator resumes it)",
            labels=["channel", "why"],
        )
        now_paused: dict[tuple[str, str], reports.Pause] = {(p["channel"], p["why"]): p for p in s.pauses}
        for channel in sorted({p["channel"] for p in s.pauses} | set(self.channels)):
            for why in PAUSES:
                p = now_paused.get((channel, why))
                paused.add_metric([channel, why], 1.0 if p is not None else 0.0)
                if p is not None:
                    seconds = p["seconds_left"]
                    left.add_metric([channel, why], float(seconds) if seconds is not None else -1.0)
        yield paused
        yield left


class Metrics:
    """One daemon's metrics: its registry, the in-process counters and histograms, the database's gauges."""

    def __init__(self, channels: Sequence[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.answers = PromCounter(
            "dispatcher_provider_answers",
            "Providers' answers recorded by this daemon, by channel and answer",
            ["channel", "answer"],
            registry=r,
        )
        self.rate_limited = PromCounter(
            "dispatcher_rate_limited",
            "429s (or the provider's equivalent) answered to this daemon",
            ["channel"],
            registry=r,
        )
        self.polls = PromCounter(
            "dispatcher_polls",
            "Polls of each feed by this daemon: ok, not_modified, error",
            ["feed", "result"],
            registry=r,
        )
        self.first = Histogram(
            "dispatcher_ingest_to_first_delivery_seconds",
            "Seconds from an alert's receipt to its first delivery on a channel (once per alert and channel)",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.last = Histogram(
            "dispatcher_ingest_to_last_delivery_seconds",
            "Seconds from an alert's receipt to its last delivery on a channel (once per alert and channel)",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.database = DatabaseCollector(channels)
        r.register(self.database)
        self._refreshed = 0.0
        self._lock = asyncio.Lock()

    def channel(self, name: str) -> ChannelMetrics:
        """What one channel's worker and recorder update."""
        return ChannelMetrics(self, name)

    def poll(self, feed: str, *, status: int | None, error: str | None) -> None:
        """Count one poll of ``feed``: 304 is not_modified, no error ok, anything else error."""
        result = "not_modified" if status == 304 and error is None else "ok" if error is None else "error"
        self.polls.labels(feed, result).inc()

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """Read the database's figures (at most once per :data:`CACHE_SECONDS`); on failure, say it is down."""
        async with self._lock:
            if time.monotonic() - self._refreshed < CACHE_SECONDS:
                return
            snap = Snapshot()
            try:
                async with pool.acquire(timeout=2) as conn:
                    snap.alerts = await store.alerts_by_kind(conn)
                    snap.deliveries = await store.deliveries_by_state(conn)
                    snap.queue = await store.queue_depth(conn)
                    snap.pauses = await reports.channel_pauses(conn)
                snap.ok = True
            except _UNAVAILABLE as exc:
                log.warning(
                    "metrics: database unavailable", extra={"event": "metrics.database_unavailable", "error": str(exc)}
                )
            self.database.snapshot = snap
            self._refreshed = time.monotonic() if snap.ok else 0.0

    def render(self) -> bytes:
        """The text exposition format of everything registered."""
        return generate_latest(self.registry)


class ChannelMetrics:
    """One channel's share of :class:`Metrics`: answers counted, alerts watched until they settle."""

    def __init__(self, metrics: Metrics, channel: str) -> None:
        self.metrics = metrics
        self.channel = channel
        self._answers = {a: metrics.answers.labels(channel, a) for a in ANSWERS}
        self._rate_limited = metrics.rate_limited.labels(channel)
        self._first = metrics.first.labels(channel)
        self._last = metrics.last.labels(channel)
        # Alerts this daemon delivered for whose last delivery on the channel may not have been
        # made yet: when to look again (monotonic), and the wait after that if still open.
        self._watched: dict[int, tuple[float, float]] = {}

    def answered(self, said: Iterable[str], delivered_alerts: Iterable[int]) -> None:
        """After a write: what the providers said (one name per answer), and the alerts delivered for."""
        # One increment per kind and batch: a counter's increment takes a lock.
        for name, n in Counter(said).items():
            self._answers[name].inc(n)
            if name == "rate_limited":
                self._rate_limited.inc(n)
        soon = time.monotonic() + SETTLE_EVERY
        for alert_id in delivered_alerts:
            due, _wait = self._watched.get(alert_id, (soon, SETTLE_EVERY))
            self._watched[alert_id] = (min(due, soon), SETTLE_EVERY)

    def observe(self, settled: Iterable[store.Settled]) -> None:
        for s in settled:
            self._first.observe(s.first_seconds)
            self._last.observe(s.last_seconds)

    async def settle(self, pool: asyncpg.Pool, *, everything: bool = False) -> None:
        """Observe the watched alerts that have nothing left to send on this channel (those due, or all)."""
        now = time.monotonic()
        due = sorted(a for a, (when, _wait) in self._watched.items() if everything or when <= now)
        if not due:
            return
        async with pool.acquire() as conn:
            still_open, settled = await store.settle(conn, self.channel, due)
        still = set(still_open)
        for alert_id in due:
            if alert_id not in still:
                self._watched.pop(alert_id, None)  # settled here, by another daemon, or nothing delivered
            elif alert_id in self._watched:
                _when, wait = self._watched[alert_id]
                wait = min(wait * 2, SETTLE_AT_MOST_EVERY)
                self._watched[alert_id] = (time.monotonic() + wait, wait)
        self.observe(settled)
        for s in settled:
            log.info(
                "alert settled on channel",
                extra={
                    "event": "delivery.settled",
                    "channel": self.channel,
                    "alert_id": s.alert_id,
                    "delivered": s.delivered,
                    "first_s": round(s.first_seconds, 3),
                    "last_s": round(s.last_seconds, 3),
                },
            )

    async def run(self, pool: asyncpg.Pool) -> None:
        """Settle watched alerts every :data:`SETTLE_EVERY` seconds until cancelled."""
        while True:
            await asyncio.sleep(SETTLE_EVERY)
            try:
                await self.settle(pool)
            except DB_ERRORS as exc:
                log.warning(
                    "metrics: cannot settle yet",
                    extra={"event": "metrics.settle_failed", "channel": self.channel, "error": str(exc)},
                )
            except Exception:
                log.exception(
                    "metrics: settling failed", extra={"event": "metrics.settle_failed", "channel": self.channel}
                )

    async def flush(self, pool: asyncpg.Pool) -> None:
        """A last settle at shutdown (what this daemon finished is observed, if it finished everything)."""
        with contextlib.suppress(*DB_ERRORS):
            await self.settle(pool, everything=True)
