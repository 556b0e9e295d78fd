"""Wiring and lifecycle of the daemon.

:class:`Service` builds every part from :class:`~dispatcher.settings.Settings`:
the database (embedded or ``DATABASE_URL``) and its migrations, the channels
from the registry, the outbox workers, the polled sources on an apscheduler
``AsyncIOScheduler`` and the web server. Stopping (SIGTERM) stops polling,
lets in-flight sends finish for up to ``delivery.shutdown_grace`` seconds,
returns everything else to the queue for the next start, and exits cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import asyncpg
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from channels import REGISTRY, load_channel_class
from channels.base import Channel, ChannelContext, http_session
from channels.templates import Templates, local_codes_for
from dispatcher.config import ConfigError
from dispatcher.context import ServiceContext
from dispatcher.metrics import Metrics
from dispatcher.peers import Peers
from dispatcher.pipeline import Pipeline
from dispatcher.publication.tokens import Links
from dispatcher.publication.wiring import Publication, links_for, start_for
from dispatcher.reconcile import Report
from dispatcher.residents.levels import alert_class
from dispatcher.residents.telegram import TelegramBot
from dispatcher.settings import Settings
from dispatcher.store import db
from dispatcher.store.posts import StorePostLog
from dispatcher.store.quotas import StoreQuotaBook
from dispatcher.store.wakeups import Wakeups
from dispatcher.targeting import default_targeter
from dispatcher.web.context import ChannelInfo, WebContext
from dispatcher.worker import OutboxWorker
from sources.base import PolledSource, PushedSource, SourceSetup
from sources.registry import REGISTRY as SOURCES

log = logging.getLogger(__name__)


def sd_notify(state: str) -> None:
    """Tell systemd about our state (Type=notify); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)


