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
from dispatcher.demo import with_database
from dispatcher.settings import load
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store.documents import decompress
from dispatcher.store.subscribers import subscribe
from sources.broadcast.examples import cap_body, json_body, signed_headers
from tests.integration.test_path import wait_settled
from tests.staffing import staff_session

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
    [mail] = stack.smtp.messages
    assert list(mail.rcpt_tos) == ["heda@example.jp"] and EVACUATE in mail.message.get_body(("plain",)).get_content()

    alerts = await stack.fetch("SELECT * FROM alerts ORDER BY id")
    evac, missing = alerts
    assert f"/alerts/{evac['public_id']}" in by_chat["200001"], "a link to its page, by the id the service minted"
    assert "NMZ-2025-0001" not in by_chat["200001"].splitlines()[-1], "never the sender's identifier"
    assert (evac["event"], evac["priority"], evac["severity"]) == ("防災行政無線（避難情報）", 0, "extreme")
    assert (evac["source"], evac["kind"], evac["description"]) == ("broadcast", "broadcast", EVACUATE)
    # The districts, and the city for those who follow it as a whole (none in this stack).
    assert missing["event"] == "防災行政無線（行方不明者）" and list(missing["target_codes"]) == [
        "2220300",
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
    async with staff_session(stack.service.web_url, stack.dsn) as http:
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


def _jma_alert(shared: Path, name: str = "32-35_06_03_240613_VXSE53.xml") -> Any:
    from sources.jma.parser import parse_telegram
    from sources.outcome import Parsed

    outcome = parse_telegram((shared / "jma" / "official_samples" / name).read_bytes(), url=name)
    assert isinstance(outcome, Parsed)
    return outcome.alert


async def test_an_exercise_cannot_cancel_a_real_jma_alert_and_is_reported(
    start: Callable[..., Awaitable[Stack]], shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """[hardening] 1: a signed exercise cancel naming a real JMA alert's identifier touches nothing real."""
    stack = await start()
    assert stack.service.context is not None
    quake = _jma_alert(shared_data)
    result = await stack.service.context.emit(quake)
    assert result.deliveries == 4, "every subscriber of 沼津市's districts"
    await wait_settled(stack.dsn, expected=4)
    sent_before = len(stack.telegram.messages), len(stack.smtp.messages)

    drill = json.dumps(
        {"id": "DRILL-1", "aired_at": now().isoformat(), "priority": "emergency", "groups": ["all"],
         "text": "訓練です。地震情報を取り消します。", "exercise": True, "msg_type": "cancel",
         "references": [quake.identifier], "sender": "drill.example"},
        ensure_ascii=False,
    ).encode()  # fmt: skip
    status, answer = await stack.post(drill, "application/json")
    assert status == 202, answer
    await asyncio.sleep(0.5)
    [real] = await stack.fetch("SELECT state::text, public_id FROM alerts WHERE identifier = $1", quake.identifier)
    assert real["state"] == "active", "the real alert is untouched"
    assert (len(stack.telegram.messages), len(stack.smtp.messages)) == sent_before, "no 【訓練】【取消】 to anyone"
    [drill_row] = await stack.fetch("SELECT id, details FROM alerts WHERE identifier = 'DRILL-1'")
    problems = json.loads(drill_row["details"])["problems"]
    assert any("not replaced" in p and "status actual, not exercise" in p for p in problems), problems
    assert any(r.getMessage().startswith("reference not honoured") for r in caplog.records)
    async with staff_session(stack.service.web_url, stack.dsn) as http:
        async with http.get(f"{stack.service.web_url}/alerts/{real['public_id']}") as r:
            public = await r.text()
        async with http.get(f"{stack.service.web_url}/alerts/{drill_row['id']}/deliveries") as r:
            ops = await r.text()
    assert "取り消されました" not in public
    assert "not replaced" in ops, "operators see the refused reference"


async def test_an_exercise_update_leaves_a_queued_real_order_to_be_sent(start: Callable[..., Awaitable[Stack]]) -> None:
    """[hardening] 1: nor may an exercise (or another sender) supersede a real alert still queued."""
    stack = await start()
    assert stack.service.context is not None
    # Telegram is down for a moment, so the real order's Telegram deliveries stay queued.
    stack.telegram.fail(502, count=2)
    order = json_body("NMZ-EVAC-1", EVACUATE, ["heda"], aired_at=now(), category="evacuation")
    status, answer = await stack.post(order, "application/json")
    assert status == 202
    for sender, exercise in (("drill.example", True), ("bousai-musen.city.numazu.shizuoka.jp", True),
                             ("someone-else.example", False)):  # fmt: skip
        body = json.dumps(
            {"id": f"X-{sender}-{exercise}", "aired_at": now().isoformat(), "priority": "emergency",
             "groups": ["heda"], "text": "訓練", "exercise": exercise, "msg_type": "update",
             "references": ["NMZ-EVAC-1"], "sender": sender},
            ensure_ascii=False,
        ).encode()  # fmt: skip
        status, answer = await stack.post(body, "application/json")
        assert status == 202, answer
    # The two exercises reach only test recipients (none here); the other sender's update is its own alert.
    rows = await wait_settled(stack.dsn, expected=4)
    [evac] = await stack.fetch("SELECT id, state::text FROM alerts WHERE identifier = 'NMZ-EVAC-1'")
    assert evac["state"] == "active"
    real = [r for r in rows if r["alert_id"] == evac["id"]]
    assert sorted((r["channel"], r["state"]) for r in real) == [("email", "delivered"), ("telegram", "delivered")]
    assert sum(EVACUATE in m.text for m in stack.telegram.messages) == 1, "the resident of 戸田 got the order"
    others = [r for r in rows if r["alert_id"] != evac["id"]]
    expected = [("email", "heda@example.jp"), ("telegram", "200001")]
    assert sorted((r["channel"], r["address"]) for r in others) == expected
    details = {
        r["identifier"]: json.loads(r["details"])["problems"]
        for r in await stack.fetch("SELECT identifier, details FROM alerts WHERE identifier LIKE 'X-%'")
    }
    assert "status actual, not exercise" in details["X-bousai-musen.city.numazu.shizuoka.jp-True"][0]
    assert (
        "sender 'bousai-musen.city.numazu.shizuoka.jp', not 'someone-else.example'"
        in (details["X-someone-else.example-False"][0])
    )


async def test_an_update_by_the_same_sender_replaces_and_reaches_who_got_the_original(
    start: Callable[..., Awaitable[Stack]],
) -> None:
    """The fence does not get in the way of the real thing: same source, sender and status."""
    stack = await start()
    first = json_body("NMZ-F-1", EVACUATE, ["heda"], aired_at=now(), category="evacuation")
    assert (await stack.post(first, "application/json"))[0] == 202
    await wait_settled(stack.dsn, expected=2)
    lifted = json.dumps(
        {"id": "NMZ-F-2", "aired_at": now().isoformat(), "priority": "emergency", "groups": ["heda"],
         "text": "戸田地区の避難指示を解除しました。", "msg_type": "update", "references": ["NMZ-F-1"]},
        ensure_ascii=False,
    ).encode()  # fmt: skip
    status, answer = await stack.post(lifted, "application/json")
    assert status == 202
    await wait_settled(stack.dsn, expected=4)
    [old] = await stack.fetch("SELECT state::text, replaced_by FROM alerts WHERE identifier = 'NMZ-F-1'")
    assert old["state"] == "superseded" and old["replaced_by"] == answer["alert_id"]
    assert sum("解除しました" in m.text for m in stack.telegram.messages) == 1


async def test_a_broadcast_refused_by_the_database_is_a_400_and_can_be_sent_again(
    start: Callable[..., Awaitable[Stack]],
) -> None:
    """[hardening] 2: nothing is claimed unless its alert is stored; a value PostgreSQL cannot hold is a 400."""
    stack = await start()
    bad = json.dumps(
        {"id": "NMZ-D-1", "aired_at": "0001-01-01T00:00:00+14:00", "priority": "emergency", "groups": ["heda"],
         "text": EVACUATE}, ensure_ascii=False,
    ).encode()  # fmt: skip
    status, answer = await stack.post(bad, "application/json")
    assert status == 400 and answer["error"] == "malformed", answer
    assert "aired_at" in answer["reason"] or "sent" in answer["reason"]
    good = json_body("NMZ-D-1", EVACUATE, ["heda"], aired_at=now())
    status, answer = await stack.post(good, "application/json")
    assert status == 202, "the corrected broadcast with the same id is accepted"
    await wait_settled(stack.dsn, expected=2)
    assert (await stack.post(good, "application/json"))[0] == 409


async def test_a_broadcast_is_never_claimed_without_its_alert(start: Callable[..., Awaitable[Stack]]) -> None:
    """[hardening] 2: the database goes away in the middle of storing a broadcast.

    The request is caught after its document row is written and while its alert waits
    for a lock; then every connection is cut and new ones refused, as in an outage or
    a daemon killed at that moment. The sender gets the documented 503; nothing stays
    claimed; once the database is back, the same broadcast is accepted.
    """
    stack = await start()
    body = json_body("NMZ-DB-1", EVACUATE, ["heda"], aired_at=now())
    conn = await asyncpg.connect(stack.dsn)
    try:
        me = await conn.fetchval("SELECT pg_backend_pid()")
        db = await conn.fetchval("SELECT current_database()")
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
        task = asyncio.create_task(stack.post(body, "application/json"))
        deadline = time.monotonic() + 10
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> $2",
            db,
            me,
        ):
            assert time.monotonic() < deadline, "the webhook never waited for the alerts table"
            await asyncio.sleep(0.05)
        admin = await asyncpg.connect(with_database(stack.dsn, "postgres"))
        try:
            await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2", db, me
            )
            status, answer = await asyncio.wait_for(task, 30)
            await tx.rollback()
            await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        finally:
            await admin.close()
    finally:
        await conn.close()
    assert status == 503 and answer["error"] == "unavailable", answer
    assert await stack.fetch("SELECT 1 FROM documents WHERE url LIKE '%NMZ-DB-1'") == [], "no claim left behind"
    deadline = time.monotonic() + 20
    while (result := await stack.post(body, "application/json"))[0] == 503:  # the pool reconnects
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.5)
    assert result[0] == 202, result
    await wait_settled(stack.dsn, expected=2)


