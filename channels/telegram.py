"""Telegram: one ``sendMessage`` per subscriber through a bot.

Bot API: https://core.telegram.org/bots/api (``sendMessage``, ``getMe``, error
``parameters`` such as ``retry_after`` and ``migrate_to_chat_id``), limits:
https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this.
Client: python-telegram-bot 22 (https://docs.python-telegram-bot.org/), used only as
an HTTP client: no Application, no updates, no retries of its own.

How provider answers become results:

=====================================================  ==========================================
Telegram answer (PTB exception)                        result
=====================================================  ==========================================
``ok: true``                                           ``Delivered(str(message_id))``
429 ``retry_after`` (``RetryAfter``)                   ``Retry(rate_limited=True, after=N,
                                                       bucket=None)``
403 blocked / deactivated / kicked (``Forbidden``)     ``Reject(unsubscribe=True)``
400 "chat not found" (``BadRequest``)                  ``Reject(unsubscribe=True)``
400 anything else (``BadRequest``)                     ``Reject(unsubscribe=False)``
400 ``migrate_to_chat_id`` (``ChatMigrated``)          ``Reject(unsubscribe=False)``, reason
                                                       carries ``new_chat_id=<id>``
401/404 token rejected (``InvalidToken``)              ``Retry`` (our misconfiguration, not the
                                                       resident's: keep the message)
timeouts, 5xx, connection errors (``NetworkError``)    ``Retry(after=None)``
=====================================================  ==========================================

Why a 429 pauses the whole channel (``bucket=None``): Telegram does not say
whether a 429 is its global flood control or a per-chat one. The dispatcher
already spaces messages to one chat by ``per_recipient_interval`` (1 s), so a
429 almost always means the global budget was exceeded; pausing only that chat
would keep the other workers hammering Telegram, which answers with longer flood
bans. Overestimating costs at most ``retry_after`` seconds once.

Why a migrated group is a Reject: the old chat id will never work again, and a
channel never re-sends on its own. The Reject carries the new id (``moved_to``); the
dispatcher records it on the subscription and queues the message again for the new
chat (:func:`dispatcher.store.outbox.move_recipient`).

A bot's reply (``Message.extra["reply"]``, see :mod:`dispatcher.residents`) carries its
buttons as an inline keyboard (``callback_data`` at most 64 bytes), and a keyboard page
with ``edit_message_id`` replaces the message whose button was pressed
(``editMessageText``; if that message cannot be edited, it is sent anew).
"""

from __future__ import annotations

import dataclasses
import html
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from channels.base import Channel, ChannelContext, Delivered, Health, Reject, Retry, SendResult
from channels.posts import kind_of, retracted_note
from dispatcher.constraints import at_least, greater_than, http_url, replaced_whole
from dispatcher.model import Alert, Area, Message, MsgType, Recipient

logger = logging.getLogger(__name__)

# PTB 22 warns whenever RetryAfter.retry_after is read (including inside its own
# constructor) until it switches to timedelta; we accept both types, so the
# warning is noise on every 429. Narrowly scoped to that one attribute.
warnings.filterwarnings("ignore", message=r".*attribute `retry_after`", category=PTBDeprecationWarning)

