"""The residents' Telegram bot: updates in (webhook or long polling), python-telegram-bot's handlers, the core.

How an update travels:

1. **Intake, durable before it is acknowledged.** ``updates = "webhook"``: Telegram POSTs
   each update to ``/hooks/telegram`` (registered with ``setWebhook`` and a
   ``secret_token``; the ``X-Telegram-Bot-Api-Secret-Token`` header is compared in constant
   time). ``updates = "polling"``: one daemon at a time (advisory lock ``tgpoller``) long-polls
   ``getUpdates`` and stores each batch together with the next offset (``bot_offsets``), so a
   restart neither loses nor repeats an update. Either way the update is a ``bot_updates``
   row (unique per ``update_id``: a redelivered update is stored once) before Telegram gets
   its 200. Concurrent webhook requests share one INSERT (:class:`Intake`, a group commit).
2. **Processing, in order, once.** One daemon at a time (advisory lock ``tgupdate``) takes
   stored updates in arrival order and feeds each to a python-telegram-bot ``Application``
   built without an ``Updater`` (PTB's recommended shape when updates are received by
   one's own server: ``Update.de_json`` then ``Application.process_update``; see
   https://docs.python-telegram-bot.org/en/stable/examples.customwebhookbot.html). Its
   handlers (``CommandHandler``, ``MessageHandler`` with ``filters.LOCATION`` /
   ``filters.TEXT``, ``CallbackQueryHandler``, ``ChatMemberHandler``) turn the update into a
   provider-neutral event for :class:`~dispatcher.residents.service.ResidentService`. A batch
   of updates, the settings they change, the replies they queue and their ``done_at`` commit
   in one transaction; callback queries are answered (``answerCallbackQuery``) after it.
3. **Replies** are outbox deliveries (priority after every alert), sent by the Telegram
   channel's worker under the same rate limits as alerts: a CRITICAL alert overtakes them.

``Application.initialize`` calls ``getMe``; it is retried in the background, so the daemon
starts (and keeps taking updates in) while Telegram is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import logging
from collections.abc import Callable

import asyncpg
from aiohttp import web
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from channels.telegram import TelegramConfig
from dispatcher.residents.conversation import Command, Event, Press, SharedLocation, Text, Unfollow
from dispatcher.residents.service import ResidentService
from dispatcher.store import locks
from dispatcher.store import residents as store
from dispatcher.store.db import DB_ERRORS

log = logging.getLogger(__name__)

CHANNEL = "telegram"
WEBHOOK_PATH = "/hooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
COMMANDS = ("start", "places", "settings", "latest", "test", "stop", "help", "language")
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
# Updates decided per transaction, and the largest update body taken in.
BATCH = 200
MAX_UPDATE_BYTES = 1_000_000

# The connection (inside the batch's transaction) and the callback queries to answer
# after it commits, for the handlers of the update being processed.
_CONN: contextvars.ContextVar[asyncpg.Connection] = contextvars.ContextVar("telegram_update_conn")
_ANSWERS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("telegram_callback_answers")


class Intake:
    """Stores updates as they arrive; requests arriving together share one INSERT (group commit)."""

    def __init__(self, pool: asyncpg.Pool, channel: str, on_stored: Callable[[], None]) -> None:
        self.pool = pool
        self.channel = channel
        self.on_stored = on_stored
        self._waiting: list[tuple[str, str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.stored = 0

    async def accept(self, key: str, body: str) -> None:
        """Return once the update is committed; raises what the database raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, body, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:5000], self._waiting[5000:]
            try:
                async with self.pool.acquire() as conn:
                    await store.store_updates(conn, self.channel, [b[0] for b in batch], [b[1] for b in batch])
            except Exception as exc:
                for _k, _b, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.stored += len(batch)
            for _k, _b, future in batch:
                if not future.done():
                    future.set_result(None)
            self.on_stored()


