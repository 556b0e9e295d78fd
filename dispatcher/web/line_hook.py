"""``POST /hooks/line``: the LINE Platform posts what residents do in the city's official account.

Authentication is LINE's own (https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/):
``X-Line-Signature``, the base64 HMAC-SHA256 of the raw body keyed with the channel
secret, compared in constant time (:func:`channels.line_events.signed`) before anything
in the body is read. The events are parsed into :class:`channels.line_events.Inbound`
and handled in order:

and handed, one transaction each, to the residents' conversation
(:class:`dispatcher.residents.service.ResidentService`), which decides, stores the
settings and queues the replies in the outbox:

* ``follow`` → ``Follow`` (the language menu), ``unfollow`` → ``Unfollow``: everything
  kept about the person is deleted, and here also the alerts still queued for them and
  their address in past deliveries (:func:`dispatcher.store.subscribers.forget`), as
  after ``stop``;
* ``text`` → ``Text``, or ``Command`` for ``/latest``-style commands and a few typed
  words (最新, 設定, 地域, 停止, ヘルプ, テスト and their English names);
* ``location`` → ``SharedLocation``; ``press`` (a postback) → ``Press`` (``Command`` when
  its data starts with ``/``, as a rich menu's may).

The replies of one event are bundled with its reply token (:mod:`dispatcher.store.replies`):
one reply request, free of the monthly quota. An event LINE sends again (same
``webhookEventId``) is handled once.

Answers (JSON ``{"status": ..., ...}``): 200 handled (also for an empty ``events``
list, LINE's check of the URL); 400 a body that is not a webhook request; 401 a missing
or wrong signature (nothing is read or done); 413 a body over ``max_body_bytes``; 503
the database did not take it (LINE redelivers when redelivery is on; follow and
unfollow are idempotent).
"""

from __future__ import annotations

import logging
import time
import unicodedata

import asyncpg
from aiohttp import web

from channels.line_events import BadWebhook, Inbound, parse, signed
from dispatcher.residents.conversation import Command, Event, Follow, Press, SharedLocation, Text, Unfollow
from dispatcher.residents.service import ResidentService
from dispatcher.store import replies, subscribers
from dispatcher.store import residents as residents_store
from dispatcher.store.db import DB_ERRORS
from dispatcher.web import auth

log = logging.getLogger(__name__)

PATH = "/hooks/line"
# A webhook request of LINE carries a few events; a megabyte is far more than any.
MAX_BODY = 1024 * 1024
# Seconds between two purges of the events handled more than a day ago (LINE redelivers
# for a few minutes at most).
PURGE_EVERY = 3600.0

# Typed words that mean a command (LINE has no slash commands), case- and width-folded.
WORDS = {
    "latest": ("latest", "最新", "さいしん", "最新情報"),
    "settings": ("settings", "設定", "せってい"),
    "places": ("places", "地域", "場所", "ちいき"),
    "stop": ("stop", "停止", "配信停止", "ていし"),
    "help": ("help", "ヘルプ", "へるぷ"),
    "test": ("test", "テスト"),
}
_COMMANDS = {unicodedata.normalize("NFKC", w).casefold(): name for name, words in WORDS.items() for w in words}


def _command(text: str) -> Command | None:
    folded = unicodedata.normalize("NFKC", text).strip().casefold()
    if folded.startswith("/") and len(folded) > 1:
        name, _, arg = folded[1:].partition(" ")
        return Command(name.split("@")[0], arg.strip())
    known = _COMMANDS.get(folded)
    return Command(known) if known else None


def to_event(event: Inbound) -> Event | None:
    """The conversation's event for a LINE event (None: nothing to answer, e.g. a sticker)."""
    if event.kind == "follow":
        return Follow()
    if event.kind == "unfollow":
        return Unfollow()
    if event.kind == "text":
        return _command(event.text) or Text(event.text)
    if event.kind == "location" and event.latitude is not None and event.longitude is not None:
        return SharedLocation(event.latitude, event.longitude)
    if event.kind == "press":
        return _command(event.data) if event.data.startswith("/") else Press(event.data)
    return None


class LineHook:
    """The webhook of the LINE channel: the signature, the events, the residents' conversation."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        channel_secret: str,
        residents: ResidentService,
        max_body_bytes: int = MAX_BODY,
        channel: str = "line",
    ) -> None:
        if not channel_secret:
            raise ValueError("the LINE webhook needs the channel secret")
        self.pool = pool
        self._secret = channel_secret
        self.residents = residents
        self.max_body_bytes = max_body_bytes
        self.channel = channel
        self._purged = 0.0

    def routes(self) -> list[web.RouteDef]:
        """The route, public: the signature is its authentication."""

        async def line_webhook(request: web.Request) -> web.Response:
            return await self.handle(request)

        return [web.post(PATH, auth.public(line_webhook))]

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return _answer(413, "rejected", error="too_large")
        body = await request.read()
        if len(body) > self.max_body_bytes:
            return _answer(413, "rejected", error="too_large")
        if not signed(self._secret, body, request.headers.get("X-Line-Signature")):
            log.warning("LINE webhook refused: bad signature", extra={"channel": self.channel, "bytes": len(body)})
            return _answer(401, "rejected", error="bad_signature")
        try:
            events = parse(body, self.channel)
        except BadWebhook as exc:
            return _answer(400, "rejected", error="malformed", reason=str(exc))
        try:
            for event in events:
                await self.on_event(event)
            if events and time.monotonic() - self._purged > PURGE_EVERY:
                self._purged = time.monotonic()
                async with self.pool.acquire() as conn:
                    await residents_store.purge_done(conn, self.channel, hours=24.0)
        except DB_ERRORS as exc:
            log.warning("LINE webhook: database unavailable", extra={"channel": self.channel, "error": str(exc)})
            return _answer(503, "unavailable", error="unavailable")
        return _answer(200, "ok", events=len(events))

    async def on_event(self, event: Inbound) -> None:
        """Handle one event in one transaction (see the module docstring)."""
        wanted = to_event(event)
        async with self.pool.acquire() as conn, conn.transaction():
            if event.event_id and not await replies.first_time(conn, self.channel, event.event_id, event.kind):
                log.info("LINE event already handled", extra={"channel": self.channel, "kind": event.kind})
                return
            if wanted is None:
                return
            before = await replies.last_delivery_id(conn)
            await self.residents.handle_event(self.channel, event.address, wanted, conn=conn)
            if isinstance(wanted, Unfollow) or (isinstance(wanted, Command) and wanted.name == "stop"):
                await subscribers.forget(conn, channel=self.channel, address=event.address)
                log.info("LINE resident left: data deleted", extra={"channel": self.channel})
            if event.reply_token and not isinstance(wanted, Unfollow):
                await replies.bundle_replies(conn, self.channel, event.address, before, event.reply_token)


def _answer(status: int, state: str, **fields: object) -> web.Response:
    return web.json_response({"status": state, **fields}, status=status)
