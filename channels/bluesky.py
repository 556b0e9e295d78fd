"""Bluesky: one post per alert on the city's account, updates threaded, cancels deleted and reposted.

XRPC (https://atproto.com/specs/xrpc) over the service's shared aiohttp session:
``com.atproto.server.createSession`` / ``refreshSession`` and
``com.atproto.repo.createRecord`` / ``deleteRecord`` of ``app.bsky.feed.post``
(https://docs.bsky.app/docs/advanced-guides/posts). Rather than the atproto SDK's async
client: it brings httpx and a pydantic model of every lexicon for four calls, cannot use
the shared session, and refreshes sessions on its own schedule, while the limits here
are what matter: createSession is limited to 30 per 5 minutes, so the session is made
once and refreshed (``refreshJwt``) when the access token expires, and writes cost
points per hour (https://docs.bsky.app/docs/advanced-guides/rate-limits), honoured from
the ``RateLimit-Remaining`` / ``-Reset`` headers.

A post is at most 300 graphemes and 3,000 UTF-8 bytes; links are facets whose
``byteStart`` / ``byteEnd`` are UTF-8 byte offsets
(https://docs.bsky.app/docs/advanced-guides/post-richtext). An update replies in the
alert's thread (``reply.root`` and ``reply.parent`` strong refs); a cancel deletes the
posts of the alerts it cancels and posts the correction.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import regex

from channels.base import Channel, ChannelContext, Delivered, Health, Reject, Retry, SendResult
from channels.posts import SKIPPED, MemoryPostLog, PostLog, ProviderBudget, broadcast_extra, kind_of, not_ours
from channels.templates import render_message
from dispatcher.constraints import greater_than, http_url
from dispatcher.model import Alert, Area, Message, MsgType, Recipient

log = logging.getLogger(__name__)

MAX_GRAPHEMES = 300
MAX_BYTES = 3000
POST = "app.bsky.feed.post"
_URL = re.compile(r"https?://[^\s<>\"]+")
_GRAPHEME = regex.compile(r"\X")
# Sessions made in any 5 minutes, kept under the PDS's 30.
SESSION_BUDGET = (25, 300.0)


def link_facets(text: str) -> list[dict[str, Any]]:
    """A link facet for every URL in ``text``, with UTF-8 byte offsets."""
    facets = []
    for m in _URL.finditer(text):
        start = len(text[: m.start()].encode())
        end = start + len(m.group().encode())
        facets.append(
            {
                "index": {"byteStart": start, "byteEnd": end},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": m.group()}],
            }
        )
    return facets


def fits(text: str) -> bool:
    """Within the lexicon's 300 graphemes and 3,000 bytes."""
    return len(_GRAPHEME.findall(text)) <= MAX_GRAPHEMES and len(text.encode()) <= MAX_BYTES


@dataclass(frozen=True, slots=True)
class BlueskyConfig:
    """``[channels.bluesky]``: the PDS, the account's handle and an app password."""

    base_url: str = field(default="https://bsky.social", metadata=http_url())
    handle: str = "numazu-bousai.bsky.social"
    password: str | None = field(default=None, repr=False)
    timeout: float = field(default=10.0, metadata=greater_than(0))


class _Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {}

    @property
    def error(self) -> str:
        return str(self.body.get("error", ""))


