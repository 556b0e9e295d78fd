"""Mastodon: one public status per alert on the city's account, updates threaded, cancels edited.

API: https://docs.joinmastodon.org/methods/statuses/ (``POST /api/v1/statuses`` with an
``Idempotency-Key``, ``PUT /api/v1/statuses/:id`` to edit), the instance's limits from
https://docs.joinmastodon.org/methods/instance/#v2 (``configuration.statuses``), rate
limits https://docs.joinmastodon.org/api/rate-limits/ (300 requests per 5 minutes per
token, ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset``). Plain aiohttp on the
service's shared session: a handful of endpoints does not need a client library.

An update is posted as a reply to the post of the alert it replaces, so that the
thread tells the story. A cancel first edits every post of the alerts it cancels
(its text then begins with 【取消】 and says what replaced it) and then posts the
correction in the thread. Answers: 2xx → ``Delivered(status id)``; 429 or a spent
``X-RateLimit-Remaining`` → a rate-limited ``Retry`` until ``X-RateLimit-Reset``;
5xx, timeouts and a refused token (our configuration, not the alert) → ``Retry``;
422 and other 4xx → ``Reject``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import aiohttp

from channels.base import (
    Channel,
    ChannelContext,
    Confirmation,
    Delivered,
    Health,
    Reject,
    Retry,
    SendResult,
    Sent,
)
from channels.posts import (
    SKIPPED,
    MemoryPostLog,
    PostLog,
    ProviderBudget,
    broadcast_extra,
    kind_of,
    not_ours,
    retracted_note,
)
from channels.templates import render_message
from dispatcher.constraints import greater_than, http_url, one_of
from dispatcher.model import Alert, Area, Message, MsgType, Recipient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MastodonConfig:
    """``[channels.mastodon]``: the server, the account's access token and how posts are shown."""

    base_url: str = field(default="https://mastodon.example", metadata=http_url())
    token: str | None = field(default=None, repr=False)
    visibility: str = field(default="public", metadata=one_of("public", "unlisted", "private"))
    timeout: float = field(default=10.0, metadata=greater_than(0))


