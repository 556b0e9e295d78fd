"""The municipal broadcast system feeds the same channels: webhook and transcript feed, end to end.

The daemon runs in-process with its web server on a free port, against the Telegram Bot
API and SMTP stand-ins and a real PostgreSQL. Broadcasts are POSTed signed, as the
console would; the transcript feed is a small local Atom server. Subscribers follow
district codes of the (illustrative) district layer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dispatcher.app import Service
from dispatcher.settings import load
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store.alerts import decompress
from dispatcher.store.subscribers import subscribe
from sources.broadcast.examples import cap_body, json_body, signed_headers
from tests.integration.test_path import wait_settled

SECRET = "broadcast-test-secret-6f1c-0123456789"
JST = timezone(timedelta(hours=9))
REPO = Path(__file__).resolve().parents[2]
EVACUATE = "こちらは、防災ぬまづです。戸田地区に土砂災害の避難指示を発令しました。直ちに安全な場所へ避難してください。"
MISSING = "こちらは、防災ぬまづです。行方不明者のお知らせです。大岡にお住まいの八十歳の男性が、昨日から行方不明です。"


class AtomFeed:
    """A transcript feed: Atom with ETag; counts full answers and 304s."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, datetime, list[str]]] = []
        self.version = 0
        self.full = 0
        self.not_modified = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def publish(self, entry_id: str, title: str, text: str, when: datetime, tags: list[str]) -> None:
        self.entries.append((entry_id, title, text, when, tags))
        self.version += 1

    def touch(self) -> None:
        """A new ETag for the same entries: the next poll gets the whole feed again (a replay)."""
        self.version += 1

    def body(self) -> bytes:
        items = "".join(
            f"<entry><id>{escape(i)}</id><title>{escape(t)}</title><published>{w.isoformat()}</published>"
            f"<updated>{w.isoformat()}</updated>"
            + "".join(f'<category term="{escape(c)}"/>' for c in tags)
            + f"<summary>{escape(s)}</summary></entry>"
            for i, t, s, w, tags in reversed(self.entries)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>沼津市 防災行政無線 放送内容</title><id>urn:numazu:musen</id>"
            f"<updated>2025-06-01T08:00:00+09:00</updated>{items}</feed>"
        ).encode()

    async def _handle(self, request: web.Request) -> web.Response:
        etag = f'"v{self.version}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        self.full += 1
        return web.Response(body=self.body(), content_type="application/atom+xml", headers={"ETag": etag})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/musen.xml", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/musen.xml"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclasses.dataclass
