"""A transcript feed of the broadcast system (RSS or Atom), polled.

Many broadcast systems publish what they aired as a feed instead of pushing it. The feed
is fetched with a conditional GET (``If-None-Match`` / ``If-Modified-Since`` from
``feed_state``), parsed with feedparser (https://feedparser.readthedocs.io/en/latest/,
from bytes: feedparser itself never touches the network here), and every entry is
claimed in ``documents`` by its id (else its link) before it is emitted, so it is sent
once across polls, restarts and daemons (one instance polls, under an advisory lock).

An entry maps to a broadcast: ``summary`` (HTML stripped; else ``title``) is the text,
``published`` (else ``updated``) the time it was aired, and its categories the loudspeaker
groups ("all" when it has none). Categories that name a priority (``emergency`` /
``緊急``) or a broadcast category (``missing_person``…) are read as such, not as groups.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import feedparser

from dispatcher.model import Document
from sources.base import Schedule, SourceContext
from sources.broadcast.mapping import ALL, CATEGORY_EVENTS, SOURCE, Broadcast, BroadcastPolicy, PriorityName, to_alert

log = logging.getLogger(__name__)

USER_AGENT = "numazu-dispatcher-broadcast/0.1"
_EMERGENCY_TAGS = {"emergency", "緊急"}
_TAG = re.compile(r"<[^>]+>")


def _strip_html(value: str) -> str:
    text = _TAG.sub("", value.replace("<br>", "\n").replace("<br/>", "\n").replace("<br />", "\n"))
    return html.unescape(text).strip()


def _when(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed:
            # feedparser normalises to UTC struct_time.
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def entry_key(entry: Mapping[str, Any]) -> str:
    """What identifies an entry: its id, else its link, else a digest of its content."""
    for key in ("id", "link"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    digest = hashlib.sha256(f"{entry.get('title', '')}\n{entry.get('summary', '')}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def entry_broadcast(entry: Mapping[str, Any], *, sender: str, feed_url: str) -> Broadcast | None:
    """The broadcast of one feed entry; None when it has no text or time."""
    title = _strip_html(str(entry.get("title") or ""))
    summary = _strip_html(str(entry.get("summary") or ""))
    text = summary or title
    aired = _when(entry)
    if not text or aired is None:
        return None
    priority: PriorityName = "ordinary"
    category = ""
    groups: list[str] = []
    for tag in entry.get("tags") or ():
        term = str(tag.get("term") or tag.get("label") or "").strip()
        if not term:
            continue
        if term.casefold() in _EMERGENCY_TAGS:
            priority = "emergency"
        elif term in CATEGORY_EVENTS:
            category = term
        else:
            groups.append(term)
    key = entry_key(entry)
    original = {
        "id": key,
        "title": title,
        "summary": summary,
        "published": aired.isoformat(),
        "tags": [str(t.get("term") or "") for t in entry.get("tags") or ()],
        "link": entry.get("link") or "",
    }
    return Broadcast(
        identifier=key,
        sender=sender,
        aired_at=aired,
        priority=priority,
        text=text,
        groups=tuple(groups) or (ALL,),
        kind="feed",
        category=category,
        original=json.dumps(original, ensure_ascii=False).encode(),
        original_url=str(entry.get("link") or "") or None,
        extra={"feed": feed_url, "feed_title": title} if title and title != text else {"feed": feed_url},
    )


class BroadcastFeed:
    """The polled source for a broadcast transcript feed."""

    name = "broadcast-feed"

    def __init__(
        self, url: str, *, policy: BroadcastPolicy, sender: str, timeout: float = 10.0, poll_seconds: float = 60.0
    ) -> None:
        self.url = url
        self.schedule = Schedule(poll_seconds)
        self.policy = policy
        self.sender = sender
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"BroadcastFeed(url={self.url!r})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def poll(self, ctx: SourceContext) -> dict[str, int]:
        """One poll: fetch (conditionally), emit each new entry, oldest first."""
        report = {"entries": 0, "new": 0, "emitted": 0, "held": 0, "skipped": 0}
        async with ctx.exclusive(f"poll:{self.name}") as mine:
            if not mine:
                return report
            body = await self._fetch(ctx)
            if body is None:
                return report
            parsed = feedparser.parse(body)
            entries = list(parsed.entries)
            report["entries"] = len(entries)
            entries.sort(key=lambda e: _when(e) or datetime.min.replace(tzinfo=UTC))
            for entry in entries:
                await self._entry(ctx, entry, report)
        if report["new"]:
            log.info("broadcast feed polled", extra={"source": SOURCE, "url": self.url, **report})
        return report

    async def _fetch(self, ctx: SourceContext) -> bytes | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), headers={"User-Agent": USER_AGENT}
            )
        state = await ctx.feed_state(self.url)
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = str(state["etag"])
        if state.get("last_modified"):
            headers["If-Modified-Since"] = str(state["last_modified"])
        etag, modified = state.get("etag"), state.get("last_modified")
        try:
            async with self._session.get(self.url, headers=headers) as response:
                status = response.status
                if status == 304:
                    await ctx.save_feed_state(self.url, status=304, etag=etag, last_modified=modified, error=None)
                    return None
                if status != 200:
                    failures = await ctx.save_feed_state(
                        self.url, status=status, etag=etag, last_modified=modified, error=f"HTTP {status}"
                    )
                    log.warning(
                        "broadcast feed answered HTTP %s", status, extra={"url": self.url, "failures": failures}
                    )
                    return None
                body = await response.read()
                etag = response.headers.get("ETag")
                modified = response.headers.get("Last-Modified")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures = await ctx.save_feed_state(
                self.url, status=None, etag=etag, last_modified=modified, error=f"{type(exc).__name__}: {exc}"
            )
            log.warning("broadcast feed unreachable: %s", exc, extra={"url": self.url, "failures": failures})
            return None
        await ctx.save_feed_state(self.url, status=200, etag=etag, last_modified=modified, error=None)
        return body

    async def _entry(self, ctx: SourceContext, entry: Mapping[str, Any], report: dict[str, int]) -> None:
        key = entry_key(entry)
        broadcast = entry_broadcast(entry, sender=self.sender, feed_url=self.url)
        if broadcast is None:
            doc_id = await ctx.claim_document(SOURCE, key)
            if doc_id is None:
                return
            report["new"] += 1
            report["skipped"] += 1
            log.warning("broadcast feed entry without text or time", extra={"url": self.url, "entry": key})
            await ctx.record_document(doc_id, outcome="unsupported", error="entry without text or date")
            return
        mapped = to_alert(broadcast, self.policy)
        document = Document(SOURCE, key, content=broadcast.original, kind="feed", title=broadcast.text[:200])
        try:
            # Claimed in the alert's own transaction: an entry whose alert could not be
            # stored is claimed again by the next poll.
            result = await ctx.emit(mapped.alert, document=document, hold=mapped.hold)
        except ValueError as exc:  # a value that cannot be stored: recorded, not retried
            doc_id = await ctx.claim_document(SOURCE, key)
            if doc_id is not None:
                report["new"] += 1
                report["skipped"] += 1
                await ctx.record_document(doc_id, outcome="error", content=broadcast.original, error=str(exc))
            log.warning("broadcast feed entry refused: %s", exc, extra={"url": self.url, "entry": key})
            return
        outcome = str(result.outcome)
        if outcome == "replay":
            return
        report["new"] += 1
        if mapped.unknown_groups:
            log.warning(
                "broadcast names unknown loudspeaker groups: %s",
                ", ".join(mapped.unknown_groups),
                extra={"source": SOURCE, "alert_id": result.alert_id, "entry": key},
            )
        report["emitted"] += 1
        report["held"] += int(outcome == "held")
