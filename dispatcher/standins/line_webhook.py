"""LINE's other direction: webhook events POSTed to our service the way the LINE Platform does.

Tests use it to drive our LINE webhook as a resident would: add the account as a
friend, block it, send a text or a location, tap a postback button. The request is
what https://developers.line.biz/en/reference/messaging-api/#webhooks describes (and
https://github.com/line/line-openapi webhook.yml defines): a JSON body
``{"destination": <bot user ID>, "events": [...]}``, each event with ``type``, ``mode``,
``timestamp`` (ms), ``source`` (``{"type": "user", "userId": ...}``), a ULID
``webhookEventId``, ``deliveryContext.isRedelivery`` and, where the user can be
answered, a ``replyToken``; and the header ``X-Line-Signature``, the base64 HMAC-SHA256
of the raw body keyed with the channel secret
(https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/).

Given a :class:`~dispatcher.standins.line_api.LineStandIn`, reply tokens are minted by it,
so that our answer to an event can be checked end to end through ``/v2/bot/message/reply``.

``python -m dispatcher.standins.line_webhook --hook URL --secret S --api BASE_URL`` is a
chat in the terminal with the bot (``dispatcher demo`` prints the command): each line
typed is a text message, ``!follow``, ``!unfollow``, ``!location LAT LON`` and a number
(tap that quick reply) are the other events; what the bot answered is read back from the
stand-in's stats.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from dispatcher.standins.line_api import BOT_INFO, LineStandIn

# Crockford's base32, the alphabet of ULIDs (https://github.com/ulid/spec).
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def signature(channel_secret: str, body: bytes) -> str:
    """The ``X-Line-Signature`` of ``body``: base64(HMAC-SHA256(channel secret, raw body))."""
    digest = hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def ulid(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, 26 base32 characters."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What our service answered to one webhook request."""

    status: int
    text: str
    body: bytes
    signature: str