class TelegramBot:
    """The residents' bot on one Telegram token: intake, processing, webhook registration."""

    def __init__(
        self, config: TelegramConfig, pool: asyncpg.Pool, service: ResidentService, *, webhook_url: str = ""
    ) -> None:
        self.config = config
        self.pool = pool
        self.service = service
        self.webhook_url = config.webhook_url or webhook_url
        self.wake = asyncio.Event()
        self.intake = Intake(pool, CHANNEL, self.wake.set)
        self.processed = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self.application = (
            Application.builder()
            .token(config.token)
            .base_url(config.base_url)
            .updater(None)
            .request(HTTPXRequest(connection_pool_size=4, connect_timeout=config.connect_timeout))
            .get_updates_request(
                HTTPXRequest(connection_pool_size=1, read_timeout=config.poll_timeout + config.read_timeout)
            )
            .build()
        )
        app = self.application
        app.add_handler(CommandHandler(list(COMMANDS), self._on_command))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migrate))
        app.add_handler(MessageHandler(filters.COMMAND, self._on_command))
        app.add_handler(MessageHandler(filters.LOCATION, self._on_location))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._on_text))
        app.add_handler(CallbackQueryHandler(self._on_press))
        app.add_handler(ChatMemberHandler(self._on_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self._on_error)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the background tasks (no waiting for Telegram)."""
        self._tasks.append(asyncio.create_task(self._initialize(), name="telegram-bot-init"))
        self._tasks.append(asyncio.create_task(self._process_loop(), name="telegram-bot-updates"))
        if self.config.updates == "polling":
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="telegram-bot-poller"))

    async def stop(self) -> None:
        self._stopping.set()
        self.wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._ready.is_set():
            with contextlib.suppress(Exception):
                await self.application.shutdown()

    async def _initialize(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.application.initialize()
                if self.config.updates == "webhook":
                    await self.application.bot.set_webhook(
                        url=self.webhook_url,
                        secret_token=self.config.webhook_secret,
                        allowed_updates=ALLOWED_UPDATES,
                    )
                elif self.config.updates == "polling":
                    # getUpdates is refused while a webhook is set.
                    await self.application.bot.delete_webhook(drop_pending_updates=False)
            except TelegramError as exc:
                log.warning("telegram bot not ready; retrying", extra={"channel": CHANNEL, "error": _safe(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            log.info("telegram bot ready", extra={"channel": CHANNEL, "updates": self.config.updates})
            self._ready.set()
            self.wake.set()
            return

    # -- intake ----------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        """``POST /hooks/telegram``: check the secret, store the update, then 200."""
        given = request.headers.get(SECRET_HEADER, "")
        expected = self.config.webhook_secret
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"error": "bad_secret"}, status=401)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return web.json_response({"error": "too_large"}, status=413)
        raw = await request.read()
        if len(raw) > MAX_UPDATE_BYTES:
            return web.json_response({"error": "too_large"}, status=413)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "malformed", "reason": "body is not JSON"}, status=400)
        update_id = body.get("update_id") if isinstance(body, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            return web.json_response({"error": "malformed", "reason": "not an update (no update_id)"}, status=400)
        try:
            await self.intake.accept(str(update_id), raw.decode())
        except DB_ERRORS:
            return web.json_response({"error": "unavailable"}, status=503)
        return web.json_response({"ok": True})

    async def _poll_loop(self) -> None:
        await self._ready.wait()
        while not self._stopping.is_set():
            async with locks.exclusive(self.pool, "tgpoller") as mine:
                if not mine:
                    await self._pause(5.0)
                    continue
                log.info("polling telegram for updates", extra={"channel": CHANNEL})
                while not self._stopping.is_set():
                    try:
                        await self._poll_once()
                    except TelegramError as exc:
                        log.warning("getUpdates failed", extra={"channel": CHANNEL, "error": _safe(exc)})
                        await self._pause(2.0)
                    except DB_ERRORS as exc:
                        log.warning("database unavailable; poller waits", extra={"error": str(exc)})
                        await self._pause(2.0)
                        break

    async def _poll_once(self) -> int:
        async with self.pool.acquire() as conn:
            offset = await store.next_offset(conn, CHANNEL)
        updates = await self.application.bot.get_updates(
            offset=offset, timeout=self.config.poll_timeout, allowed_updates=ALLOWED_UPDATES
        )
        if not updates:
            return 0
        keys = [str(u.update_id) for u in updates]
        bodies = [json.dumps(u.to_dict(), ensure_ascii=False) for u in updates]
        async with self.pool.acquire() as conn:
            await store.store_polled(conn, CHANNEL, keys, bodies, max(u.update_id for u in updates) + 1)
        self.wake.set()
        return len(updates)

    # -- processing ------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _process_loop(self) -> None:
        await self._ready.wait()
        while not self._stopping.is_set():
            async with locks.exclusive(self.pool, "tgupdate") as mine:
                if not mine:
                    await self._pause(5.0)
                    continue
                while not self._stopping.is_set():
                    self.wake.clear()
                    try:
                        n = await self.process_batch()
                    except DB_ERRORS as exc:
                        log.warning("database unavailable; bot waits", extra={"error": str(exc)})
                        await self._pause(2.0)
                        break
                    except Exception:
                        log.exception("processing telegram updates failed")
                        await self._pause(5.0)
                        continue
                    if not n:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.wake.wait(), 1.0)

    async def process_batch(self) -> int:
        """Decide up to :data:`BATCH` stored updates in one transaction; answer their callback queries."""
        answers: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            items = await store.claim_updates(conn, CHANNEL, BATCH)
            if not items:
                return 0
            conn_token = _CONN.set(conn)
            answers_token = _ANSWERS.set(answers)
            try:
                for _id, body in items:
                    update = Update.de_json(body, self.application.bot)
                    await self.application.process_update(update)
            finally:
                _CONN.reset(conn_token)
                _ANSWERS.reset(answers_token)
            await store.mark_done(conn, [i for i, _ in items])
            if self.processed // 10_000 != (self.processed + len(items)) // 10_000:
                await store.purge_done(conn, CHANNEL)
        self.processed += len(items)
        for query_id in answers:
            try:
                await self.application.bot.answer_callback_query(query_id)
            except TelegramError as exc:  # too late or gone: the reply still comes as a message
                log.info("callback query not answered", extra={"channel": CHANNEL, "error": _safe(exc)})
        return len(items)

    async def _event(self, update: Update, event: Event, *, edit_target: str | None = None) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        await self.service.handle_event(CHANNEL, str(chat.id), event, conn=_CONN.get(), edit_target=edit_target)

    # -- handlers (python-telegram-bot callbacks) --------------------------------

    async def _on_command(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        head, _, arg = message.text.partition(" ")
        name = head.lstrip("/").split("@", 1)[0].lower()
        await self._event(update, Command(name, arg.strip()))

    async def _on_text(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None and message.text:
            await self._event(update, Text(message.text[:200]))

    async def _on_location(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None and message.location is not None:
            await self._event(update, SharedLocation(message.location.latitude, message.location.longitude))

    async def _on_press(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        _ANSWERS.get().append(query.id)
        target = str(query.message.message_id) if query.message is not None else None
        await self._event(update, Press(str(query.data or "")), edit_target=target)

    async def _on_member(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        member = update.my_chat_member
        if member is not None and member.new_chat_member.status in ("kicked", "left"):
            await self._event(update, Unfollow())

    async def _on_migrate(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.migrate_to_chat_id is None:
            return
        moved = await store.rename_address(_CONN.get(), CHANNEL, str(message.chat.id), str(message.migrate_to_chat_id))
        log.info("group migrated to a supergroup", extra={"channel": CHANNEL, "recorded": moved})

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # The event's savepoint was rolled back; a lost connection fails the whole batch
        # at mark_done, and the batch is taken again.
        log.error("telegram update failed", exc_info=context.error, extra={"channel": CHANNEL})


def _safe(exc: BaseException) -> str:
    return str(exc).split("/bot", 1)[0] if "/bot" in str(exc) else str(exc)


def route(bot: TelegramBot) -> web.RouteDef:
    """The webhook route (public: authenticated by the secret token)."""
    from dispatcher.web import auth

    async def telegram_webhook(request: web.Request) -> web.Response:
        return await bot.webhook(request)

    return web.post(WEBHOOK_PATH, auth.public(telegram_webhook))
