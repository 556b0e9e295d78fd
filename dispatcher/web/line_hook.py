"""``POST /hooks/line``: the LINE Platform posts what residents do in the city's official account.

Authentication is LINE's own (https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/):
``X-Line-Signature``, the base64 HMAC-SHA256 of the raw body keyed with the channel
secret, compared in constant time (:func:`channels.line_events.signed`) before anything
in the body is read. The events are parsed into :class:`channels.line_events.Inbound`
and handled in order:

* ``follow``: the person is subscribed with the city's defaults (``[service]
  area_codes``' first code, Japanese) unless they are known, then made active again;
* ``unfollow``: everything kept about them is deleted (:func:`dispatcher.store.subscribers.forget`);
* ``text``, ``location``, ``press``: handed to the conversation, when one is given
  (``conversation``), else logged and left.

Answers (JSON ``{"status": ..., ...}``): 200 handled (also for an empty ``events``
list, LINE's check of the URL); 400 a body that is not a webhook request; 401 a missing
or wrong signature (nothing is read or done); 413 a body over ``max_body_bytes``; 503
the database did not take it (LINE redelivers when redelivery is on; follow and
unfollow are idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiohttp import web

from channels.line_events import BadWebhook, Inbound, parse, signed
from dispatcher.store import subscribers
from dispatcher.store.db import DB_ERRORS
from dispatcher.web import auth

log = logging.getLogger(__name__)

PATH = "/hooks/line"
# A webhook request of LINE carries a few events; a megabyte is far more than any.
MAX_BODY = 1024 * 1024

Conversation = Callable[[Inbound], Awaitable[None]]


class LineHook:
    """The webhook of the LINE channel: signature, events, follow and unfollow, the conversation."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        channel_secret: str,
        default_areas: Sequence[str],
        language: str = "ja",
        conversation: Conversation | None = None,
        max_body_bytes: int = MAX_BODY,
        channel: str = "line",
    ) -> None:
        if not channel_secret:
            raise ValueError("the LINE webhook needs the channel secret")
        self.pool = pool
        self._secret = channel_secret
        self.default_areas = list(default_areas)
        self.language = language
        self.conversation = conversation
        self.max_body_bytes = max_body_bytes
        self.channel = channel

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
        except DB_ERRORS as exc:
            log.warning("LINE webhook: database unavailable", extra={"channel": self.channel, "error": str(exc)})
            return _answer(503, "unavailable", error="unavailable")
        return _answer(200, "ok", events=len(events))

    async def on_event(self, event: Inbound) -> None:
        """Handle one event (see the module docstring)."""
        if event.kind == "follow":
            async with self.pool.acquire() as conn:
                sid, new = await subscribers.follow(
                    conn, channel=self.channel, address=event.address, areas=self.default_areas, language=self.language
                )
            log.info("LINE follow", extra={"channel": self.channel, "subscription_id": sid, "new": new})
        elif event.kind == "unfollow":
            async with self.pool.acquire() as conn:
                n = await subscribers.forget(conn, channel=self.channel, address=event.address)
            log.info("LINE unfollow: data deleted", extra={"channel": self.channel, "subscriptions": n})
        if self.conversation is not None:
            await self.conversation(event)
        elif event.kind not in ("follow", "unfollow"):
            log.info("LINE event without a conversation", extra={"channel": self.channel, "kind": event.kind})


def _answer(status: int, state: str, **fields: object) -> web.Response:
    return web.json_response({"status": state, **fields}, status=status)
