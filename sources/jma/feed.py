"""Polling JMA's disaster XML Atom feeds, politely.

Upstream: https://xml.kishou.go.jp/xmlpull.html (気象庁防災情報XMLのAtomフィード).
JMA refreshes four high-frequency feeds (regular, extra, eqvol, other) every
minute and blocks clients that fetch the same file repeatedly, so:

* each feed is fetched with ``If-None-Match`` / ``If-Modified-Since``; a 304
  costs no parsing;
* every telegram URL is claimed in the database (``documents``) before it is
  fetched: it is never fetched twice, across restarts and across instances;
* only one daemon instance polls at a time (a PostgreSQL advisory lock);
* an unreachable feed backs off exponentially and is logged once per step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import feedparser

from sources.base import SourceContext
from sources.jma.parser import Failed, Parsed, ParseOutcome, Unsupported, parse_telegram

log = logging.getLogger(__name__)

SOURCE = "jma"
MAX_TELEGRAM_BYTES = 5_000_000
MAX_FEED_BYTES = 20_000_000
MAX_FETCH_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class FeedStats:
    """What one poll of one feed did (for logs, tests and the status page)."""

    url: str
    status: int | None
    entries: int = 0
    new: int = 0
    fetched: int = 0
    alerts: int = 0
    unsupported: int = 0
    errors: int = 0


class JmaSource:
    """The polled JMA source."""

    name = "jma"

    def __init__(
        self,
        feeds: Sequence[str],
        *,
        timeout: float = 10.0,
        concurrency: int = 4,
        user_agent: str = "numazu-dispatcher",
        poll_seconds: float = 60.0,
        parse: Callable[..., ParseOutcome] = parse_telegram,
    ) -> None:
        self.feeds = list(feeds)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.concurrency = max(1, concurrency)
        self.user_agent = user_agent
        self.poll_seconds = poll_seconds
        self.parse = parse
        self._session: aiohttp.ClientSession | None = None
        self._next_try: dict[str, float] = {}
        self.last_stats: list[FeedStats] = []

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, headers={"User-Agent": self.user_agent}, auto_decompress=True
            )
        return self._session

    async def poll(self, ctx: SourceContext) -> list[FeedStats]:
        """Poll every feed once (if this instance holds the poller lock)."""
        async with ctx.exclusive("jma-poller") as mine:
            if not mine:
                log.debug("another instance is polling JMA feeds")
                return []
            stats = await asyncio.gather(*(self._poll_feed(ctx, url) for url in self.feeds))
        self.last_stats = list(stats)
        return self.last_stats

    async def _poll_feed(self, ctx: SourceContext, url: str) -> FeedStats:
        now = time.monotonic()
        if self._next_try.get(url, 0.0) > now:
            return FeedStats(url, None)
        state = await ctx.feed_state(url)
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        try:
            async with self._http().get(url, headers=headers) as resp:
                if resp.status == 304:
                    await ctx.save_feed_state(
                        url, status=304, etag=state.get("etag"), last_modified=state.get("last_modified"), error=None
                    )
                    return FeedStats(url, 304)
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, resp.history, status=resp.status, message=resp.reason or ""
                    )
                body = await _read_capped(resp, MAX_FEED_BYTES)
                etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failures = await ctx.save_feed_state(
                url,
                status=getattr(exc, "status", None),
                etag=state.get("etag"),
                last_modified=state.get("last_modified"),
                error=_describe(exc),
            )
            delay = min(self.poll_seconds * (2 ** min(failures - 1, 5)), 1800.0)
            self._next_try[url] = now + delay
            log.warning(
                "JMA feed unreachable; backing off",
                extra={"feed": url, "error": _describe(exc), "failures": failures, "next_try_s": round(delay)},
            )
            return FeedStats(url, getattr(exc, "status", None), errors=1)
        self._next_try.pop(url, None)
        stats = await self._handle_feed(ctx, url, body)
        await ctx.save_feed_state(url, status=200, etag=etag, last_modified=modified, error=None)
        return stats

    async def _handle_feed(self, ctx: SourceContext, url: str, body: bytes) -> FeedStats:
        # feedparser never raises on bad input; it sets ``bozo`` instead.
        parsed = feedparser.parse(body)
        if parsed.bozo and not parsed.entries:
            log.error("JMA feed is not a valid Atom document", extra={"feed": url, "error": str(parsed.bozo_exception)})
            return FeedStats(url, 200, errors=1)
        links = [link for link in (_entry_url(e) for e in parsed.entries) if link]
        known = await ctx.known_documents(SOURCE, links)
        # Oldest first, so a series' telegrams are handled in the order JMA issued them.
        new = [link for link in reversed(links) if link not in known]
        sem = asyncio.Semaphore(self.concurrency)
        results = await asyncio.gather(*(self._fetch_one(ctx, sem, link) for link in new))
        return FeedStats(
            url,
            200,
            entries=len(links),
            new=len(new),
            fetched=sum(1 for r in results if r != "skipped"),
            alerts=results.count("alert"),
            unsupported=results.count("unsupported"),
            errors=results.count("error"),
        )

    async def _fetch_one(self, ctx: SourceContext, sem: asyncio.Semaphore, link: str) -> str:
        doc_id = await ctx.claim_document(SOURCE, link)
        if doc_id is None:
            return "skipped"  # another poll claimed it first
        async with sem:
            try:
                async with self._http().get(link) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, resp.history, status=resp.status, message=resp.reason or ""
                        )
                    data = await _read_capped(resp, MAX_TELEGRAM_BYTES)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                await ctx.record_document(doc_id, outcome="fetch_failed", error=_describe(exc))
                log.warning("JMA telegram fetch failed", extra={"url": link, "error": _describe(exc)})
                return "error"
        return await ingest_document(ctx, doc_id, data, link, self.parse)


async def ingest_document(
    ctx: SourceContext, doc_id: int, data: bytes, url: str, parse: Callable[..., ParseOutcome] = parse_telegram
) -> str:
    """Parse a fetched telegram, store what it was, and emit its alert."""
    outcome = await asyncio.to_thread(parse, data, url=url) if len(data) > 200_000 else parse(data, url=url)
    if isinstance(outcome, Parsed):
        alert = outcome.alert
        await ctx.record_document(doc_id, outcome="parsed", content=data, kind=alert.kind, title=alert.event)
        await ctx.emit(alert, document_id=doc_id)
        return "alert"
    if isinstance(outcome, Unsupported):
        await ctx.record_document(
            doc_id, outcome="unsupported", content=data, kind=outcome.kind, title=outcome.title, error=outcome.reason
        )
        log.info("unsupported JMA telegram stored", extra={"url": url, "kind": outcome.kind, "title": outcome.title})
        return "unsupported"
    assert isinstance(outcome, Failed)
    await ctx.record_document(doc_id, outcome="error", content=data, error=outcome.error)
    log.error("JMA telegram rejected", extra={"url": url, "error": outcome.error})
    return "error"


def _entry_url(entry: Any) -> str | None:
    """The telegram's URL: the entry's alternate link (JMA also repeats it as the id)."""
    for link in entry.get("links") or ():
        if link.get("href") and link.get("rel", "alternate") == "alternate":
            return str(link["href"])
    url = entry.get("link") or entry.get("id")
    return str(url) if url and str(url).startswith(("http://", "https://")) else None


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise ValueError(f"response of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(65536):
        total += len(chunk)
        if total > limit:
            raise ValueError(f"response exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def feed_summary(stats: Sequence[FeedStats]) -> dict[str, Any]:
    return {s.url: {"status": s.status, "new": s.new, "alerts": s.alerts} for s in stats}
