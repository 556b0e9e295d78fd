"""A local stand-in for the Telegram Bot API, for the demo, tests and benchmarks.

It speaks the real wire format (https://core.telegram.org/bots/api#making-requests):
``GET|POST /bot<token>/<method>`` with query, JSON or form parameters, answering
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description":
"...", "parameters": {...}}``. Implemented: ``getMe``, ``sendMessage`` (with an inline
keyboard), ``editMessageText``, ``answerCallbackQuery``, and the updates a bot receives
(``getUpdates`` long polling, ``setWebhook`` with ``secret_token``, ``deleteWebhook``,
``getWebhookInfo``) with a resident to play in :mod:`dispatcher.standins.telegram_updates`
(:attr:`TelegramStandIn.updates`).

Knobs reproduce what the real service does to a bot: blocked users (403), unknown
chats (400), flood control (429 with ``retry_after``, on demand or by enforcing
Telegram's limits of about 30 messages/s overall and 1 message/s per chat, see
https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this),
groups migrated to supergroups, and server errors.

``GET /_standin/stats`` (outside the ``/bot...`` namespace) reports what the
stand-in received, as JSON, for benchmarks that run it in another process:
``python -m dispatcher.standins.telegram_api --global-rate 30 --per-chat-interval 1.0``
prints its ``base_url`` on one line and serves until SIGTERM or SIGINT (``--delay S``:
answer every sendMessage S seconds late, a slow provider).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dispatcher.standins.telegram_updates import UpdateFeed

STATS_PATH = "/_standin/stats"

BOT_USER: dict[str, Any] = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "沼津市防災情報",
    "username": "numazu_bousai_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the stand-in accepted."""

    message_id: int
    chat_id: str
    text: str
    parse_mode: str | None
    # time.monotonic() at acceptance, for rate measurements.
    at: float


@dataclass(frozen=True, slots=True)
class RateLimitedAnswer:
    """One 429 the stand-in answered."""

    # time.monotonic() when answered, the same clock as SentMessage.at.
    at: float
    chat_id: str
    # "global" or "per_chat" (an enforced limit), or "injected" (flood()).
    limit: str


@dataclass(slots=True)
class _Failure:
    status: int
    remaining: int
    chat_id: str | None = None
    retry_after: int | None = None