def _reset_at(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MastodonChannel(Channel):
    """Posts each public alert on the city's Mastodon account (see the module docstring)."""

    name: ClassVar[str] = "mastodon"
    config_class: ClassVar[type[MastodonConfig]] = MastodonConfig
    config: MastodonConfig
    broadcast: ClassVar[bool] = True
    # mastodon.social's limit; the instance's own is read by ``open``.
    max_text_length: ClassVar[int] = 500
    rate_per_second: ClassVar[float] = 1.0
    # 300 requests per 5 minutes per token; a post can take a few (edits of a cancel).
    rate_window: ClassVar[tuple[int, float] | None] = (280, 300.0)

    def __init__(self, config: MastodonConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self.limit = self.max_text_length
        self.budget = ProviderBudget()
        self.posts: PostLog = context.posts or MemoryPostLog()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)

    def __repr__(self) -> str:
        return f"MastodonChannel(base_url={self.config.base_url!r})"

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}

    async def open(self) -> None:
        """Read the instance's length limit (the default stays if it cannot be read now)."""
        try:
            async with self.http.get(self._url("/api/v2/instance"), timeout=self._timeout) as r:
                if r.status == 200:
                    body = await r.json()
                    limit = body.get("configuration", {}).get("statuses", {}).get("max_characters")
                    if isinstance(limit, int) and limit > 0:
                        self.limit = limit
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("mastodon instance limits unreadable", extra={"channel": self.name, "error": str(exc)})

    async def healthcheck(self) -> Health:
        try:
            async with self.http.get(
                self._url("/api/v1/accounts/verify_credentials"), headers=self._headers(), timeout=self._timeout
            ) as r:
                return Health(ok=r.status == 200, detail=f"verify_credentials {r.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        message = render_message(
            self.context.templates,
            alert,
            language,
            max_length=self.limit,
            public_url=self.context.public_url,
            place=place,
        )
        return Message(
            message.text,
            message.language,
            message.subject,
            None,
            message.link,
            message.exercise,
            None,
            broadcast_extra(alert, self.context.templates.concerns_city(alert)),
        )

    def _observe(self, response: aiohttp.ClientResponse) -> None:
        self.budget.update(
            response.headers.get("X-RateLimit-Remaining"), _reset_at(response.headers.get("X-RateLimit-Reset"))
        )

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any], key: str | None = None
    ) -> tuple[int, Any, float | None]:
        headers = self._headers()
        if key:
            headers["Idempotency-Key"] = key
        async with self.http.request(
            method, self._url(path), json=body or None, headers=headers, timeout=self._timeout
        ) as r:
            self._observe(r)
            try:
                payload = await r.json(content_type=None)
            except ValueError:
                payload = {}
            return r.status, payload, _reset_at(r.headers.get("X-RateLimit-Reset"))

    async def confirm(self, sent: Sequence[Sent]) -> Mapping[int, Confirmation]:
        """Each status the database calls posted must exist: ``GET /api/v1/statuses/:id`` (200, else 404).

        A status a cancel deleted (``channel_posts``) is expected to be gone. Never spends
        the last of the token's budget (``X-RateLimit-Remaining``): the posts come first.
        """
        out: dict[int, Confirmation] = {}
        for s in sent:
            if not s.remote_id:
                out[s.delivery_id] = self.unconfirmed(s)
                continue
            if self.budget.wait() > 0:
                out[s.delivery_id] = Confirmation("unverifiable", "mastodon rate limit spent; try later")
                continue
            try:
                status, payload, _reset = await self._call("GET", f"/api/v1/statuses/{s.remote_id}", {})
            except (aiohttp.ClientError, TimeoutError) as exc:
                out[s.delivery_id] = Confirmation("unverifiable", f"mastodon connection: {type(exc).__name__}")
                continue
            if status == 200:
                out[s.delivery_id] = Confirmation(
                    "confirmed", str(payload.get("url", "")) if isinstance(payload, dict) else ""
                )
            elif status == 404 and s.retracted == "deleted":
                out[s.delivery_id] = Confirmation("retracted", "deleted by the cancel that retracted it")
            elif status == 404:
                out[s.delivery_id] = Confirmation("missing", f"mastodon has no status {s.remote_id} (404)")
            else:
                out[s.delivery_id] = Confirmation("unverifiable", f"mastodon answered {status}")
        return out

    def _failure(self, status: int, payload: Any, reset_at: float | None, what: str) -> SendResult:
        error = payload.get("error", "") if isinstance(payload, dict) else ""
        reason = f"mastodon {what} {status} {error}".strip()
        if status == 429:
            wait = max(1.0, (reset_at or 0) - self.budget.clock()) if reset_at else 60.0
            return Retry(reason, after=wait, rate_limited=True)
        if status >= 500 or status in (401, 403, 408):
            return Retry(reason)
        return Reject(reason)

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        if not_ours(message):
            return Delivered(None, SKIPPED)
        wait = self.budget.wait()
        if wait > 0:
            return Retry("mastodon X-RateLimit-Remaining is 0", after=wait, rate_limited=True)
        public_id = str(message.extra.get("public_id", ""))
        try:
            thread = await self.posts.thread(self.name, public_id) if public_id else None
            if thread is not None and thread.own:
                return Delivered(thread.own[0].remote_id, "posted before")
            if thread is not None and kind_of(message) is MsgType.CANCEL:
                for post in thread.earlier:
                    if post.retracted:
                        continue
                    text = f"{retracted_note(message.language)}\n\n{message.text}"[: self.limit]
                    status, payload, reset_at = await self._call(
                        "PUT", f"/api/v1/statuses/{post.remote_id}", {"status": text}
                    )
                    if status == 200 or status == 404:
                        await self.posts.retracted(self.name, post.remote_id, "edited" if status == 200 else "deleted")
                        log.info(
                            "mastodon post of a cancelled alert edited",
                            extra={
                                "channel": self.name,
                                "delivery_id": recipient.delivery_id,
                                "remote_id": post.remote_id,
                            },
                        )
                    else:
                        return self._failure(status, payload, reset_at, "edit")
            body: dict[str, Any] = {
                "status": message.text,
                "visibility": self.config.visibility,
                "language": message.language[:2],
            }
            parent = thread.parent if thread is not None else None
            if parent is not None:
                body["in_reply_to_id"] = parent.remote_id
            status, payload, reset_at = await self._call("POST", "/api/v1/statuses", body, message.idempotency_key)
            if status != 200:
                return self._failure(status, payload, reset_at, "post")
            remote_id = str(payload.get("id", ""))
            if public_id and remote_id:
                await self.posts.remember(self.name, public_id, remote_id, {"url": payload.get("url", "")})
            return Delivered(remote_id, "reply" if parent is not None else "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"mastodon connection: {type(exc).__name__}: {exc}")
