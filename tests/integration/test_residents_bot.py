"""A resident talks to the Telegram bot through the Bot API stand-in, in polling and webhook mode.

The real daemon (:class:`dispatcher.app.Service`, web server on) with the bot on; the
stand-in plays the resident (types, presses buttons) and shows what the bot sent to the
chat. Done-when of the [residents] issue: start, choose English and two districts; an alert
for one of them arrives and one for a third district does not; /latest shows it; quiet
hours hold back an advisory but not a 津波警報; /stop removes the person from the database.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from channels.telegram import TelegramConfig
from dispatcher.app import Service
from dispatcher.model import JST, Area, Priority, Severity
from dispatcher.settings import ChannelSettings, load
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.standins.telegram_updates import ChatMessage
from tests.integration.test_delivery import telegram_standin, wait_until
from tests.samples import NUMAZU, make_alert

CHAT = "5550001"
SECRET = "s3cr3t-webhook-token-for-the-residents-bot-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bot:
    service: Service
    tg: TelegramStandIn
    dsn: str

    def chat(self) -> list[ChatMessage]:
        return self.tg.updates.transcript(CHAT)

    def _snapshot(self) -> dict[int, int]:
        return {m.message_id: m.edits for m in self.chat()}

    async def says(self, text: str, *, after: dict[int, int] | None = None, timeout: float = 20.0) -> ChatMessage:
        """Wait until the chat shows a message containing ``text`` (new or edited since ``after``)."""
        seen = after or {}

        def fresh() -> list[ChatMessage]:
            return [m for m in self.chat() if seen.get(m.message_id) != m.edits and text in m.text]

        await wait_until(lambda: bool(fresh()), timeout, lambda: f"{text!r} in {[m.text[:50] for m in self.chat()]}")
        return fresh()[-1]

    async def type(self, text: str, expect: str) -> ChatMessage:
        before = self._snapshot()
        self.tg.updates.type(CHAT, text)
        return await self.says(expect, after=before)

    async def press(self, data: str, expect: str) -> ChatMessage:
        before = self._snapshot()
        self.tg.updates.press(CHAT, data)
        return await self.says(expect, after=before)

    async def fetchval(self, sql: str, *args: object) -> object:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def ingest(self, identifier: str, **fields: object) -> int:
        assert self.service.pipeline is not None
        result = await self.service.pipeline.ingest(make_alert(identifier, **fields))
        assert result.alert_id is not None
        return int(result.alert_id)


@pytest.fixture(params=["polling", "webhook"])
async def bot(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> AsyncIterator[Bot]:
    mode = request.param
    port = free_port()
    async with telegram_standin() as tg:
        base = load(None, env={})
        options = TelegramConfig(
            token="42:RESIDENTS",
            base_url=tg.base_url,
            updates=mode,
            webhook_secret=SECRET if mode == "webhook" else "",
            webhook_url=f"http://127.0.0.1:{port}/hooks/telegram" if mode == "webhook" else "",
            poll_timeout=2,
        )
        settings = dataclasses.replace(
            base,
            service=dataclasses.replace(base.service, state_dir=tmp_path, public_url=f"http://127.0.0.1:{port}"),
            web=dataclasses.replace(base.web, enabled=True, port=port),
            sources={**base.sources, "jma": dataclasses.replace(base.sources["jma"], enabled=False)},
            delivery=dataclasses.replace(base.delivery, poll_interval=0.2),
            # Replies to one chat come quickly here; Telegram's 1 s per chat is the default.
            channels={
                "telegram": ChannelSettings("telegram", enabled=True, per_recipient_interval=0.05, options=options)
            },
        )
        service = Service(settings, dsn=database)
        await service.start()
        try:
            if mode == "webhook":
                await wait_until(lambda: bool(tg.updates.webhook_url), 20, "setWebhook")
                assert tg.updates.secret_token == SECRET
            yield Bot(service, tg, database)
        finally:
            await service.stop()


def minutes_now() -> int:
    now = datetime.now(JST)
    return now.hour * 60 + now.minute


async def test_a_resident_subscribes_receives_looks_back_sleeps_and_leaves(bot: Bot) -> None:
    start = await bot.type("/start", "Please choose your language.")
    assert [b["text"] for row in start.buttons for b in row] == [
        "日本語",
        "やさしい日本語",
        "English",
        "Português",
        "Tiếng Việt",
        "中文",
    ]
    await bot.press("L:en", "Your places (0/5)")
    page = await bot.press("P:0", "Pick a district (page 1/2)")
    assert page.edits == 1, "the district keyboard replaces the places menu in place"
    assert "Ooka" in [b["text"] for row in page.buttons for b in row]
    await bot.press("D:numazu-ooka", "Added: Ooka.")
    await bot.type("Heda", "Added: Heda.")
    await bot.press("M:done", "How much do you want to hear?")
    await bot.press("V:all", "Quiet hours?")
    await bot.press("Q:off", "All set. You will receive alerts for: Ooka, Heda.")
    assert bot.tg.updates.callback_answers, "button presses are answered (answerCallbackQuery)"
    assert await bot.fetchval("SELECT areas FROM subscriptions WHERE address = $1", CHAT) == [
        "numazu-ooka",
        "numazu-heda",
    ]

    # An alert for one of the two districts arrives; one for a third district does not.
    before = bot._snapshot()
    await bot.ingest("ooka-1", event="大雨警報", priority=Priority.HIGH, areas=(Area("大岡", ("numazu-ooka",)),))
    await bot.ingest("hara-1", event="洪水警報", priority=Priority.HIGH, areas=(Area("原", ("numazu-hara",)),))
    await bot.says("Heavy Rain Warning", after=before)
    assert (
        await bot.fetchval(
            "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
            " WHERE a.identifier = 'hara-1' AND d.address = $1",
            CHAT,
        )
        == 0
    )
    assert not any("Flood Warning" in m.text for m in bot.chat())

    latest = await bot.type("/latest", "Latest alerts for your places:")
    assert "Heavy Rain Warning" in latest.text and "/alerts/" in latest.text
    assert "Flood Warning" not in latest.text

    # Quiet hours around now: an advisory waits, a 津波警報 does not.
    now = minutes_now()
    quiet = f"Q:{(now - 60) % 1440}-{(now + 120) % 1440}"
    await bot.type("/settings", "Your settings")
    await bot.press("M:quiet", "Quiet hours?")
    await bot.press(quiet, "Quiet hours: ")
    before = bot._snapshot()
    await bot.ingest("advisory-1", event="波浪注意報", priority=Priority.LOW, severity=Severity.MINOR)
    await bot.ingest("tsunami-1", event="津波警報", priority=Priority.CRITICAL, areas=(Area("沼津市", (NUMAZU,)),))
    await bot.says("TSUNAMI WARNING", after=before)
    held = await bot.fetchval(
        "SELECT d.not_before > now() + interval '30 minutes' FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        " WHERE a.identifier = 'advisory-1' AND d.address = $1 AND d.state = 'queued'",
        CHAT,
    )
    assert held is True, "the advisory waits in the queue until the quiet hours end"
    assert not any("High Wave Advisory" in m.text for m in bot.chat())

    await bot.type("/stop", "Your data has been deleted.")
    for table in ("subscriptions", "residents", "resident_places", "subscribers"):
        assert await bot.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    # Deleting the subscription forgot its link; nothing queued for the chat is left but history.
    assert (
        await bot.fetchval("SELECT count(*) FROM deliveries WHERE address = $1 AND subscription_id IS NOT NULL", CHAT)
        == 0
    )


async def test_the_webhook_refuses_a_wrong_or_missing_secret_and_bad_bodies(bot: Bot) -> None:
    import aiohttp

    url = f"{bot.service.web_url}/hooks/telegram"
    update = {"update_id": 987654, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong" * 8}):
            async with http.post(url, json=update, headers=headers) as resp:
                expected = 401 if bot.tg.updates.webhook_url else 404
                assert resp.status == expected, await resp.text()
        if not bot.tg.updates.webhook_url:
            return  # polling: there is no webhook to post to
        good = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        for body in (b"not json", b"[1, 2]", b'{"update_id": "x"}'):
            async with http.post(url, data=body, headers={**good, "Content-Type": "application/json"}) as resp:
                assert resp.status == 400, await resp.text()
        for _ in range(2):  # Telegram redelivers an update it got no answer for: stored once
            async with http.post(url, json=update, headers=good) as resp:
                assert resp.status == 200
    assert await bot.fetchval("SELECT count(*) FROM bot_updates WHERE update_key = '987654'") == 1