class Service:
    """The daemon."""

    def __init__(self, settings: Settings, *, dsn: str | None = None) -> None:
        self.settings = settings
        self._dsn = dsn
        self.pool: asyncpg.Pool | None = None
        self.channels: dict[str, Channel] = {}
        # One HTTP session for every channel that speaks HTTP (channels.base.Channel.http).
        self.http: aiohttp.ClientSession | None = None
        self.workers: list[OutboxWorker] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        # (source, every seconds, offset seconds past the minute)
        self.polled: list[tuple[PolledSource, float, float]] = []
        self.pushed: list[PushedSource] = []
        self.scheduler: AsyncIOScheduler | None = None
        self.runner: web.AppRunner | None = None
        self.wakeups: Wakeups | None = None
        self.peers: Peers | None = None
        self.pipeline: Pipeline | None = None
        self.context: ServiceContext | None = None
        self.stopped = asyncio.Event()
        self.web_url: str | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._relocation: asyncio.Task[None] | None = None
        # The public site, feeds and subscription forms ([publication]), and the signed links mails carry.
        self.links: Links | None = None
        self.publication: Publication | None = None
        # This daemon's /metrics, in a registry of its own (several daemons may share a process).
        self.metrics: Metrics | None = None
        # The residents' Telegram bot ([channels.telegram] updates), if on.
        self.telegram_bot: TelegramBot | None = None

    @property
    def dsn(self) -> str:
        assert self._dsn is not None
        return self._dsn

    async def start(self) -> None:
        s = self.settings
        self._dsn = self._dsn or await db.resolve_dsn(
            s.database_url(), s.service.state_dir, s.database.embedded_database
        )
        conn = await db.connect(self.dsn)
        try:
            applied = await db.migrate(conn)
        finally:
            await conn.close()
        if applied:
            log.info("database migrated", extra={"applied": ",".join(applied)})
        self.pool = await db.create_pool(self.dsn, min_size=s.database.pool_min, max_size=s.database.pool_max)
        if s.publication.enabled:
            self.links = await links_for(self.pool, s.publication, s.service.public_url)
        await self._open_channels()
        if not self.channels:
            log.warning("no channel is enabled: alerts are stored but reach nobody (see [channels.*])")
        # Every channel serves its subscriptions (a webhook subscription is a
        # subscriber's own endpoint); broadcast channels also post once per alert.
        broadcast = [n for n, ch in self.channels.items() if ch.broadcast]
        city_codes = tuple(s.service.area_codes)
        self.pipeline = Pipeline(
            self.pool,
            targeter=default_targeter(s.geo),
            channels=list(self.channels),
            broadcast_channels=broadcast,
            classify=lambda alert: alert_class(alert, city_codes=city_codes, defaults=s.residents),
        )
        self.metrics = Metrics(list(self.channels))
        self.context = ServiceContext(self.pool, self.pipeline, metrics=self.metrics)
        self.wakeups = Wakeups(self.dsn)
        self.wakeups.start()
        self.peers = Peers(self.pool, list(self.channels))
        await self.peers.start()
        for name, channel in self.channels.items():
            worker = OutboxWorker(
                channel,
                self.pool,
                delivery=s.delivery,
                settings=s.channels.get(name),
                wakeup=self.wakeups.event(name),
                share=self.peers.share_for(name),
                metrics=self.metrics.channel(name),
            )
            self.workers.append(worker)
            self._worker_tasks.append(asyncio.create_task(worker.run(), name=f"worker-{name}"))
        self._relocation = asyncio.create_task(self._relocate(), name="relocate")
        await self._start_bots()
        self._start_sources()
        if self.links is not None:  # the public site, in memory and its static copy; the forms' needs
            self.publication = await start_for(s, self.pool, self.dsn, self.links, self.channels)
        if s.web.enabled:
            await self._start_web()
        # What exists now (modules, geo layers, templates, channels, pools) lives as long
        # as the daemon: take it out of the cyclic collector's sight. A full collection
        # over it stalls the event loop for tens of milliseconds, long enough for paced
        # requests to bunch up at a provider beyond its per-second limit (a 429).
        gc.collect()
        gc.freeze()
        sd_notify("READY=1")
        self._watchdog = asyncio.create_task(self._watchdog_loop(), name="watchdog")
        log.info(
            "service started",
            extra={
                "channels": ",".join(self.channels) or "none",
                "web": self.web_url or "off",
                "database": "embedded" if not s.database_url() else "external",
            },
        )

    def _build_channels(self, session: aiohttp.ClientSession | None = None) -> dict[str, Channel]:
        """The enabled channels, built but not opened (no I/O), sharing ``session``."""
        s = self.settings.service
        templates = Templates.load(local_area_codes=local_codes_for(s.area_codes))
        posts = StorePostLog(self.pool) if self.pool is not None else None
        quotas = StoreQuotaBook(self.pool) if self.pool is not None else None
        context = ChannelContext(
            templates=templates, public_url=s.public_url, session=session, posts=posts, links=self.links, quotas=quotas
        )
        return {cs.name: load_channel_class(cs.name)(cs.options, context) for cs in self.settings.enabled_channels()}

    async def _open_channels(self) -> None:
        self.http = http_session()
        for name, channel in self._build_channels(self.http).items():
            await channel.open()
            health = await channel.healthcheck()
            if not health.ok:
                # Keep the channel: deliveries queue up and go out when it recovers.
                log.warning("channel unhealthy at start", extra={"channel": name, "detail": health.detail})
            self.channels[name] = channel

    def _build_sources(self) -> None:
        """Every source the registry knows, built from its own section (no I/O).

        A polled source comes with its schedule, a pushed one with its routes (added
        by the web app); both talk to the service only through :class:`ServiceContext`.
        """
        from dispatcher.targeting import geo_index

        s = self.settings
        setup = SourceSetup(
            channels=frozenset(self.channels),
            web=s.web.enabled,
            districts=lambda: {d.code: d.name for d in geo_index(s.geo).districts},
        )
        for section, cls in SOURCES.items():
            for source in cls.from_config(s.sources[section], setup):
                if isinstance(source, PolledSource):
                    self.polled.append((source, source.schedule.every, source.schedule.offset))
                if isinstance(source, PushedSource):
                    self.pushed.append(source)

    def _start_sources(self) -> None:
        self._build_sources()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        for source, every, offset in self.polled:
            self.scheduler.add_job(
                self._poll,
                _trigger(every, offset),
                args=[source],
                id=source.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=30,
                next_run_time=datetime.now(UTC) + timedelta(seconds=0.5),
            )
        self.scheduler.start()

    async def _poll(self, source: PolledSource) -> None:
        assert self.context is not None
        try:
            await source.poll(self.context)
        except (asyncpg.PostgresConnectionError, OSError) as exc:
            log.warning("poll skipped: database unavailable", extra={"source": source.name, "error": str(exc)})
        except Exception:
            log.exception("poll failed", extra={"source": source.name})

    async def _start_bots(self) -> None:
        """The district channels and the residents' Telegram bot (``[channels.telegram] updates``)."""
        channel = self.channels.get("telegram")
        if channel is None:
            return
        from dispatcher.residents.wiring import sync_district_channels, telegram_bot

        assert self.pool is not None
        await sync_district_channels(self.settings, self.pool, channel.config)
        if getattr(channel.config, "updates", "off") == "off":
            return
        self.telegram_bot = telegram_bot(self.settings, self.pool, channel.config, channel.context.templates)
        self.telegram_bot.start()

    def web_context(self) -> WebContext:
        """What the web server reads of the daemon (started: the pool exists)."""
        assert self.pool is not None
        s = self.settings
        # Pushed sources (webhooks) bring their own routes.
        routes = [r for source in self.pushed for r in source.routes(self.context)] if self.context else []
        if self.telegram_bot is not None and self.telegram_bot.config.updates == "webhook":
            from dispatcher.residents.telegram import route

            routes.append(route(self.telegram_bot))
        routes += self._line_routes()
        from dispatcher.console.wiring import console_setup

        console = None
        if self.context is not None and self.pipeline is not None:
            console = console_setup(s, self.pool, self.context, self.pipeline, self.channels)
        return WebContext(
            pool=self.pool,
            site_name=s.service.name,
            body_timeout=s.web.body_timeout_seconds,
            channels=tuple(self.channels),
            known_channels=tuple(sorted(REGISTRY)),
            peers=self.peers,
            routes=routes,
            accounts=s.console,
            secure_cookies=s.service.public_url.startswith("https://"),
            console=console,
            publication=self.publication,
            dsn=self.dsn,
            channel_info=self._channel_info(),
            metrics=self.metrics,
            reconcile=self.reconcile,
        )

    def _channel_info(self) -> dict[str, ChannelInfo]:
        """Each enabled channel's limits as its worker applies them, its price and quota hook if any."""
        out: dict[str, ChannelInfo] = {}
        for w in self.workers:
            rate = w.rate if w.rate_window is None else min(w.rate, w.rate_window[0] / w.rate_window[1])
            cfg = w.channel.config
            price = None
            if hasattr(cfg, "price_per_post"):  # X bills each post (channels/x.py, ``dispatcher x-cost``)
                price = Decimal(
                    cfg.price_per_post_with_link if getattr(cfg, "include_link", False) else cfg.price_per_post
                )
            quota = getattr(w.channel, "remaining_quota", None)  # a provider with a monthly quota (LINE)
            out[w.name] = ChannelInfo(rate * w.batch_size, w.batch_size, w.channel.broadcast, price, quota)
        return out

    async def reconcile(self, since: datetime) -> Report:
        """What providers confirm against what the database calls delivered since ``since`` (/reconcile)."""
        from dispatcher.reconcile import reconcile_with

        assert self.pool is not None
        async with self.pool.acquire() as conn:
            return await reconcile_with(self.settings, conn, since=since)

    def _line_routes(self) -> list[web.RouteDef]:
        """``POST /hooks/line`` when the LINE channel is enabled with its channel secret."""
        channel = self.channels.get("line")
        secret = getattr(getattr(channel, "config", None), "channel_secret", None)
        if channel is None or not secret or self.pool is None:
            return []
        from dispatcher.residents.directory import GeoDirectory
        from dispatcher.residents.service import ResidentService
        from dispatcher.residents.texts import load_ui_texts
        from dispatcher.targeting import geo_index
        from dispatcher.web.line_hook import LineHook

        s = self.settings
        residents = ResidentService(
            self.pool,
            directory=GeoDirectory(geo_index(s.geo)),
            ui=load_ui_texts(),
            templates=Templates.load(local_area_codes=local_codes_for(s.service.area_codes)),
            public_url=s.service.public_url,
        )
        return LineHook(pool=self.pool, channel_secret=secret, residents=residents).routes()

    async def _start_web(self) -> None:
        from dispatcher.web.app import create_app
        from dispatcher.web.hygiene import server_options

        app = create_app(self.web_context())
        self.runner = web.AppRunner(app, access_log=None, **server_options(self.settings.web))
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.web.host, self.settings.web.port)
        await site.start()
        port = self.runner.addresses[0][1]
        self.web_url = f"http://{self.settings.web.host}:{port}"

    async def _relocate(self) -> None:
        """Residents' locations are matched to districts once; redo it if the layers changed."""
        from dispatcher.locations import relocate_all
        from dispatcher.residents.service import relocate_kept_points
        from dispatcher.targeting import geo_index

        assert self.context is not None and self.pool is not None
        try:
            index = await asyncio.to_thread(geo_index, self.settings.geo)
            async with self.context.exclusive("relocate") as mine:
                if not mine:
                    return
                async with self.pool.acquire() as conn:
                    n = await relocate_all(conn, index)
                    n += await relocate_kept_points(conn, index)
            if n:
                log.info("subscriber locations matched to new geo layers", extra={"count": n, "layers": index.version})
        except Exception:
            log.exception("relocating subscribers failed; old districts stay in use until the next start")

    async def _watchdog_loop(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if not usec:
            return
        while True:
            await asyncio.sleep(usec / 2_000_000)
            assert self.pool is not None
            try:
                async with self.pool.acquire(timeout=5) as conn:
                    await db.ping(conn)
            except Exception as exc:
                # Not kicking the watchdog lets systemd restart a wedged daemon;
                # a database outage alone is survivable, so keep kicking then.
                log.warning("watchdog: database check failed", extra={"error": str(exc)})
            sd_notify("WATCHDOG=1")

    async def stop(self) -> None:
        """Graceful stop; see the module docstring. Stopping twice is harmless."""
        if self.stopped.is_set():
            return
        sd_notify("STOPPING=1")
        log.info("stopping: polling off, finishing in-flight sends")
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.telegram_bot is not None:
            await self.telegram_bot.stop()
        for worker in self.workers:
            worker.stop()
        if self._worker_tasks:
            _done, pending = await asyncio.wait(self._worker_tasks, timeout=self.settings.delivery.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("shutdown grace expired; unsent work stays queued", extra={"workers": len(pending)})
        if self.runner is not None:
            await self.runner.cleanup()
        if self.publication is not None:
            await self.publication.site.stop()
        if self.peers is not None:
            # Leave once the workers are done, so the others take over this share at once.
            await self.peers.stop()
        if self.wakeups is not None:
            await self.wakeups.stop()
        for source in [p[0] for p in self.polled] + list(self.pushed):
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        if self.http is not None:
            await self.http.close()
            self.http = None
        for background in (self._watchdog, self._relocation):
            if background is not None and not background.done():
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await background
        if self.pool is not None:
            # A connection some task still holds must not keep the daemon from stopping.
            try:
                await asyncio.wait_for(self.pool.close(), timeout=10)
            except TimeoutError:
                log.warning("database connections still held at stop: closed without waiting")
                self.pool.terminate()
        gc.unfreeze()  # in case this process goes on (tests, benches)
        self.stopped.set()
        log.info("stopped")


def preflight(settings: Settings) -> None:
    """Build what :meth:`Service.start` builds from the configuration, without network or database.

    ``dispatcher check-config`` runs it, so that a file it accepts is one ``run`` starts
    with: the templates, every enabled channel's object, the configured geo layers and
    the sources (their schedules too). Raises :class:`ConfigError` naming the last file.
    """
    where = settings.files[-1] if settings.files else "configuration"
    service = Service(settings)
    try:
        service.channels = service._build_channels()
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"{where}: [channels] cannot build the enabled channels: {exc}") from None
    try:
        default_targeter(settings.geo)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{where}: [geo] cannot load the layers: {exc}") from None
    telegram = service.channels.get("telegram")
    if telegram is not None:
        from dispatcher.residents.wiring import district_follows

        try:
            district_follows(settings, telegram.config)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    from dispatcher.console.messages import MessagesError, load_messages

    try:
        load_messages(settings.console.messages or None)
    except MessagesError as exc:
        raise ConfigError(f"{where}: [console] messages: {exc}") from None
    try:
        service._build_sources()
        for _source, every, offset in service.polled:
            _trigger(every, offset)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"{where}: cannot build the sources: {exc}") from None


def _trigger(every: float, offset: float) -> BaseTrigger:
    """The schedule of a source polled every ``every`` seconds, ``offset`` past the minute."""
    if every >= 60 and every % 60 == 0:
        # Whole minutes: run at a fixed second past the minute (JMA: :20).
        return CronTrigger(minute=f"*/{int(every // 60)}", second=int(offset), timezone="UTC")
    return IntervalTrigger(seconds=every, timezone="UTC")


async def run_forever(service: Service) -> None:
    """Start, wait for SIGTERM/SIGINT, stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    await stop.wait()
    await service.stop()