class LineWebhookSender:
    """POSTs LINE-shaped webhook events to ``url`` signed with ``channel_secret``."""

    def __init__(
        self,
        url: str,
        channel_secret: str,
        *,
        standin: LineStandIn | None = None,
        destination: str = str(BOT_INFO["userId"]),
    ) -> None:
        self.url = url
        self.channel_secret = channel_secret
        self.standin = standin
        self.destination = destination
        self.sent: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- events --------------------------------------------------------------

    def _event(self, kind: str, user_id: str, *, reply: bool) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        event: dict[str, Any] = {
            "type": kind,
            "mode": "active",
            "timestamp": now_ms,
            "source": {"type": "user", "userId": user_id},
            "webhookEventId": ulid(now_ms),
            "deliveryContext": {"isRedelivery": False},
        }
        if reply:
            token = self.standin.issue_reply_token(user_id) if self.standin is not None else secrets.token_hex(16)
            event["replyToken"] = token
        return event

    def follow(self, user_id: str, *, unblocked: bool = False) -> dict[str, Any]:
        """The user added the account as a friend (``unblocked``: after having blocked it)."""
        event = self._event("follow", user_id, reply=True)
        event["follow"] = {"isUnblocked": unblocked}
        return event

    def unfollow(self, user_id: str) -> dict[str, Any]:
        """The user blocked the account; there is no one to reply to."""
        return self._event("unfollow", user_id, reply=False)

    def text(self, user_id: str, text: str) -> dict[str, Any]:
        """The user sent a text message."""
        event = self._event("message", user_id, reply=True)
        event["message"] = {
            "type": "text",
            "id": str(secrets.randbelow(10**18)),
            "quoteToken": secrets.token_urlsafe(24),
            "text": text,
        }
        return event

    def location(
        self, user_id: str, latitude: float, longitude: float, *, title: str | None = None, address: str | None = None
    ) -> dict[str, Any]:
        """The user shared a location (title and address only when LINE knows a place there)."""
        event = self._event("message", user_id, reply=True)
        message: dict[str, Any] = {"type": "location", "id": str(secrets.randbelow(10**18))}
        if title is not None:
            message["title"] = title
        if address is not None:
            message["address"] = address
        message["latitude"] = latitude
        message["longitude"] = longitude
        event["message"] = message
        return event

    def postback(self, user_id: str, data: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The user tapped a postback action carrying ``data``."""
        event = self._event("postback", user_id, reply=True)
        event["postback"] = {"data": data, **({"params": params} if params else {})}
        return event

    # -- delivery ------------------------------------------------------------

    async def send(
        self, *events: dict[str, Any], redelivery: bool = False, signature_override: str | None = None
    ) -> WebhookResult:
        """POST ``events`` in one request; ``signature_override`` sends a wrong signature on purpose.

        No events at all is what LINE sends to check that the webhook URL answers.
        """
        if redelivery:
            events = tuple({**e, "deliveryContext": {"isRedelivery": True}} for e in events)
        payload = {"destination": self.destination, "events": list(events)}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        signed = signature(self.channel_secret, body) if signature_override is None else signature_override
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Line-Signature": signed,
            "User-Agent": "LineBotWebhook/2.0",
        }
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(self.url, data=body, headers=headers) as response:
            text = await response.text()
            status = response.status
        self.sent.append(payload)
        return WebhookResult(status, text, body, signed)


# -- a chat in the terminal ------------------------------------------------------

DEMO_USER = "U" + "5a" * 16
HELP = "type a message, a number to tap that button, !location LAT LON, !follow, !unfollow, !quit"


async def _answers(http: aiohttp.ClientSession, api: str, user: str, since: int) -> tuple[int, list[dict[str, Any]]]:
    """What the stand-in at ``api`` delivered to ``user`` from index ``since`` on (waits up to 5 s for some)."""
    deadline = time.monotonic() + 5.0
    while True:
        async with http.get(f"{api}/_standin/stats", params={"since": str(since)}) as r:
            stats = await r.json()
        got = [d for d in stats["deliveries"] if d["to"] == user]
        if got or time.monotonic() > deadline:
            return since + len(stats["deliveries"]), got
        await asyncio.sleep(0.2)


async def chat(hook: str, secret: str, api: str, user: str, lines: Any = None) -> None:
    """Talk to the bot at ``hook`` as ``user``; print its answers (see the module docstring)."""
    sender = LineWebhookSender(hook, secret)
    buttons: list[dict[str, str]] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/_standin/stats") as r:
            seen = int((await r.json())["delivery_count"])
        print(HELP, flush=True)
        for raw in lines or sys.stdin:
            line = raw.strip()
            if not line:
                continue
            if line == "!quit":
                break
            words = line.split()
            if line == "!follow":
                event = sender.follow(user)
            elif line == "!unfollow":
                event = sender.unfollow(user)
            elif words[0] == "!location" and len(words) == 3:
                event = sender.location(user, float(words[1]), float(words[2]))
            elif line.isdigit() and 1 <= int(line) <= len(buttons) and buttons[int(line) - 1]["type"] == "postback":
                event = sender.postback(user, buttons[int(line) - 1]["data"])
            else:
                event = sender.text(user, line)
            if "replyToken" in event:
                async with http.post(f"{api}/_standin/reply_token", json={"userId": user}) as r:
                    event["replyToken"] = (await r.json())["replyToken"]
            result = await sender.send(event)
            if result.status != 200:
                print(f"  (webhook answered {result.status}: {result.text})", flush=True)
                continue
            seen, got = await _answers(http, api, user, seen)
            for delivery in got:
                for text in delivery["texts"]:
                    print("< " + text.replace("\n", "\n  "), flush=True)
                buttons = delivery["quick_replies"] or buttons
            for i, b in enumerate(buttons, 1):
                print(f"  [{i}] {b['label']}" + ("" if b["type"] == "postback" else f" ({b['type']})"), flush=True)
    await sender.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dispatcher.standins.line_webhook``."""
    parser = argparse.ArgumentParser(prog="python -m dispatcher.standins.line_webhook", description=HELP)
    parser.add_argument("--hook", required=True, help="our webhook, e.g. http://127.0.0.1:8080/hooks/line")
    parser.add_argument("--secret", required=True, help="the channel secret the daemon checks signatures with")
    parser.add_argument("--api", required=True, help="the LINE stand-in's base_url (where the answers go)")
    parser.add_argument("--user", default=DEMO_USER, help="the LINE user ID to talk as")
    args = parser.parse_args(argv)
    asyncio.run(chat(args.hook, args.secret, args.api, args.user))
    return 0


if __name__ == "__main__":
    sys.exit(main())