class TelegramStandIn:
    """An aiohttp server answering like ``api.telegram.org`` for one bot token.

    ``token=None`` accepts any token. ``global_rate`` (messages/s) and
    ``per_chat_interval`` (seconds) make the server enforce rate limits itself,
    answering 429 with ``retry_after`` like Telegram's flood control.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        global_rate: float | None = None,
        per_chat_interval: float | None = None,
    ) -> None:
        self.token = token
        self.global_rate = global_rate
        self.per_chat_interval = per_chat_interval
        self.messages: list[SentMessage] = []
        self.requests = 0
        self.rate_limited = 0
        self.rate_limited_answers: list[RateLimitedAnswer] = []
        self.blocked: set[str] = set()
        self.missing: set[str] = set()
        self.migrated: dict[str, int] = {}
        self._failures: list[_Failure] = []
        self._window: deque[float] = deque()
        self._last_per_chat: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        # Seconds to wait before answering sendMessage.
        self.delay = 0.0
        # Updates for the bot, and each chat as the resident sees it.
        self.updates = UpdateFeed()

    # -- knobs ---------------------------------------------------------------

    def block(self, chat_id: str | int) -> None:
        """The user blocked the bot: 403 for this chat from now on."""
        self.blocked.add(str(chat_id))

    def forget(self, chat_id: str | int) -> None:
        """The chat does not exist: 400 "chat not found"."""
        self.missing.add(str(chat_id))

    def migrate(self, chat_id: str | int, new_chat_id: int) -> None:
        """The group became a supergroup: 400 with ``migrate_to_chat_id``."""
        self.migrated[str(chat_id)] = new_chat_id

    def flood(self, retry_after: int, *, count: int = 1, chat_id: str | int | None = None) -> None:
        """Answer the next ``count`` sendMessage requests (of ``chat_id``, or any) with 429."""
        chat = None if chat_id is None else str(chat_id)
        self._failures.append(_Failure(429, count, chat, retry_after))

    def fail(self, status: int = 500, *, count: int = 1, chat_id: str | int | None = None) -> None:
        """Answer the next ``count`` sendMessage requests with a server error."""
        chat = None if chat_id is None else str(chat_id)
        self._failures.append(_Failure(status, count, chat))

    def reset(self) -> None:
        """Forget recorded messages and every knob (the limits stay)."""
        self.messages.clear()
        self.requests = self.rate_limited = 0
        self.rate_limited_answers.clear()
        self.blocked.clear()
        self.missing.clear()
        self.migrated.clear()
        self._failures.clear()
        self._window.clear()
        self._last_per_chat.clear()

    # -- lifecycle -----------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); return the ``base_url`` for bots."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get(STATS_PATH, self._stats)
        app.router.add_routes(self.updates.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}/bot"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        await self.updates.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stats(self, since: int = 0) -> dict[str, Any]:
        """What was received so far; ``messages`` from index ``since`` on (cheap polling)."""
        return {
            "clock": "monotonic",
            "now": time.monotonic(),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "rate_limited_answers": [
                {"at": r.at, "chat_id": r.chat_id, "limit": r.limit} for r in self.rate_limited_answers
            ],
            "message_count": len(self.messages),
            "since": since,
            "messages": [{"chat_id": m.chat_id, "at": m.at} for m in self.messages[since:]],
        }

    async def _stats(self, request: web.Request) -> web.Response:
        try:
            since = max(0, int(request.query.get("since", "0")))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        return web.json_response(self.stats(since))

    # -- protocol ------------------------------------------------------------

    @staticmethod
    def _error(status: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                # PTB posts multipart/form-data; curl users post urlencoded forms.
                params.update(await request.post())
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.token is not None and request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"].lower()
        try:
            params = await self._params(request)
        except (ValueError, json.JSONDecodeError):
            return self._error(400, "Bad Request: can't parse request body")
        if method == "getme":
            return web.json_response({"ok": True, "result": BOT_USER})
        if method == "sendmessage":
            if self.delay:
                # A slow provider: lets tests catch sends in flight.
                await asyncio.sleep(self.delay)
            return self._send_message(params)
        handler = self._update_methods().get(method)
        if handler is not None:
            answer: web.Response = await handler(params)
            return answer
        return self._error(404, "Not Found")

    def _update_methods(self) -> dict[str, Any]:
        return {
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "answercallbackquery": self._answer_callback_query,
            "editmessagetext": self._edit_message_text,
        }

    @staticmethod
    def _int(params: dict[str, Any], key: str, default: int | None) -> int | None:
        value = params.get(key)
        if value is None or value == "":
            return default
        return int(value)

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        if self.updates.webhook_url:
            return self._error(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook")
        try:
            offset = self._int(params, "offset", None)
            limit = self._int(params, "limit", 100) or 100
            timeout = self._int(params, "timeout", 0) or 0
        except ValueError:
            return self._error(400, "Bad Request: offset, limit and timeout must be integers")
        batch = await self.updates.get_updates(offset, limit, float(min(timeout, 50)))
        return web.json_response({"ok": True, "result": batch})

    async def _set_webhook(self, params: dict[str, Any]) -> web.Response:
        url = str(params.get("url") or "")
        secret = str(params.get("secret_token") or "")
        if url and not url.startswith(("http://", "https://")):
            return self._error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if secret and (len(secret) > 256 or not all(c.isalnum() or c in "_-" for c in secret)):
            return self._error(400, "Bad Request: secret token contains unallowed characters")
        drop = str(params.get("drop_pending_updates", "")).lower() in ("true", "1")
        if url:
            await self.updates.set_webhook(url, secret, drop_pending=drop)
        else:
            await self.updates.delete_webhook(drop_pending=drop)
        return web.json_response({"ok": True, "result": True, "description": "Webhook was set"})

    async def _delete_webhook(self, params: dict[str, Any]) -> web.Response:
        drop = str(params.get("drop_pending_updates", "")).lower() in ("true", "1")
        await self.updates.delete_webhook(drop_pending=drop)
        return web.json_response({"ok": True, "result": True, "description": "Webhook was deleted"})

    async def _get_webhook_info(self, _params: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, "result": self.updates.webhook_info()})

    async def _answer_callback_query(self, params: dict[str, Any]) -> web.Response:
        if not params.get("callback_query_id"):
            return self._error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.updates.callback_answers.append(dict(params))
        return web.json_response({"ok": True, "result": True})

    async def _edit_message_text(self, params: dict[str, Any]) -> web.Response:
        chat_id = str(params.get("chat_id", "")).strip()
        text = str(params.get("text", ""))
        try:
            message_id = int(params.get("message_id", ""))
        except ValueError:
            return self._error(400, "Bad Request: message identifier is not specified")
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if not self.updates.edit(chat_id, message_id, text, params.get("reply_markup")):
            return self._error(400, "Bad Request: message to edit not found")
        result = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private"},
            "text": text,
        }
        return web.json_response({"ok": True, "result": result})

    def _count_429(self, chat_id: str, limit: str, at: float | None = None) -> None:
        self.rate_limited += 1
        self.rate_limited_answers.append(RateLimitedAnswer(time.monotonic() if at is None else at, chat_id, limit))

    def _injected(self, chat_id: str) -> web.Response | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.chat_id in (None, chat_id):
                failure.remaining -= 1
                if failure.status == 429:
                    self._count_429(chat_id, "injected")
                    retry_after = failure.retry_after or 1
                    return self._error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
                return self._error(failure.status, "Internal Server Error")
        self._failures = [f for f in self._failures if f.remaining > 0]
        return None

    def _over_limit(self, chat_id: str, now: float) -> tuple[int, str] | None:
        """(Seconds to wait, which limit) if accepting now would break an enforced limit."""
        if self.per_chat_interval is not None:
            last = self._last_per_chat.get(chat_id)
            if last is not None and now - last < self.per_chat_interval:
                return max(1, math.ceil(self.per_chat_interval - (now - last))), "per_chat"
        if self.global_rate is not None:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.global_rate:
                return max(1, math.ceil(1.0 - (now - self._window[0]))), "global"
        return None

    def _send_message(self, params: dict[str, Any]) -> web.Response:
        chat_id = str(params.get("chat_id", "")).strip()
        text = str(params.get("text", ""))
        if not chat_id:
            return self._error(400, "Bad Request: chat_id is empty")
        injected = self._injected(chat_id)
        if injected is not None:
            return injected
        if chat_id in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.missing:
            return self._error(400, "Bad Request: chat not found")
        if chat_id in self.migrated:
            return self._error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=self.migrated[chat_id],
            )
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return self._error(400, "Bad Request: message is too long")
        now = time.monotonic()
        over = self._over_limit(chat_id, now)
        if over is not None:
            wait, limit = over
            self._count_429(chat_id, limit, now)
            return self._error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        self._window.append(now)
        self._last_per_chat[chat_id] = now
        parse_mode = params.get("parse_mode")
        message = SentMessage(
            message_id=len(self.messages) + 1,
            chat_id=chat_id,
            text=text,
            parse_mode=str(parse_mode) if parse_mode else None,
            at=now,
        )
        self.messages.append(message)
        self.updates.sent(chat_id, message.message_id, text, params.get("reply_markup"))
        numeric = chat_id.lstrip("-").isdigit()
        chat: dict[str, Any] = (
            {"id": int(chat_id), "type": "private" if not chat_id.startswith("-") else "group"}
            if numeric
            else {"id": -1000000000000 - len(chat_id), "type": "channel", "username": chat_id}
        )
        result = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
            "text": text,
        }
        return web.json_response({"ok": True, "result": result})


# -- standalone ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dispatcher.standins.telegram_api",
        description="Serve the Telegram Bot API stand-in until SIGTERM; print its base_url first.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    p.add_argument("--token", default=None, help="accept only this bot token (default: any)")
    p.add_argument("--global-rate", type=float, default=None, help="enforce N messages/s overall")
    p.add_argument("--per-chat-interval", type=float, default=None, help="enforce N seconds between messages to a chat")
    p.add_argument("--delay", type=float, default=0.0, help="answer every sendMessage N seconds late")
    return p


async def _serve(args: argparse.Namespace) -> None:
    standin = TelegramStandIn(args.token, global_rate=args.global_rate, per_chat_interval=args.per_chat_interval)
    standin.delay = args.delay
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base_url = await standin.start(args.host, args.port)
    try:
        print(base_url, flush=True)
        await stop.wait()
    finally:
        await standin.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dispatcher.standins.telegram_api``."""
    asyncio.run(_serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
