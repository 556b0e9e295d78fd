"""``dispatcher demo``: the real daemon against local stand-ins, on the embedded defaults.

It starts a JMA feed stand-in replaying real JMA telegrams (``config/demo``),
a Telegram Bot API stand-in, a LINE Messaging API stand-in and an SMTP server, subscribes a handful of demo
residents of 沼津市, and runs the real :class:`~dispatcher.app.Service` against
a fresh ``dispatcher_demo`` database. Every alert and delivery can be watched in
the log and on the dashboard. With ``--once`` it publishes everything at once,
waits until every expected message has reached the stand-ins, prints a summary
and exits 0 only if all did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

from channels.bluesky import BlueskyConfig
from channels.email import EmailConfig
from channels.line import LineConfig
from channels.mastodon import MastodonConfig
from channels.telegram import TelegramConfig
from channels.x import XConfig
from dispatcher import demostate, status
from dispatcher.app import Service
from dispatcher.console.demo_accounts import create_demo_accounts
from dispatcher.console.demo_accounts import describe as describe_accounts
from dispatcher.settings import ChannelSettings, Settings
from dispatcher.standins.bluesky import BlueskyStandIn
from dispatcher.standins.jma_feed import JmaFeedStandIn
from dispatcher.standins.line_api import LineStandIn
from dispatcher.standins.mastodon import MastodonStandIn
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.standins.x_api import OAuth1Credentials, XStandIn
from dispatcher.store import db, reports
from dispatcher.store.subscribers import subscribe

log = logging.getLogger("dispatcher.demo")

DEMO_DATABASE = "dispatcher_demo"
# The chat of the scripted conversation with the bot (--once).
DEMO_CHAT = "300001"
NUMAZU = "2220300"


@dataclass(frozen=True, slots=True)
class DemoSubscriber:
    name: str
    channel: str
    address: str
    language: str
    test_recipient: bool = False


SUBSCRIBERS = (
    DemoSubscriber("山田 花子", "telegram", "100001", "ja"),
    DemoSubscriber("John Smith", "telegram", "100002", "en"),
    DemoSubscriber("グエン・ヴァン・アン", "email", "nguyen@example.jp", "ja-easy"),
    DemoSubscriber("鈴木 一郎", "email", "suzuki@example.jp", "ja"),
    DemoSubscriber("Maria Silva", "line", "U" + "6b" * 16, "en"),
    DemoSubscriber("沼津市 危機管理課 (test)", "telegram", "900001", "ja", test_recipient=True),
    DemoSubscriber("沼津市 危機管理課 (test)", "email", "kikikanri-test@example.jp", "ja", test_recipient=True),
)


@dataclass(frozen=True, slots=True)
class DemoTelegram:
    """A replayed telegram and who in the demo must receive it."""

    file: str
    feed: str
    why: str
    public: bool  # an actual alert for 沼津市: every subscriber; exercise: test recipients only
    reaches_numazu: bool = True


SCENARIO = (
    DemoTelegram("noto2024_VXSE53_WInfoL.xml", "eqvol", "real 震源・震度情報 naming 沼津市", public=True),
    DemoTelegram("20231009072652_07314633_VTSE41.xml", "eqvol", "real 津波注意報 for 静岡県", public=True),
    DemoTelegram("32-35_01_03_240613_VXSE53.xml", "eqvol", "JMA exercise (訓練) sample", public=False),
    DemoTelegram(
        "15_17_01_250123_VPWW54.xml", "regular", "warning for another prefecture", public=True, reaches_numazu=False
    ),
)


def expected_messages() -> Counter[tuple[str, str]]:
    """(channel, address) → how many messages the scenario must deliver there."""
    want: Counter[tuple[str, str]] = Counter()
    for t in SCENARIO:
        if not t.reaches_numazu:
            continue
        for s in SUBSCRIBERS:
            if t.public or s.test_recipient:
                want[(s.channel, s.address)] += 1
    return want


LINE_SECRET = "demo-line-channel-secret"  # noqa: S105 - the demo's own, against the stand-in
_X_DEMO = ("demo-consumer-key", "demo-consumer-secret", "demo-access-token", "demo-access-secret")


def chat_help(standin_url: str) -> str:
    """How to talk to the demo's bot as a resident (printed at start)."""
    root = standin_url.removesuffix("/bot")
    return (
        "\nTalk to the residents' bot (Telegram stand-in at " + root + "):\n"
        f"  dispatcher standin-chat {root} 300002        # interactive: text, /commands, button numbers\n"
        f'  curl -s -XPOST {root}/_standin/chats/300002/type -d \'{{"text": "/start"}}\'\n'
        f'  curl -s -XPOST {root}/_standin/chats/300002/press -d \'{{"data": "L:en"}}\'\n'
        f"  curl -s {root}/_standin/chats/300002/messages\n"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def _fresh_database(settings: Settings) -> str:
    base = await db.resolve_dsn(settings.database_url(), settings.service.state_dir, "postgres")
    conn = await db.connect(base)
    try:
        await db.recreate_database(conn, DEMO_DATABASE)
    finally:
        await conn.close()
    return with_database(base, DEMO_DATABASE)


class Demo:
    def __init__(self, settings: Settings, *, once: bool, port: int, interval: float) -> None:
        self.base_settings = settings
        self.once = once
        # Links in messages must lead to the port actually served: with 0, pick it now.
        self.port = port or _free_port()
        self.interval = interval
        self.feed = JmaFeedStandIn()
        self.telegram = TelegramStandIn()
        self.smtp = SmtpStandIn()
        # The city's LINE official account (ライトプラン: 5,000 messages a month).
        self.line = LineStandIn(quota=5000)
        # The city's social media accounts (broadcast channels: one post per public alert).
        self.mastodon = MastodonStandIn()
        self.x = XStandIn(OAuth1Credentials(*_X_DEMO))
        self.bluesky = BlueskyStandIn("numazu-bousai.bsky.social", "demo-app-password")
        self.service: Service | None = None
        self.started = time.monotonic()

    def _settings(self) -> Settings:
        s = self.base_settings
        host, port = self.smtp.host, self.smtp.port
        channels = {
            "telegram": ChannelSettings(
                "telegram",
                enabled=True,
                options=TelegramConfig(
                    token="123456:DEMO",  # noqa: S106 - the stand-in accepts any token
                    base_url=self.telegram.base_url,
                    # The residents' bot, long-polling the stand-in (dispatcher standin-chat talks to it).
                    updates="polling",
                    poll_timeout=10,
                ),
            ),
            "email": ChannelSettings(
                "email",
                enabled=True,
                options=EmailConfig(host=host, port=port, sender="沼津市 防災情報 <bousai@city.numazu.example>"),
            ),
            "line": ChannelSettings(
                "line",
                enabled=True,
                options=LineConfig(
                    token="demo-line-token",  # noqa: S106 - the stand-in accepts any token
                    channel_secret=LINE_SECRET,
                    base_url=self.line.base_url,
                    plan="light",
                ),
            ),
            "mastodon": ChannelSettings(
                "mastodon",
                enabled=True,
                options=MastodonConfig(base_url=self.mastodon.base_url, token="demo"),  # noqa: S106 (any token)
            ),
            "x": ChannelSettings("x", enabled=True, options=XConfig(self.x.base_url, *_X_DEMO)),
            "bluesky": ChannelSettings(
                "bluesky",
                enabled=True,
                options=BlueskyConfig(self.bluesky.base_url, "numazu-bousai.bsky.social", "demo-app-password"),
            ),
        }
        return dataclasses.replace(
            s,
            sources={
                **s.sources,
                "jma": dataclasses.replace(
                    s.sources["jma"],
                    feeds=tuple(self.feed.feed_url(f) for f in ("regular", "extra", "eqvol", "other")),
                    poll_seconds=2,
                ),
            },
            web=dataclasses.replace(s.web, port=self.port),
            service=dataclasses.replace(s.service, public_url=f"http://{s.web.host}:{self.port}"),
            delivery=dataclasses.replace(s.delivery, poll_interval=0.5),
            channels=channels,
        )

    async def run(self) -> int:
        await self.feed.start()
        await self.telegram.start()
        await self.smtp.start()
        await self.line.start()
        for social in (self.mastodon, self.x, self.bluesky):
            await social.start()
        settings = self._settings()
        dsn = await _fresh_database(settings)
        conn = await db.connect(dsn)
        try:
            await db.migrate(conn)
            for s in SUBSCRIBERS:
                await subscribe(
                    conn,
                    channel=s.channel,
                    address=s.address,
                    areas=[NUMAZU],
                    language=s.language,
                    display_name=s.name,
                    test_recipient=s.test_recipient,
                )
            staff = await create_demo_accounts(conn)
        finally:
            await conn.close()
        log.info("demo: %d subscribers in 沼津市 (%s)", len(SUBSCRIBERS), NUMAZU)
        self.service = Service(settings, dsn=dsn)
        await self.service.start()
        print(describe_accounts(staff, self.service.web_url), flush=True)
        # `dispatcher status` and the other commands read this demo's database while it runs.
        if not settings.database_url():
            demostate.write(
                settings.service.state_dir,
                database=DEMO_DATABASE,
                web_url=self.service.web_url or "",
                read_back={"mastodon": self.mastodon.base_url},
            )
        print(self._line_help(), flush=True)
        log.info("demo: dashboard at %s, public site at %s/public/  (Ctrl-C to stop)", *[self.service.web_url] * 2)
        print(chat_help(self.telegram.base_url), flush=True)
        publisher = asyncio.create_task(self._publish())
        try:
            if self.once:
                ok = await self._wait_for_expected(timeout=90.0)
                ok = await self._converse() and ok
            else:
                await self._wait_for_signal()
                ok = self._check()[0]
        finally:
            demostate.remove(settings.service.state_dir)
            publisher.cancel()
            await self._summary()
            await self.service.stop()
            await self.telegram.stop()
            await self.smtp.stop()
            await self.line.stop()
            for social in (self.mastodon, self.x, self.bluesky):
                await social.stop()
            await self.feed.stop()
        return 0 if ok else 1

    async def _publish(self) -> None:
        folder = resources.files("config") / "demo" / "telegrams"
        for i, t in enumerate(SCENARIO):
            if i and not self.once:
                await asyncio.sleep(self.interval)
            body = (folder / t.file).read_bytes()
            self.feed.publish(t.feed, t.file, body, title=t.why, updated=datetime.now(UTC))
            log.info("demo: JMA stand-in publishes %s (%s)", t.file, t.why)

    async def _converse(self) -> bool:
        """A resident talks to the bot (scripted): the transcript is printed; True if it went as expected."""
        import aiohttp

        from dispatcher.standins.telegram_chat import StandinChat

        script = ["/start", "3", "1", "2", "Heda", "4", "1", "4", "/latest", "/test", "/stop"]
        async with aiohttp.ClientSession() as http:
            chat = StandinChat(self.telegram.base_url, DEMO_CHAT, http)
            for line in script:
                await chat.say(line)
                await chat.news(wait=5.0)
        print("\nDemo conversation with the bot (chat " + DEMO_CHAT + "):\n" + "\n".join(chat.transcript), flush=True)
        said = "\n".join(chat.transcript)
        return "All set" in said and "Your data has been deleted" in said

    def _received(self) -> Counter[tuple[str, str]]:
        got: Counter[tuple[str, str]] = Counter()
        for m in self.telegram.messages:
            if str(m.chat_id) == DEMO_CHAT:
                continue  # the bot's conversation, not an alert delivery
            got[("telegram", str(m.chat_id))] += 1
        for mail in self.smtp.messages:
            for rcpt in mail.rcpt_tos:
                got[("email", rcpt)] += 1
        for d in self.line.deliveries:
            if d.endpoint == "multicast" and d.delivered:
                got[("line", d.to)] += 1
        return got

    def _line_help(self) -> str:
        """How to talk to the LINE bot of the demo from another terminal."""
        hook = f"{self.service.web_url if self.service else ''}/hooks/line"
        return (
            "LINE official account (stand-in): talk to the bot from another terminal with\n"
            f"  .venv/bin/python -m dispatcher.standins.line_webhook --hook {hook}"
            f" --secret {LINE_SECRET} --api {self.line.base_url}\n"
            "  then type !follow, tap the numbered buttons, share !location 35.0956 138.8636, type /latest"
        )

    def _check(self) -> tuple[bool, Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        want, got = expected_messages(), self._received()
        return want == got, want, got

    async def _wait_for_expected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        first_logged = False
        while time.monotonic() < deadline:
            ok, _want, got = self._check()
            if got and not first_logged:
                first_logged = True
                log.info("demo: first delivery %.2f s after start", time.monotonic() - self.started)
            if ok:
                # Give a stray extra message a moment to show up before declaring success.
                await asyncio.sleep(1.0)
                return self._check()[0]
            await asyncio.sleep(0.2)
        return False

    async def _wait_for_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    async def _summary(self) -> None:
        assert self.service is not None and self.service.pool is not None
        async with self.service.pool.acquire() as conn:
            alerts = await reports.recent_alerts(conn, 20)
            totals = await reports.totals(conn)
            docs = await reports.documents_summary(conn)
        ok, want, got = self._check()
        first = min((m.at for m in self.telegram.messages), default=None)
        lines = [
            "",
            "Demo summary",
            f"  telegrams fetched: {sum(docs.values())} ({', '.join(f'{n} {k}' for k, n in sorted(docs.items()))})",
            f"  alerts ingested:   {len(alerts)}",
            "",
            f"  {'channel':<10} {'queued':>7} {'sending':>8} {'delivered':>10} {'failed':>7} {'expected':>9} "
            f"{'received':>9}",
        ]
        for ch in ("telegram", "email", "line"):
            t = totals.get(ch, dict.fromkeys(reports.STATES, 0))
            exp = sum(n for (c, _a), n in want.items() if c == ch)
            rec = sum(n for (c, _a), n in got.items() if c == ch)
            lines.append(
                f"  {ch:<10} {t['queued']:>7} {t['sending']:>8} {t['delivered']:>10} {t['failed']:>7} {exp:>9} {rec:>9}"
            )
        lines.append(
            f"  posts: mastodon {len(self.mastodon.posted)}, x {len(self.x.live)} (cost {self.x.cost} USD),"
            f" bluesky {len(self.bluesky.posts)}"
        )
        lines.append("")
        lines.append(status.format_table(alerts))
        if first is not None:
            lines.append(f"\n  first Telegram delivery {first - self.started:.2f} s after `dispatcher demo` started")
        lines.append(f"\n  result: {'OK: every expected delivery was made' if ok else 'FAILED: deliveries missing'}")
        if not ok:
            for key in sorted(set(want) | set(got)):
                if want[key] != got[key]:
                    lines.append(f"    {key[0]} {key[1]}: expected {want[key]}, received {got[key]}")
        print("\n".join(lines), flush=True)