# Loggers of the HTTP stack that may print the bot URL, which contains the token.
_LEAKY_LOGGERS = ("httpx", "httpcore", "telegram.Bot", "telegram._bot")


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """``[channels.telegram]``: the bot token and HTTP settings.

    ``base_url`` is the Bot API prefix the token is appended to; point it at a
    local Bot API server or :class:`dispatcher.standins.telegram_api.TelegramStandIn`.
    """

    token: str = field(repr=False)
    base_url: str = field(default="https://api.telegram.org/bot", metadata=http_url())
    parse_mode: Literal["HTML"] | None = None
    connect_timeout: float = field(default=5.0, metadata=greater_than(0))
    read_timeout: float = field(default=10.0, metadata=greater_than(0))
    write_timeout: float = field(default=10.0, metadata=greater_than(0))
    pool_timeout: float = field(default=2.0, metadata=greater_than(0))
    connection_pool_size: int = field(default=64, metadata=at_least(1))
    # The residents' bot (dispatcher/residents/telegram.py): how updates arrive.
    updates: Literal["off", "webhook", "polling"] = "off"
    # Where Telegram posts updates (webhook); empty: [service] public_url + /hooks/telegram.
    webhook_url: str = ""
    # The setWebhook secret_token Telegram sends back in X-Telegram-Bot-Api-Secret-Token.
    webhook_secret: str = field(default="", repr=False)
    # getUpdates long-polling timeout, seconds.
    poll_timeout: int = field(default=30, metadata=at_least(0))
    # Public Telegram channels the service posts each alert to once: district code (or
    # "all": the whole city) → chat id ("-100…") or "@username". The bot must be an admin there.
    district_channels: Mapping[str, str] = field(default_factory=dict, metadata=replaced_whole())

    def __post_init__(self) -> None:
        # Messages name no section: the loader adds "[channels.telegram]" and the file.
        if not self.token:
            raise ValueError("token is empty")
        if self.parse_mode not in (None, "HTML"):
            raise ValueError(f"parse_mode must be HTML or absent, not {self.parse_mode!r}")
        if self.updates not in ("off", "webhook", "polling"):
            raise ValueError(f"updates must be off, webhook or polling, not {self.updates!r}")
        secret = self.webhook_secret
        if self.updates == "webhook" and not secret:
            raise ValueError("updates = webhook needs webhook_secret (webhook_secret_env / webhook_secret_file)")
        if secret and (len(secret) < 32 or len(secret) > 256 or not all(c.isalnum() or c in "_-" for c in secret)):
            raise ValueError("webhook_secret must be 32-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        for district, chat in self.district_channels.items():
            if not isinstance(chat, str) or not (chat.startswith("@") or chat.lstrip("-").isdigit()):
                raise ValueError(f"district_channels.{district} must be a chat id (-100…) or @username, not {chat!r}")
        if self.webhook_url and not self.webhook_url.startswith(("https://", "http://")):
            raise ValueError(f"webhook_url must be an http(s) URL, not {self.webhook_url!r}")


class _RedactToken(logging.Filter):
    """Replace the bot token in records of third-party loggers."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._token in message:
            record.msg = message.replace(self._token, "<token>")
            record.args = ()
        return True


class TelegramChannel(Channel):
    """Sends each subscriber a private message from the city's bot.

    Limits: messages up to 4096 characters; Telegram allows a bot about 30
    messages per second overall and 1 message per second to one chat, hence
    ``rate_per_second = 30`` and ``per_recipient_interval = 1.0``.
    """

    name: ClassVar[str] = "telegram"
    config_class: ClassVar[type[TelegramConfig]] = TelegramConfig
    config: TelegramConfig
    max_text_length: ClassVar[int] = 4096
    rate_per_second: ClassVar[float] = 30.0
    per_recipient_interval: ClassVar[float | None] = 1.0
    # 30 msg/s at a round trip of 100-200 ms needs about 3-6 requests in flight. More only
    # delay each alert's first message: python-telegram-bot prepares every request started
    # at once before the first goes out (bench/latency.py shows it).
    concurrency: ClassVar[int | None] = 8

    def __init__(self, config: TelegramConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self._bot: Bot | None = None
        self._requests: tuple[HTTPXRequest, ...] = ()
        self._redactor = _RedactToken(config.token)

    def __repr__(self) -> str:
        return f"TelegramChannel(base_url={self.config.base_url!r})"

    async def open(self) -> None:
        """Create the HTTP connection pool; Telegram is not contacted yet.

        python-telegram-bot keeps its own httpx request objects, so this channel does
        not use the service's shared aiohttp session. ``Bot.initialize`` is not used:
        it calls getMe, which would make the daemon's start depend on Telegram being
        up, and it puts the token in its exception text.
        """
        if self._bot is not None:
            return
        for name in _LEAKY_LOGGERS:
            logging.getLogger(name).addFilter(self._redactor)
        cfg = self.config
        request = HTTPXRequest(
            connection_pool_size=cfg.connection_pool_size,
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            write_timeout=cfg.write_timeout,
            pool_timeout=cfg.pool_timeout,
        )
        # getUpdates is never called; a one-connection pool keeps PTB from making a big one.
        updates = HTTPXRequest(connection_pool_size=1)
        self._requests = (request, updates)
        for item in self._requests:
            await item.initialize()
        self._bot = Bot(cfg.token, base_url=cfg.base_url, request=request, get_updates_request=updates)

    async def close(self) -> None:
        """Close the connection pool."""
        for item in self._requests:
            await item.shutdown()
        self._requests = ()
        self._bot = None
        for name in _LEAKY_LOGGERS:
            logging.getLogger(name).removeFilter(self._redactor)
        await super().close()

    async def healthcheck(self) -> Health:
        """``getMe``: Telegram is reachable and the token is valid."""
        if self._bot is None:
            return Health(ok=False, detail="channel not open")
        try:
            me = await self._bot.get_me()
        except TelegramError as exc:
            return Health(ok=False, detail=self._safe(exc))
        return Health(ok=True, detail=f"@{me.username}")

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        """Template text, with the first line bold when ``parse_mode`` is HTML."""
        message = super().render(alert, language, place)
        # A district channel's post is remembered and edited when its alert is cancelled.
        extra = {**message.extra, "public_id": alert.public_id, "msg_type": alert.msg_type.value}
        message = dataclasses.replace(message, extra=extra)
        if self.config.parse_mode != "HTML":
            return message
        first, _, rest = message.text.partition("\n")
        body = f"<b>{html.escape(first)}</b>"
        if rest:
            body += "\n" + html.escape(rest)
        return dataclasses.replace(message, html=body)

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        """One ``sendMessage`` (``address`` is the chat id), or ``editMessageText`` for a keyboard page."""
        bot = self._bot
        if bot is None:
            raise RuntimeError("TelegramChannel.send called before open()")
        use_html = self.config.parse_mode == "HTML" and message.html is not None
        text = message.html if use_html and message.html is not None else message.text
        reply = message.extra.get("reply")
        markup = inline_keyboard(reply) if isinstance(reply, Mapping) else None
        try:
            if isinstance(reply, Mapping) and reply.get("edit") and reply.get("edit_message_id"):
                edited = await self._edit(bot, recipient.address, int(reply["edit_message_id"]), text, markup)
                if edited is not None:
                    return edited
            if self._is_district_channel(recipient.address):
                await self._retract_posts(bot, message, recipient.address)
            sent = await bot.send_message(
                chat_id=recipient.address,
                text=text[: self.max_text_length],
                parse_mode="HTML" if use_html else None,
                # A preview card of our own page adds nothing to an alert and costs a fetch.
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_markup=markup,
            )
        except RetryAfter as exc:
            return Retry(
                reason=f"telegram flood control: {self._safe(exc)}",
                after=_retry_after_seconds(exc),
                rate_limited=True,
                bucket=None,
            )
        except ChatMigrated as exc:
            return Reject(
                reason=f"group migrated to a supergroup: new_chat_id={exc.new_chat_id}",
                unsubscribe=False,
                moved_to=str(exc.new_chat_id),
            )
        except Forbidden as exc:
            return Reject(reason=f"telegram 403: {self._safe(exc)}", unsubscribe=True)
        except BadRequest as exc:
            reason = self._safe(exc)
            gone = "chat not found" in reason.lower()
            return Reject(reason=f"telegram 400: {reason}", unsubscribe=gone)
        except InvalidToken:
            return Retry(reason="telegram rejected the bot token (check configuration)")
        except TimedOut as exc:
            return Retry(reason=f"telegram timeout: {self._safe(exc)}")
        except NetworkError as exc:
            return Retry(reason=f"telegram network error: {self._safe(exc)}")
        except TelegramError as exc:
            # e.g. an unparsable answer from a proxy in front of the API.
            return Retry(reason=f"telegram error: {self._safe(exc)}")
        if self._is_district_channel(recipient.address):
            await self._remember_post(message, recipient.address, str(sent.message_id))
        return Delivered(remote_id=str(sent.message_id))

    def _is_district_channel(self, address: str) -> bool:
        return address in self.config.district_channels.values()

    async def _remember_post(self, message: Message, chat: str, message_id: str) -> None:
        """A district channel's post, so that a cancel can edit it (``channel_posts``, per chat)."""
        posts, public_id = self.context.posts, str(message.extra.get("public_id") or "")
        if posts is None or not public_id:
            return
        try:
            await posts.remember(f"{self.name}:{chat}", public_id, message_id, {})
        except Exception as exc:  # the post went out; only a later edit depends on this
            logger.warning("district channel post not remembered", extra={"channel": self.name, "error": str(exc)})

    async def _retract_posts(self, bot: Bot, message: Message, chat: str) -> None:
        """A cancel edits the district channel's earlier posts of what it cancels: 【取消】 first."""
        posts, public_id = self.context.posts, str(message.extra.get("public_id") or "")
        if posts is None or not public_id or kind_of(message) is not MsgType.CANCEL:
            return
        key = f"{self.name}:{chat}"
        try:
            thread = await posts.thread(key, public_id)
        except Exception as exc:
            logger.warning("district channel posts not read", extra={"channel": self.name, "error": str(exc)})
            return
        for post in thread.earlier:
            if post.retracted:
                continue
            text = f"{retracted_note(message.language)}\n\n{message.text}"[: self.max_text_length]
            try:
                await bot.edit_message_text(text=text, chat_id=chat, message_id=int(post.remote_id))
                await posts.retracted(key, post.remote_id, "edited")
            except (TelegramError, ValueError) as exc:  # too old, deleted: the correction still goes out
                logger.warning("district channel post not edited", extra={"channel": self.name, "error": str(exc)})

    async def _edit(
        self, bot: Bot, chat_id: str, message_id: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> SendResult | None:
        """Replace a keyboard page in place; None: it cannot be edited (too old, deleted), send anew."""
        try:
            await bot.edit_message_text(
                text=text[: self.max_text_length], chat_id=chat_id, message_id=message_id, reply_markup=markup
            )
        except BadRequest as exc:
            if "not modified" in str(exc).lower():
                return Delivered(remote_id=str(message_id), detail="unchanged")
            return None
        return Delivered(remote_id=str(message_id), detail="edited")

    def _safe(self, exc: BaseException) -> str:
        return str(exc).replace(self.config.token, "<token>")


def _retry_after_seconds(exc: RetryAfter) -> float:
    """``retry_after`` as seconds: PTB 22 returns int or timedelta (``PTB_TIMEDELTA``)."""
    value = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def inline_keyboard(reply: Mapping[str, Any]) -> InlineKeyboardMarkup | None:
    """The reply's button rows (``[[{"label", "data"}…]…]``) as an inline keyboard; None without buttons."""
    rows = [
        [InlineKeyboardButton(str(b["label"]), callback_data=str(b["data"])) for b in row]
        for row in reply.get("buttons") or ()
        if row
    ]
    return InlineKeyboardMarkup(rows) if rows else None
