"""X (Twitter): one post per alert on the city's account, updates threaded, cancels deleted.

API v2: https://docs.x.com/x-api/posts/manage-tweets/introduction (``POST /2/tweets`` with
``reply.in_reply_to_tweet_id``, ``DELETE /2/tweets/:id``), limits
https://docs.x.com/x-api/fundamentals/rate-limits (100 posts per 15 minutes per user;
``x-rate-limit-remaining`` / ``-reset`` in epoch seconds), pricing
https://docs.x.com/x-api/getting-started/pricing (every post is billed, one with a link
far more). Length: twitter-text's weighted length
(https://github.com/twitter/twitter-text/blob/master/config/v3.json): 280, a CJK
character weighs 2, any URL 23.

Signing: OAuth 1.0a user context (RFC 5849) by ``oauthlib``'s ``Client.sign`` over the
service's shared aiohttp session, rather than tweepy's ``AsyncClient``: tweepy opens an
aiohttp session of its own per client and hides the answers' rate-limit headers and
statuses behind exceptions, while two endpoints and a signature are all we need, and
oauthlib is the well-kept signing library tweepy itself builds on.

Posts cost money: :meth:`XChannel.cost` prices a message before it is sent (the CLI's
``dispatcher x-cost`` shows an alert's), every post is logged with its price, and
``include_link = false`` posts without the link (the cheaper rate). A cancel deletes
the posts of the alerts it cancels and posts the correction; where a delete is refused,
the correction is posted as a reply to it instead.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import aiohttp
from oauthlib.oauth1 import Client as OAuth1Client

from channels.base import Channel, ChannelContext, Delivered, Health, Reject, Retry, SendResult
from channels.posts import SKIPPED, MemoryPostLog, PostLog, ProviderBudget, broadcast_extra, kind_of, not_ours
from channels.templates import alert_link
from dispatcher.constraints import greater_than, http_url
from dispatcher.model import Alert, Area, Message, MsgType, Recipient

log = logging.getLogger(__name__)

MAX_WEIGHTED = 280
URL_WEIGHT = 23
# twitter-text v3: code point ranges weighing 1; everything else 2.
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL = re.compile(r"https?://[^\s<>\"]+")


def weighted_length(text: str) -> int:
    """X's weighted length of ``text`` (of 280): URLs 23, CJK and emoji 2, Latin 1."""
    text = unicodedata.normalize("NFC", text)
    total, last = 0, 0
    for m in _URL.finditer(text):
        total += _weigh(text[last : m.start()]) + URL_WEIGHT
        last = m.end()
    return total + _weigh(text[last:])


def _weigh(part: str) -> int:
    return sum(1 if any(lo <= ord(c) <= hi for lo, hi in _LIGHT) else 2 for c in part)


@dataclass(frozen=True, slots=True)
class XConfig:
    """``[channels.x]``: the app's and the city account's OAuth 1.0a credentials, and the prices."""

    base_url: str = field(default="https://api.x.com", metadata=http_url())
    consumer_key: str | None = field(default=None, repr=False)
    consumer_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    access_token_secret: str | None = field(default=None, repr=False)
    # Post the link to the alert's page (the dearer rate) or not.
    include_link: bool = True
    # USD per post, as the account is billed (pay-per-usage): without and with a link.
    price_per_post: str = "0.015"
    price_per_post_with_link: str = "0.200"
    timeout: float = field(default=10.0, metadata=greater_than(0))


