"""The resident's side of the Telegram Bot API stand-in: updates a bot receives, and what it sent.

:class:`UpdateFeed` is what :class:`~dispatcher.standins.telegram_api.TelegramStandIn`
uses to deliver updates the way Telegram does (https://core.telegram.org/bots/api#getting-updates):

* ``getUpdates`` with ``offset`` (confirms every update below it), ``limit`` and
  ``timeout`` (long polling: the answer waits until an update arrives or the time is up);
  409 while a webhook is set, as Telegram answers;
* ``setWebhook`` (``url``, ``secret_token``, ``drop_pending_updates``), ``deleteWebhook``,
  ``getWebhookInfo``: with a webhook set, each update is POSTed to it as JSON with
  ``X-Telegram-Bot-Api-Secret-Token``, in order, and posted again (after a short pause)
  until the bot answers 2xx;
* a test (or ``dispatcher standin-chat``, or curl against ``/_standin/chats/…``) plays the
  resident: :meth:`UpdateFeed.type` a message or a command, :meth:`UpdateFeed.press` an
  inline button, :meth:`UpdateFeed.share_location`, :meth:`UpdateFeed.leave` (blocks the bot).

Control routes (outside ``/bot…``): ``POST /_standin/chats/{chat}/type`` ``{"text"}``,
``/press`` ``{"data", "message_id"?}`` (default: the last message with buttons),
``/location`` ``{"lat", "lon"}``; ``GET /_standin/chats/{chat}/messages?since=N``: what the bot
sent to the chat, keyboards and edits included.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

RESIDENT_FIRST_NAME = "Resident"


@dataclass(slots=True)
class ChatMessage:
    """A message the bot sent to a chat, as it stands now (edits applied)."""

    message_id: int
    chat_id: str
    text: str
    buttons: list[list[dict[str, str]]] = field(default_factory=list)
    edits: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "text": self.text, "buttons": self.buttons, "edits": self.edits}

    @property
    def button_data(self) -> list[str]:
        return [b.get("callback_data", "") for row in self.buttons for b in row]


def keyboard(markup: Any) -> list[list[dict[str, str]]]:
    """An ``InlineKeyboardMarkup`` parameter (JSON text or object) as rows of buttons; [] if none or bad."""
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except json.JSONDecodeError:
            return []
    if not isinstance(markup, dict):
        return []
    rows = markup.get("inline_keyboard")
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if isinstance(row, list):
            out.append([{k: str(v) for k, v in b.items()} for b in row if isinstance(b, dict)])
    return out


class UpdateFeed:
    """Updates waiting for the bot (or being pushed to its webhook) and the resident's view of each chat."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self.pending: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self.webhook_url = ""
        self.secret_token = ""
        self.webhook_posts = 0
        self.webhook_refused = 0
        self._push: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.chats: dict[str, list[ChatMessage]] = {}
        self.callback_answers: list[dict[str, Any]] = []
        self.delivered = 0

    # -- the resident ----------------------------------------------------------

    def _user(self, chat_id: str) -> dict[str, Any]:
        return {
            "id": int(chat_id) if chat_id.lstrip("-").isdigit() else 1,
            "is_bot": False,
            "first_name": RESIDENT_FIRST_NAME,
            "language_code": "en",
        }

    def _chat(self, chat_id: str) -> dict[str, Any]:
        numeric = chat_id.lstrip("-").isdigit()
        kind = "private" if numeric and not chat_id.startswith("-") else "group"
        return {"id": int(chat_id) if numeric else 1, "type": kind, "first_name": RESIDENT_FIRST_NAME}

    def _message(self, chat_id: str, **content: Any) -> dict[str, Any]:
        return {
            "message_id": 100000 + next(self._ids),
            "from": self._user(chat_id),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            **content,
        }

    def type(self, chat_id: str | int, text: str) -> dict[str, Any]:
        """The resident sends ``text`` (a ``/command`` carries its bot_command entity)."""
        chat = str(chat_id)
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.push({"message": self._message(chat, **content)})

    def share_location(self, chat_id: str | int, lat: float, lon: float) -> dict[str, Any]:
        chat = str(chat_id)
        return self.push({"message": self._message(chat, location={"latitude": lat, "longitude": lon})})

    def press(self, chat_id: str | int, data: str, message_id: int | None = None) -> dict[str, Any]:
        """The resident presses the button ``data`` under ``message_id`` (default: the last keyboard)."""
        chat = str(chat_id)
        sent = self.message(chat, message_id) if message_id is not None else self.last_keyboard(chat)
        message = {
            "message_id": sent.message_id if sent else 1,
            "from": {"id": 7000000001, "is_bot": True, "first_name": "bot"},
            "chat": self._chat(chat),
            "date": int(time.time()),
            "text": sent.text if sent else "",
        }
        query = {
            "id": str(next(self._callback_ids)),
            "from": self._user(chat),
            "message": message,
            "chat_instance": f"ci-{chat}",
            "data": data,
        }
        return self.push({"callback_query": query})

    def leave(self, chat_id: str | int) -> dict[str, Any]:
        """The resident blocks the bot: a ``my_chat_member`` update with status ``kicked``."""
        chat = str(chat_id)
        bot = {"id": 7000000001, "is_bot": True, "first_name": "bot"}
        member = {
            "chat": self._chat(chat),
            "from": self._user(chat),
            "date": int(time.time()),
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, "status": "kicked", "until_date": 0},
        }
        return self.push({"my_chat_member": member})

    def push(self, content: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (``update_id`` is assigned here) for getUpdates or the webhook."""
        update = {"update_id": next(self._ids), **content}
        self.pending.append(update)
        self._arrived.set()
        if self.webhook_url and (self._push is None or self._push.done()):
            self._push = asyncio.create_task(self._deliver())
        return update

    # -- what the bot sent -----------------------------------------------------

    def sent(self, chat_id: str, message_id: int, text: str, markup: Any) -> None:
        self.chats.setdefault(chat_id, []).append(ChatMessage(message_id, chat_id, text, keyboard(markup)))

    def edit(self, chat_id: str, message_id: int, text: str, markup: Any) -> bool:
        found = self.message(chat_id, message_id)
        if found is None:
            return False
        found.text = text
        found.buttons = keyboard(markup)
        found.edits += 1
        return True

    def message(self, chat_id: str, message_id: int) -> ChatMessage | None:
        return next((m for m in self.chats.get(chat_id, []) if m.message_id == message_id), None)

    def last_keyboard(self, chat_id: str) -> ChatMessage | None:
        return next((m for m in reversed(self.chats.get(chat_id, [])) if m.buttons), None)

    def transcript(self, chat_id: str | int) -> list[ChatMessage]:
        return list(self.chats.get(str(chat_id), []))

    # -- getUpdates / webhook --------------------------------------------------

    def confirm(self, offset: int) -> None:
        self.pending = [u for u in self.pending if u["update_id"] >= offset]

    async def get_updates(self, offset: int | None, limit: int, timeout: float) -> list[dict[str, Any]]:
        if offset is not None:
            self.confirm(offset)
        if not self.pending and timeout > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        batch = self.pending[: max(1, min(limit, 100))]
        self.delivered += len(batch)
        return batch

    async def set_webhook(self, url: str, secret_token: str, *, drop_pending: bool) -> None:
        self.webhook_url, self.secret_token = url, secret_token
        if drop_pending:
            self.pending.clear()
        if self.pending and (self._push is None or self._push.done()):
            self._push = asyncio.create_task(self._deliver())

    async def delete_webhook(self, *, drop_pending: bool) -> None:
        self.webhook_url = self.secret_token = ""
        if drop_pending:
            self.pending.clear()

    def webhook_info(self) -> dict[str, Any]:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self.pending)}

    async def _deliver(self) -> None:
        """POST pending updates to the webhook in order, each until it is answered 2xx."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        while self.pending and self.webhook_url:
            update = self.pending[0]
            headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret_token} if self.secret_token else {}
            try:
                async with self._session.post(self.webhook_url, json=update, headers=headers) as resp:
                    self.webhook_posts += 1
                    ok = 200 <= resp.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                if self.pending and self.pending[0] is update:
                    self.pending.pop(0)
                    self.delivered += 1
                continue
            self.webhook_refused += 1
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._push is not None:
            self._push.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- control routes --------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_standin/chats/{chat}/type", self._r_type),
            web.post("/_standin/chats/{chat}/press", self._r_press),
            web.post("/_standin/chats/{chat}/location", self._r_location),
            web.get("/_standin/chats/{chat}/messages", self._r_messages),
        ]

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def _r_type(self, request: web.Request) -> web.Response:
        text = (await self._body(request)).get("text")
        if not isinstance(text, str) or not text:
            raise web.HTTPBadRequest(text='"text" must be a non-empty string')
        return web.json_response(self.type(request.match_info["chat"], text))

    async def _r_press(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        data, message_id = body.get("data"), body.get("message_id")
        if not isinstance(data, str) or (message_id is not None and not isinstance(message_id, int)):
            raise web.HTTPBadRequest(text='"data" must be a string, "message_id" an integer')
        return web.json_response(self.press(request.match_info["chat"], data, message_id))

    async def _r_location(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            lat, lon = float(body["lat"]), float(body["lon"])
        except (KeyError, TypeError, ValueError):
            raise web.HTTPBadRequest(text='"lat" and "lon" must be numbers') from None
        return web.json_response(self.share_location(request.match_info["chat"], lat, lon))

    async def _r_messages(self, request: web.Request) -> web.Response:
        try:
            since = max(0, int(request.query.get("since", "0")))
        except ValueError:
            raise web.HTTPBadRequest(text="since must be an integer") from None
        messages = self.transcript(request.match_info["chat"])[since:]
        return web.json_response({"messages": [m.as_json() for m in messages]})