class BlueskyChannel(Channel):
    """Posts each public alert on the city's Bluesky account (see the module docstring)."""

    name: ClassVar[str] = "bluesky"
    config_class: ClassVar[type[BlueskyConfig]] = BlueskyConfig
    config: BlueskyConfig
    broadcast: ClassVar[bool] = True
    max_text_length: ClassVar[int] = MAX_GRAPHEMES
    rate_per_second: ClassVar[float] = 1.0
    # 5,000 write points an hour; a post costs 3, a delete 1.
    rate_window: ClassVar[tuple[int, float] | None] = (1500, 3600.0)

    def __init__(self, config: BlueskyConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self.budget = ProviderBudget()
        self.posts: PostLog = context.posts or MemoryPostLog()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._access: str | None = None
        self._refresh: str | None = None
        self.did: str | None = None
        self.sessions: list[float] = []

    def __repr__(self) -> str:
        return f"BlueskyChannel(base_url={self.config.base_url!r}, handle={self.config.handle!r})"

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        limit = MAX_GRAPHEMES
        while True:
            m = render_message(
                self.context.templates,
                alert,
                language,
                max_length=limit,
                public_url=self.context.public_url,
                place=place,
            )
            if fits(m.text) or limit <= 50:
                break
            limit -= 20
        return Message(
            m.text,
            m.language,
            m.subject,
            None,
            m.link,
            m.exercise,
            None,
            broadcast_extra(alert, self.context.templates.concerns_city(alert)),
        )

    # -- XRPC ------------------------------------------------------------------------

    async def _xrpc(self, nsid: str, body: dict[str, Any] | None, token: str | None) -> _Answer:
        url = f"{self.config.base_url.rstrip('/')}/xrpc/{nsid}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(url, json=body, headers=headers, timeout=self._timeout) as r:
            reset = r.headers.get("RateLimit-Reset")
            self.budget.update(
                r.headers.get("RateLimit-Remaining"), float(reset) if reset and reset.isdigit() else None
            )
            try:
                payload = await r.json(content_type=None)
            except ValueError:
                payload = {}
            answer = _Answer(r.status, payload)
            if r.status == 429 and reset and reset.isdigit():
                self.budget.until = max(self.budget.until, float(reset))
            return answer

    async def _session(self) -> str | _Answer:
        """The access token: the one we have, else refreshed, else a new session (rarely)."""
        if self._access is not None:
            return self._access
        if self._refresh is not None:
            answer = await self._xrpc("com.atproto.server.refreshSession", None, self._refresh)
            if answer.status == 200:
                return self._take(answer)
            self._refresh = None
        now = time.monotonic()
        self.sessions = [t for t in self.sessions if now - t < SESSION_BUDGET[1]]
        if len(self.sessions) >= SESSION_BUDGET[0]:
            return _Answer(429, {"error": "RateLimitExceeded", "message": "our own createSession budget is spent"})
        self.sessions.append(now)
        answer = await self._xrpc(
            "com.atproto.server.createSession",
            {"identifier": self.config.handle, "password": self.config.password or ""},
            None,
        )
        if answer.status != 200:
            return answer
        return self._take(answer)

    def _take(self, answer: _Answer) -> str:
        self._access = str(answer.body["accessJwt"])
        self._refresh = str(answer.body.get("refreshJwt") or "") or None
        self.did = str(answer.body.get("did") or self.did or "")
        return self._access

    async def _authed(self, nsid: str, body: dict[str, Any]) -> _Answer:
        """An XRPC call with the session; an expired access token is refreshed once."""
        for _ in range(2):
            token = await self._session()
            if isinstance(token, _Answer):
                return token
            answer = await self._xrpc(nsid, body, token)
            if answer.status == 400 and answer.error in ("ExpiredToken", "InvalidToken"):
                self._access = None
                continue
            return answer
        return answer

    async def healthcheck(self) -> Health:
        try:
            token = await self._session()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")
        if isinstance(token, _Answer):
            return Health(ok=False, detail=f"createSession {token.status} {token.error}")
        return Health(ok=True, detail=f"session for {self.did}")

    def _failure(self, answer: _Answer, what: str) -> SendResult:
        reason = f"bluesky {what} {answer.status} {answer.error} {answer.body.get('message', '')}".strip()
        if answer.status == 429:
            return Retry(reason, after=max(1.0, self.budget.wait() or 60.0), rate_limited=True)
        if answer.status >= 500 or answer.status == 401 or answer.error in ("AuthFactorTokenRequired", "ExpiredToken"):
            return Retry(reason)
        return Reject(reason)

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        if not_ours(message):
            return Delivered(None, SKIPPED)
        wait = self.budget.wait()
        if wait > 0:
            return Retry("bluesky RateLimit-Remaining is 0", after=wait, rate_limited=True)
        public_id = str(message.extra.get("public_id", ""))
        extra = {"channel": self.name, "delivery_id": recipient.delivery_id}
        try:
            thread = await self.posts.thread(self.name, public_id) if public_id else None
            if thread is not None and thread.own:
                return Delivered(thread.own[0].remote_id, "posted before")
            record: dict[str, Any] = {
                "$type": POST,
                "text": message.text,
                "createdAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "langs": [message.language[:2]],
            }
            facets = link_facets(message.text)
            if facets:
                record["facets"] = facets
            if thread is not None and kind_of(message) is MsgType.CANCEL:
                for post in thread.earlier:
                    if post.retracted:
                        continue
                    rkey = post.remote_id.rsplit("/", 1)[-1]
                    answer = await self._authed(
                        "com.atproto.repo.deleteRecord",
                        {"repo": self.did or self.config.handle, "collection": POST, "rkey": rkey},
                    )
                    if answer.status != 200:
                        return self._failure(answer, "delete")
                    await self.posts.retracted(self.name, post.remote_id, "deleted")
                    log.info("bluesky post of a cancelled alert deleted", extra={**extra, "remote_id": post.remote_id})
            elif thread is not None and thread.parent is not None and thread.root is not None:
                parent, root = thread.parent, thread.root
                record["reply"] = {
                    "root": {
                        "uri": root.meta.get("root_uri", root.remote_id),
                        "cid": root.meta.get("root_cid", root.meta.get("cid", "")),
                    },
                    "parent": {"uri": parent.remote_id, "cid": parent.meta.get("cid", "")},
                }
            answer = await self._authed(
                "com.atproto.repo.createRecord",
                {"repo": self.did or self.config.handle, "collection": POST, "record": record},
            )
            if answer.status != 200:
                return self._failure(answer, "post")
            uri, cid = str(answer.body.get("uri", "")), str(answer.body.get("cid", ""))
            reply = record.get("reply")
            meta = {
                "cid": cid,
                "root_uri": reply["root"]["uri"] if reply else uri,
                "root_cid": reply["root"]["cid"] if reply else cid,
            }
            if public_id and uri:
                await self.posts.remember(self.name, public_id, uri, meta)
            return Delivered(uri, "reply" if reply else "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"bluesky connection: {type(exc).__name__}: {exc}")