class XChannel(Channel):
    """Posts each public alert on the city's X account (see the module docstring)."""

    name: ClassVar[str] = "x"
    config_class: ClassVar[type[XConfig]] = XConfig
    config: XConfig
    broadcast: ClassVar[bool] = True
    max_text_length: ClassVar[int] = MAX_WEIGHTED
    rate_per_second: ClassVar[float] = 1.0
    # 100 posts per 15 minutes per user, a few kept for deletions' corrections.
    rate_window: ClassVar[tuple[int, float] | None] = (95, 900.0)

    def __init__(self, config: XConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self.budget = ProviderBudget()
        self.posts: PostLog = context.posts or MemoryPostLog()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)

    def __repr__(self) -> str:
        return f"XChannel(base_url={self.config.base_url!r})"

    # -- pricing ---------------------------------------------------------------

    def cost(self, message: Message) -> Decimal:
        """What posting ``message`` is billed (with a link: the dearer rate)."""
        dear = _URL.search(message.text) is not None
        return Decimal(self.config.price_per_post_with_link if dear else self.config.price_per_post)

    def estimate(self, alert: Alert, language: str = "ja") -> dict[str, Any]:
        """The post an alert makes, with and without the link, and the price of each."""
        with_link = self._compose(alert, language, link=True)
        without = self._compose(alert, language, link=False)
        return {
            "text": with_link.text if self.config.include_link else without.text,
            "include_link": self.config.include_link,
            "cost_usd": str(self.cost(with_link if self.config.include_link else without)),
            "cost_with_link_usd": str(self.cost(with_link)),
            "cost_without_link_usd": str(self.cost(without)),
        }

    # -- rendering -------------------------------------------------------------

    def _compose(self, alert: Alert, language: str, *, link: bool, place: Area | None = None) -> Message:
        templates = self.context.templates
        url = alert_link(self.context.public_url, alert) if link else None
        # compose() counts characters; X counts CJK twice: shrink until the weight fits.
        limit = MAX_WEIGHTED
        subject, text = templates.compose(alert, language, max_length=limit, link=url, place=place)
        while weighted_length(text) > MAX_WEIGHTED and limit > 40:
            limit -= max(1, (weighted_length(text) - MAX_WEIGHTED + 1) // 2)
            subject, text = templates.compose(alert, language, max_length=limit, link=url, place=place)
        known = language if language in templates.languages else "ja"
        return Message(
            text,
            known,
            subject,
            None,
            url,
            not alert.is_public,
            None,
            broadcast_extra(alert, self.context.templates.concerns_city(alert)),
        )

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        return self._compose(alert, language, link=self.config.include_link, place=place)

    # -- the wire ----------------------------------------------------------------

    def _signed(self, method: str, url: str) -> dict[str, str]:
        cfg = self.config
        client = OAuth1Client(
            cfg.consumer_key or "",
            client_secret=cfg.consumer_secret,
            resource_owner_key=cfg.access_token,
            resource_owner_secret=cfg.access_token_secret,
        )
        # A JSON body is not part of the OAuth 1.0a signature (only form bodies are).
        _uri, headers, _body = client.sign(url, http_method=method)
        return {"Authorization": headers["Authorization"]}

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, float | None]:
        url = self.config.base_url.rstrip("/") + path
        headers = self._signed(method, url)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False).encode()
        async with self.http.request(method, url, data=data, headers=headers, timeout=self._timeout) as r:
            reset = r.headers.get("x-rate-limit-reset")
            reset_at = float(reset) if reset and reset.isdigit() else None
            self.budget.update(r.headers.get("x-rate-limit-remaining"), reset_at)
            try:
                payload = await r.json(content_type=None)
            except ValueError:
                payload = {}
            return r.status, payload, reset_at

    async def healthcheck(self) -> Health:
        try:
            status, _payload, _reset = await self._call("GET", "/2/users/me")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")
        return Health(ok=status == 200, detail=f"users/me {status}")

    def _failure(self, status: int, payload: Any, reset_at: float | None, what: str) -> SendResult:
        detail = ""
        if isinstance(payload, dict):
            detail = str(payload.get("detail") or payload.get("title") or "")
        reason = f"x {what} {status} {detail}".strip()
        if status == 429:
            return Retry(reason, after=max(1.0, (reset_at or time.time() + 60) - time.time()), rate_limited=True)
        if status >= 500 or status == 401:
            return Retry(reason)
        return Reject(reason)

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        if not_ours(message):
            return Delivered(None, SKIPPED)
        wait = self.budget.wait()
        if wait > 0:
            return Retry("x x-rate-limit-remaining is 0", after=wait, rate_limited=True)
        public_id = str(message.extra.get("public_id", ""))
        extra = {"channel": self.name, "delivery_id": recipient.delivery_id}
        try:
            thread = await self.posts.thread(self.name, public_id) if public_id else None
            if thread is not None and thread.own:
                return Delivered(thread.own[0].remote_id, "posted before")
            reply_to = thread.parent.remote_id if thread is not None and thread.parent else None
            if thread is not None and kind_of(message) is MsgType.CANCEL:
                reply_to = None
                for post in thread.earlier:
                    if post.retracted:
                        continue
                    status, payload, _reset = await self._call("DELETE", f"/2/tweets/{post.remote_id}")
                    if status in (200, 404):
                        await self.posts.retracted(self.name, post.remote_id, "deleted")
                        log.info("x post of a cancelled alert deleted", extra={**extra, "remote_id": post.remote_id})
                    else:
                        # Not deleted: the correction answers it where its readers see it.
                        reply_to = reply_to or post.remote_id
                        log.warning(
                            "x refused to delete a cancelled alert's post; replying instead",
                            extra={**extra, "remote_id": post.remote_id, "status": status},
                        )
            body: dict[str, Any] = {"text": message.text}
            if reply_to:
                body["reply"] = {"in_reply_to_tweet_id": reply_to}
            log.info("x post", extra={**extra, "cost_usd": str(self.cost(message))})
            status, payload, reset_at = await self._call("POST", "/2/tweets", body)
            if status not in (200, 201):
                return self._failure(status, payload, reset_at, "post")
            remote_id = str((payload.get("data") or {}).get("id", ""))
            if public_id and remote_id:
                await self.posts.remember(self.name, public_id, remote_id, {"cost_usd": str(self.cost(message))})
            return Delivered(remote_id, f"cost {self.cost(message)} USD")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"x connection: {type(exc).__name__}: {exc}")