class Stack:
    dsn: str
    service: Service
    telegram: TelegramStandIn
    smtp: SmtpStandIn
    feed: AtomFeed
    config: Path
    env: dict[str, str]

    @property
    def hook(self) -> str:
        assert self.service.web_url is not None
        return self.service.web_url + "/hooks/broadcast"

    async def post(
        self, body: bytes, content_type: str, *, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        sent = headers if headers is not None else signed_headers(SECRET, body, content_type)
        async with aiohttp.ClientSession() as http, http.post(self.hook, data=body, headers=sent) as r:
            return r.status, await r.json()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


CONFIG = """
[service]
state_dir = "{state}"
[web]
enabled = true
host = "127.0.0.1"
port = 0
[jma]
enabled = false
[delivery]
poll_interval = 0.2
backoff_base = 0.2
backoff_max = 1.0
[broadcast]
enabled = true
secret_env = "BROADCAST_SECRET"
feed_url = "{feed}"
feed_poll_seconds = 1
hold_emergency = false
hold_ordinary = {hold_ordinary}
[broadcast.routes]
chime_test = ["email"]
[channels.telegram]
enabled = true
token_env = "TELEGRAM_TOKEN"
base_url = "{telegram}"
[channels.email]
enabled = true
host = "{smtp_host}"
port = {smtp_port}
"""


@pytest.fixture
async def start(database: str, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    stacks: list[Stack] = []

    async def _start(*, hold_ordinary: bool = True) -> Stack:
        telegram, smtp, feed = TelegramStandIn(), SmtpStandIn(), AtomFeed()
        await telegram.start()
        await smtp.start()
        await feed.start()
        cfg = tmp_path / "dispatcher.toml"
        cfg.write_text(
            CONFIG.format(
                state=tmp_path,
                feed=feed.url,
                hold_ordinary=str(hold_ordinary).lower(),
                telegram=telegram.base_url,
                smtp_host=smtp.host,
                smtp_port=smtp.port,
            )
        )
        env = {"BROADCAST_SECRET": SECRET, "TELEGRAM_TOKEN": "42:TEST", "DATABASE_URL": database}
        conn = await asyncpg.connect(database)
        try:
            await subscribe(conn, channel="telegram", address="200001", areas=["numazu-heda"], language="ja")
            await subscribe(conn, channel="email", address="heda@example.jp", areas=["numazu-heda"], language="ja")
            await subscribe(conn, channel="telegram", address="200002", areas=["numazu-ooka"], language="ja")
            await subscribe(conn, channel="email", address="hara@example.jp", areas=["numazu-hara"], language="ja")
        finally:
            await conn.close()
        service = Service(load(cfg, env=env), dsn=database)
        await service.start()
        stack = Stack(database, service, telegram, smtp, feed, cfg, env)
        stacks.append(stack)
        return stack

    yield _start
    for s in stacks:
        await s.service.stop()
        await s.telegram.stop()
        await s.smtp.stop()
        await s.feed.stop()


def now() -> datetime:
    return datetime.now(JST).replace(microsecond=0)


def rejections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("broadcast rejected")]


async def test_signed_cap_and_json_reach_only_mapped_districts_verbatim(start: Callable[..., Awaitable[Stack]]) -> None:
    stack = await start()
    aired = now()
    cap = cap_body("NMZ-2025-0001", EVACUATE, ["heda"], sent=aired, category="evacuation")
    status, answer = await stack.post(cap, "application/cap+xml")
    assert status == 202, answer
    assert answer["held"] is False and isinstance(answer["alert_id"], int) and answer["deliveries"] == 2
    body = json_body("NMZ-2025-0002", MISSING, ["central"], aired_at=aired, category="missing_person")
    status, answer2 = await stack.post(body, "application/json; charset=utf-8")
    assert status == 202 and answer2["held"] is False, answer2

    rows = await wait_settled(stack.dsn, expected=3)
    assert {(r["channel"], r["address"], r["state"]) for r in rows} == {
        ("telegram", "200001", "delivered"),
        ("email", "heda@example.jp", "delivered"),
        ("telegram", "200002", "delivered"),
    }, "戸田 and 大岡 (group 'central') only; 原 gets nothing"
    by_chat = {m.chat_id: m.text for m in stack.telegram.messages}
    assert EVACUATE in by_chat["200001"] and "戸田への緊急放送" in by_chat["200001"]
    assert MISSING in by_chat["200002"] and "大岡" in by_chat["200002"]
    assert f"{aired.hour}時{aired.minute:02d}分" in by_chat["200001"], "the time it was aired"
    assert "/alerts/NMZ-2025-0001" in by_chat["200001"], "a link to its page"
    [mail] = stack.smtp.messages
    assert list(mail.rcpt_tos) == ["heda@example.jp"] and EVACUATE in mail.message.get_content()

    alerts = await stack.fetch("SELECT * FROM alerts ORDER BY id")
    evac, missing = alerts
    assert (evac["event"], evac["priority"], evac["severity"]) == ("防災行政無線（避難情報）", 0, "extreme")
    assert (evac["source"], evac["kind"], evac["description"]) == ("broadcast", "broadcast", EVACUATE)
    assert missing["event"] == "防災行政無線（行方不明者）" and list(missing["target_codes"]) == [
        "numazu-chushin",
        "numazu-kadoike",
        "numazu-kanuki",
        "numazu-ooka",
    ]
    docs = await stack.fetch("SELECT source, kind, content FROM documents ORDER BY id")
    assert [(d["source"], d["kind"], decompress(d["content"])) for d in docs] == [
        ("broadcast", "CAP1.2", cap),
        ("broadcast", "JSON", body),
    ], "raw bodies are stored"


async def test_rejections_have_their_status_reason_and_log_line_and_send_nothing(
    start: Callable[..., Awaitable[Stack]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stack = await start()
    body = json_body("NMZ-R-1", EVACUATE, ["heda"], aired_at=now())
    good = signed_headers(SECRET, body, "application/json")

    forged = signed_headers("not-the-secret", body, "application/json")
    assert await stack.post(body, "application/json", headers=forged) == (
        401,
        {"status": "rejected", "error": "bad_signature", "reason": "signature does not match the body and timestamp"},
    )
    unsigned = {"Content-Type": "application/json"}
    status, answer = await stack.post(body, "application/json", headers=unsigned)
    assert (status, answer["error"]) == (401, "bad_signature") and "X-Signature-256" in answer["reason"]
    stale = signed_headers(SECRET, body, "application/json", timestamp=int(time.time()) - 301)
    status, answer = await stack.post(body, "application/json", headers=stale)
    assert (status, answer["error"]) == (401, "stale_timestamp") and "±300 s" in answer["reason"]
    future = signed_headers(SECRET, body, "application/json", timestamp=int(time.time()) + 400)
    assert (await stack.post(body, "application/json", headers=future))[0] == 401
    broken = b'{"id": "NMZ-R-2", "priority": "emergency", "groups": ["heda"], "text": "x"}'
    status, answer = await stack.post(broken, "application/json")
    assert (status, answer["error"]) == (400, "malformed") and "aired_at" in answer["reason"]
    status, answer = await stack.post(b"hello", "text/plain")
    assert (status, answer["error"]) == (415, "unsupported_media_type")
    huge = b"{" + b" " * 300_000 + b"}"
    status, answer = await stack.post(huge, "application/json")
    assert (status, answer["error"]) == (413, "too_large")
    assert await stack.fetch("SELECT 1 FROM deliveries") == [], "nothing sent for any rejection"
    assert await stack.fetch("SELECT 1 FROM alerts") == []

    # A replay: the same signed request again, within the allowed skew.
    status, first = await stack.post(body, "application/json", headers=good)
    assert status == 202 and first["held"] is False
    await wait_settled(stack.dsn, expected=2)
    status, answer = await stack.post(body, "application/json", headers=good)
    assert (status, answer["error"]) == (409, "replay")
    await asyncio.sleep(0.3)
    assert len(await stack.fetch("SELECT 1 FROM deliveries")) == 2, "the replay adds no delivery"
    assert len(stack.telegram.messages) == 1 and len(stack.smtp.messages) == 1

    logged = [(r.levelname, r.__dict__["http_status"], r.__dict__["error"]) for r in rejections(caplog)]
    assert logged == [
        ("WARNING", 401, "bad_signature"),
        ("WARNING", 401, "bad_signature"),
        ("WARNING", 401, "stale_timestamp"),
        ("WARNING", 401, "stale_timestamp"),
        ("WARNING", 400, "malformed"),
        ("WARNING", 415, "unsupported_media_type"),
        ("WARNING", 413, "too_large"),
        ("WARNING", 409, "replay"),
    ]
    assert SECRET not in caplog.text and good["X-Signature-256"] not in caplog.text


async def test_unknown_group_is_reported_and_known_districts_still_get_it(
    start: Callable[..., Awaitable[Stack]], caplog: pytest.LogCaptureFixture
) -> None:
    stack = await start()
    body = json_body("NMZ-U-1", EVACUATE, ["heda", "atlantis"], aired_at=now())
    status, answer = await stack.post(body, "application/json")
    assert status == 202 and answer["unknown_groups"] == ["atlantis"] and answer["held"] is False
    rows = await wait_settled(stack.dsn, expected=2)
    assert {r["address"] for r in rows} == {"200001", "heda@example.jp"}
    assert any("atlantis" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    [alert] = await stack.fetch("SELECT id, details FROM alerts")
    assert json.loads(alert["details"])["unknown_groups"] == ["atlantis"]
    # Operators see the problem on the alert's deliveries page; residents' page does not show it.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.service.web_url}/alerts/{alert['id']}/deliveries") as r:
            page = await r.text()
        async with http.get(f"{stack.service.web_url}/alerts/{alert['id']}") as r:
            public = await r.text()
    assert "unknown loudspeaker group &#x27;atlantis&#x27;" in page
    assert "atlantis" not in public

    # Only unknown groups: not guessed city-wide, held and reported.
    only = json_body("NMZ-U-2", EVACUATE, ["atlantis"], aired_at=now())
    status, answer = await stack.post(only, "application/json")
    assert status == 202 and answer["held"] is True and "no known loudspeaker group" in answer["reason"]
    [held] = await stack.fetch("SELECT state::text, details FROM alerts WHERE identifier = 'NMZ-U-2'")
    assert held["state"] == "held" and json.loads(held["details"])["unknown_groups"] == ["atlantis"]
    assert len(await stack.fetch("SELECT 1 FROM deliveries")) == 2


async def test_ordinary_broadcast_held_then_released_by_dispatcher_approve(
    start: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await start()
    body = json_body("NMZ-H-1", MISSING, ["heda"], aired_at=now(), priority="ordinary", category="missing_person")
    status, answer = await stack.post(body, "application/json")
    assert status == 202 and answer["held"] is True and "hold_ordinary" in answer["reason"]
    alert_id = answer["alert_id"]
    assert await stack.fetch("SELECT 1 FROM deliveries") == []
    env = {**os.environ, **stack.env}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dispatcher", "--config", str(stack.config), "approve", str(alert_id)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"alert {alert_id} released: 2 deliveries queued" in proc.stdout
    rows = await wait_settled(stack.dsn, expected=2)
    assert {(r["channel"], r["address"], r["state"]) for r in rows} == {
        ("telegram", "200001", "delivered"),
        ("email", "heda@example.jp", "delivered"),
    }
    [msg] = stack.telegram.messages
    assert MISSING in msg.text and "戸田への放送" in msg.text
    [(state,)] = await stack.fetch("SELECT state::text FROM alerts WHERE id = $1", alert_id)
    assert state == "active"


async def test_routine_category_goes_only_to_its_configured_channels(start: Callable[..., Awaitable[Stack]]) -> None:
    stack = await start(hold_ordinary=False)
    chime = json_body("NMZ-C-1", "ただいまから、チャイムの試験放送を行います。", ["heda"], aired_at=now(),
                      priority="ordinary", chime="夕焼け小焼け", category="chime_test")  # fmt: skip
    status, answer = await stack.post(chime, "application/json")
    assert status == 202 and answer["held"] is False
    rows = await wait_settled(stack.dsn, expected=1)
    assert [(r["channel"], r["address"]) for r in rows] == [("email", "heda@example.jp")]
    await asyncio.sleep(0.3)
    assert stack.telegram.messages == [], "[broadcast.routes] chime_test = ['email']"
    [alert] = await stack.fetch("SELECT priority, severity, details FROM alerts")
    assert (alert["priority"], alert["severity"], json.loads(alert["details"])["channels"]) == (3, "minor", ["email"])


async def test_transcript_feed_replayed_twice_sends_every_entry_once(start: Callable[..., Awaitable[Stack]]) -> None:
    stack = await start(hold_ordinary=False)
    base = datetime(2025, 6, 1, 7, 0, tzinfo=JST)
    stack.feed.publish("urn:musen:1", "避難指示", EVACUATE, base, ["heda", "emergency"])
    stack.feed.publish("urn:musen:2", "行方不明者", MISSING, base + timedelta(minutes=5), ["central", "missing_person"])
    stack.feed.publish("urn:musen:3", "お知らせ", "本日は市内一斉清掃の日です。", base + timedelta(minutes=9), [])
    # 3 entries: 戸田 (2 subscriptions) + 大岡 (1) + the whole city (all 4).
    rows = await wait_settled(stack.dsn, expected=7)
    served = stack.feed.full
    for _ in range(2):  # the same entries, served in full twice more
        stack.feed.touch()
        target = stack.feed.full + 1
        deadline = time.monotonic() + 10
        while stack.feed.full < target:
            assert time.monotonic() < deadline, "the feed was not polled again"
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert stack.feed.full >= served + 2
    rows = await wait_settled(stack.dsn, expected=7)
    assert len(rows) == 7 and all(r["state"] == "delivered" for r in rows)
    alerts = await stack.fetch("SELECT identifier, priority, event, area_codes FROM alerts ORDER BY sent")
    assert [(a["identifier"], a["priority"], a["event"]) for a in alerts] == [
        ("urn:musen:1", 0, "防災行政無線"),
        ("urn:musen:2", 3, "防災行政無線（行方不明者）"),
        ("urn:musen:3", 3, "防災行政無線"),
    ]
    assert alerts[2]["area_codes"][0] == "2220300"
    texts = [m.text for m in stack.telegram.messages]
    assert sum(EVACUATE in t for t in texts) == 1 and sum(MISSING in t for t in texts) == 1
    assert len(texts) == 4 and len(stack.smtp.messages) == 3
    assert stack.feed.not_modified >= 1, "conditional GET: unchanged feed answered 304"
    docs = await stack.fetch("SELECT url, outcome FROM documents WHERE source = 'broadcast' ORDER BY id")
    assert [(d["url"], d["outcome"]) for d in docs] == [(f"urn:musen:{i}", "parsed") for i in (1, 2, 3)]
    decoded = json.loads(decompress((await stack.fetch("SELECT content FROM documents LIMIT 1"))[0]["content"]))
    assert decoded["summary"] == EVACUATE
    assert datetime.fromisoformat(decoded["published"]) == base.astimezone(UTC)