async def test_public_links_are_minted_by_the_service_and_cannot_be_taken_over(
    start: Callable[..., Awaitable[Stack]],
) -> None:
    """[hardening] 8: another sender reusing an identifier (or a row number) takes no page over."""
    stack = await start()
    status, first = await stack.post(json_body("REL-0001", EVACUATE, ["heda"], aired_at=now()), "application/json")
    assert status == 202
    await wait_settled(stack.dsn, expected=2)
    [link] = [line for line in stack.telegram.messages[0].text.splitlines() if "/alerts/" in line]
    path = link[link.index("/alerts/") :]
    assert "REL-0001" not in path
    for hijack in ("REL-0001", str(first["alert_id"]), path.rsplit("/", 1)[1]):
        body = json.dumps(
            {"id": hijack, "aired_at": now().isoformat(), "priority": "emergency", "groups": ["central"],
             "text": "偽の情報です。", "sender": "attacker.example"}, ensure_ascii=False,
        ).encode()  # fmt: skip
        status, answer = await stack.post(body, "application/json")
        assert status == 202 and answer["deliveries"] == 1, answer
    await wait_settled(stack.dsn, expected=5)
    async with staff_session(stack.service.web_url, stack.dsn) as http:
        async with http.get(stack.service.web_url + path) as r:
            assert r.status == 200 and "偽の情報" not in await r.text() and "避難指示" in await r.text()
        async with http.get(f"{stack.service.web_url}/alerts/{first['alert_id']}/deliveries") as r:
            assert "偽の情報" not in await r.text()
        async with http.get(f"{stack.service.web_url}/alerts/REL-0001") as r:
            assert r.status == 404, "a sender's identifier is not a page"
    rows = await stack.fetch("SELECT public_id FROM alerts")
    assert len({r["public_id"] for r in rows}) == 4


async def test_a_body_arriving_in_pieces_is_read_whole(start: Callable[..., Awaitable[Stack]]) -> None:
    """A signed body sent in several segments is verified on all of it, not on what arrived first."""
    stack = await start()
    body = json_body("NMZ-SLOW-1", EVACUATE + "。" * 2000, ["heda"], aired_at=now())
    headers = signed_headers(SECRET, body, "application/json")
    assert stack.service.web_url is not None
    host, port = stack.service.web_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST /hooks/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode())
    for i in range(0, len(body), 1000):
        writer.write(body[i : i + 1000])
        await writer.drain()
        await asyncio.sleep(0.02)
    status_line = await reader.readline()
    writer.close()
    assert b" 202 " in status_line, status_line
