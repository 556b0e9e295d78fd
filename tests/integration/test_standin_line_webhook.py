"""The LINE webhook sender, checked by a receiver written from LINE's documentation alone.

The receiver verifies ``X-Line-Signature`` as
https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/ tells a bot
server to (base64 of HMAC-SHA256 over the raw body, keyed with the channel secret,
compared in constant time) and reads the events as
https://developers.line.biz/en/reference/messaging-api/#webhook-event-objects shows them,
then answers through the reply endpoint of the API stand-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dispatcher.standins.line_api import BOT_INFO, LineStandIn
from dispatcher.standins.line_webhook import LineWebhookSender

SECRET = "line-channel-secret-never-printed"
TOKEN = "line-channel-access-token"
ALICE = "U" + "a" * 32
ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


class Bot:
    """A minimal bot server: verify, record, answer text messages through the reply API."""

    def __init__(self, api: LineStandIn) -> None:
        self.api = api
        self.events: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook/line", self.webhook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/webhook/line"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, request.headers.get("X-Line-Signature", "").encode()):
            return web.Response(status=400, text="bad signature")
        body = json.loads(raw)
        self.bodies.append(body)
        for event in body["events"]:
            self.events.append(event)
            if event["type"] == "message" and event["message"]["type"] == "text":
                reply = {"replyToken": event["replyToken"], "messages": [{"type": "text", "text": "登録しました"}]}
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with aiohttp.ClientSession() as session:
                    url = self.api.base_url + "/v2/bot/message/reply"
                    async with session.post(url, json=reply, headers=headers) as response:
                        event["_reply_status"] = response.status
        return web.Response(text="OK")


@pytest.fixture
async def api() -> AsyncIterator[LineStandIn]:
    server = LineStandIn(TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(api: LineStandIn) -> AsyncIterator[Bot]:
    server = Bot(api)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sender(bot: Bot, api: LineStandIn) -> AsyncIterator[LineWebhookSender]:
    line = LineWebhookSender(bot.url, SECRET, standin=api)
    yield line
    await line.close()


def assert_common(event: dict[str, Any], kind: str) -> None:
    assert event["type"] == kind
    assert event["mode"] == "active"
    assert isinstance(event["timestamp"], int) and event["timestamp"] > 1_600_000_000_000
    assert event["source"] == {"type": "user", "userId": ALICE}
    assert ULID.fullmatch(event["webhookEventId"])
    assert event["deliveryContext"] == {"isRedelivery": False}


async def test_signed_events_in_lines_shape(bot: Bot, sender: LineWebhookSender) -> None:
    events = [
        sender.follow(ALICE),
        sender.location(ALICE, 35.0956, 138.8635, title="沼津市役所", address="静岡県沼津市御幸町16-1"),
        sender.postback(ALICE, "action=subscribe&district=5", {"datetime": "2026-11-29T09:00"}),
        sender.unfollow(ALICE),
    ]
    result = await sender.send(*events)
    assert (result.status, result.text) == (200, "OK")
    assert bot.bodies[0]["destination"] == BOT_INFO["userId"]
    follow, location, postback, unfollow = bot.events
    assert_common(follow, "follow")
    assert follow["follow"] == {"isUnblocked": False}
    assert len(follow["replyToken"]) == 32
    assert_common(location, "message")
    message = location["message"]
    assert (message["type"], message["latitude"], message["longitude"]) == ("location", 35.0956, 138.8635)
    assert message["title"] == "沼津市役所"
    assert message["id"].isdigit()
    assert_common(postback, "postback")
    assert postback["postback"] == {"data": "action=subscribe&district=5", "params": {"datetime": "2026-11-29T09:00"}}
    assert_common(unfollow, "unfollow")
    assert "replyToken" not in unfollow
    assert len({e["webhookEventId"] for e in bot.events}) == 4


async def test_text_event_reply_reaches_the_user_once(bot: Bot, api: LineStandIn, sender: LineWebhookSender) -> None:
    event = sender.text(ALICE, "登録 5")
    assert (await sender.send(event)).status == 200
    received = bot.events[0]
    assert received["message"]["text"] == "登録 5"
    assert received["message"]["quoteToken"]
    assert received["_reply_status"] == 200
    assert [d.texts for d in api.delivered_to(ALICE)] == [["登録しました"]]
    # LINE redelivers the same event (same webhookEventId, same token): the token is spent.
    assert (await sender.send(event, redelivery=True)).status == 200
    assert bot.events[1]["deliveryContext"] == {"isRedelivery": True}
    assert bot.events[1]["webhookEventId"] == received["webhookEventId"]
    assert bot.events[1]["_reply_status"] == 400
    assert len(api.delivered_to(ALICE)) == 1


async def test_wrong_signature_is_refused_by_a_correct_receiver(bot: Bot, sender: LineWebhookSender) -> None:
    result = await sender.send(sender.follow(ALICE), signature_override=base64.b64encode(b"x" * 32).decode())
    assert result.status == 400
    assert bot.events == []


async def test_empty_events_is_the_url_check(bot: Bot, sender: LineWebhookSender) -> None:
    result = await sender.send()
    assert result.status == 200
    assert bot.bodies == [{"destination": BOT_INFO["userId"], "events": []}]


async def test_signature_is_over_the_exact_raw_bytes(sender: LineWebhookSender) -> None:
    result = await sender.send(sender.text(ALICE, "避難所はどこ?"))
    # Non-ASCII is sent as UTF-8, not escaped, so the signature covers the bytes as sent.
    assert "避難所".encode() in result.body
    expected = base64.b64encode(hmac.new(SECRET.encode(), result.body, hashlib.sha256).digest()).decode()
    assert result.signature == expected
