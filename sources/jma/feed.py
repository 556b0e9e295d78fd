"""Polling JMA's disaster XML Atom feeds, politely.

Upstream: https://xml.kishou.go.jp/xmlpull.html (気象庁防災情報XMLのAtomフィード).
JMA refreshes four high-frequency feeds (regular, extra, eqvol, other) every
minute and blocks clients that fetch the same file repeatedly, so:

* each feed is fetched with ``If-None-Match`` / ``If-Modified-Since``; a 304
  costs no parsing;
* every telegram URL is claimed in the database (``documents``) before it is
  fetched: it is never fetched twice, across restarts and across instances;
* only one daemon instance polls at a time (a PostgreSQL advisory lock);
* an unreachable feed backs off exponentially (decided from ``feed_state``,
  so it survives restarts and binds every instance);
* after a gap longer than the high-frequency feeds reach back (first start,
  downtime, failures) the long feeds (``*_l.xml``) are read to catch up;
* a telegram whose fetch failed is retried on later polls, a bounded number of
  times, with growing spacing decided from the attempts the database counted
  (``documents.attempts``), so that it too survives restarts.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
import feedparser

from dispatcher.model import Document
from sources.base import Schedule, Source, SourceContext, SourceSetup
from sources.jma.config import JmaConfig
from sources.jma.parser import parse_telegram
from sources.outcome import Failed, Parsed, ParseOutcome, Unsupported

log = logging.getLogger(__name__)

SOURCE = "jma"
MAX_TELEGRAM_BYTES = 5_000_000
MAX_FEED_BYTES = 20_000_000
MAX_FETCH_ATTEMPTS = 5
MAX_BACKOFF_SECONDS = 1800.0
MAX_REMEMBERED = 50_000


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
    # Not polled this round: another instance just did, or the feed is backing off.
    skipped: bool = False
    # The long feed was read too (first start or a gap longer than the window).
    caught_up: bool = False
    # Telegrams whose earlier fetch failed and whose retry is not due yet.
    deferred: int = 0


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One Atom entry: the telegram URL and when JMA published it."""

    url: str
    updated: datetime | None


def long_feed_url(url: str) -> str:
    """JMA's long feed for a high-frequency one: ``.../eqvol.xml`` → ``.../eqvol_l.xml``."""
    base, dot, ext = url.rpartition(".")
    if not dot or "/" in ext or base.endswith("_l"):
        raise ValueError(f"cannot derive a long feed from {url!r}")
    return f"{base}_l.{ext}"


class JmaSource:
    """The polled JMA source.

    ``catchup_window`` is how far back the high-frequency feeds reach (JMA:
    at least ten minutes). When the last successful poll of a feed recorded in
    ``feed_state`` is older than that, or unknown, its long feed is read too,
    for entries published since shortly before that poll (never more than
    ``catchup_max_age`` ago, so a first start does not replay days of news).

    A telegram whose fetch failed ``n`` times (``documents.attempts``, counted by
    the database) is retried on the polls whose number is a multiple of
    ``retry_growth ** (n - 1)``: with the default 2, the next poll after a first
    failure, every second poll after a second, every fourth after a third…,
    until the database's bound on attempts (``ServiceContext.claim_document``)
    says no more.
    """

    section: ClassVar[str] = "jma"
    config_class: ClassVar[type[JmaConfig]] = JmaConfig
    name = "jma"

    @classmethod
    def from_config(cls, config: JmaConfig, setup: SourceSetup) -> list[Source]:
        """The poller of ``[jma]``; none when it is disabled or names no feed."""
        if not config.enabled or not config.feeds:
            return []
        return [
            cls(
                config.feeds,
                long_feeds=dict(zip(config.feeds, config.long_feeds, strict=True)) if config.long_feeds else None,
                timeout=config.timeout_seconds,
                concurrency=config.fetch_concurrency,
                user_agent=config.user_agent,
                poll_seconds=config.poll_seconds,
                poll_offset=config.poll_offset_seconds,
                catchup_window=config.catchup_window_seconds,
                catchup_max_age=config.catchup_max_age_seconds,
            )
        ]

    def __init__(
        self,
        feeds: Sequence[str],
        *,
        long_feeds: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        concurrency: int = 4,
        user_agent: str = "numazu-dispatcher",
        poll_seconds: float = 60.0,
        poll_offset: float = 0.0,
        catchup_window: float = 600.0,
        catchup_max_age: float = 21600.0,
        retry_growth: float = 2.0,
        parse: Callable[..., ParseOutcome] = parse_telegram,
    ) -> None:
        self.feeds = list(feeds)
        self.long_feeds = dict(long_feeds) if long_feeds is not None else {u: long_feed_url(u) for u in self.feeds}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.concurrency = max(1, concurrency)
        self.user_agent = user_agent
        self.poll_seconds = poll_seconds
        self.schedule = Schedule(poll_seconds, poll_offset)
        self.catchup_window = timedelta(seconds=catchup_window)
        self.catchup_max_age = timedelta(seconds=max(catchup_max_age, catchup_window))
        self.retry_growth = max(1.0, retry_growth)
        self.parse = parse
        self._session: aiohttp.ClientSession | None = None
        # Polls made by this instance: the retry spacing is counted in them.
        self._polls = 0
        # URLs the database refused to hand out (exhausted or another poll has them):
        # remembered so that every poll does not ask again.
        self._refused: set[str] = set()
        # Per feed, the entries of its last full read plus those whose fetch failed and
        # may be retried: an unchanged feed (304) is handled from here, so failed fetches
        # are retried without re-reading it. Empty at start: the first GET is unconditional.
        self._entries: dict[str, list[FeedEntry]] = {}
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
            self._polls += 1
            # One pool of fetches for all feeds: at most ``concurrency`` telegrams in flight.
            sem = asyncio.Semaphore(self.concurrency)
            stats = await asyncio.gather(*(self._poll_feed(ctx, url, sem) for url in self.feeds))
        self.last_stats = list(stats)
        return self.last_stats

    def _due(self, state: Mapping[str, Any], now: datetime) -> bool:
        """Whether to poll now: not if another instance just did, nor while backing off.

        Decided from ``feed_state`` rather than memory, so the backoff survives a
        restart and instances on other machines honour it too.
        """
        last: datetime | None = state.get("last_polled")
        if last is None:
            return True
        elapsed = (now - last).total_seconds()
        failures = int(state.get("consecutive_failures") or 0)
        half = self.poll_seconds / 2
        if failures == 0:
            return elapsed >= half
        delay = min(self.poll_seconds * 2.0 ** min(failures - 1, 10), MAX_BACKOFF_SECONDS)
        return elapsed >= delay - half

    def _catchup_cutoff(self, state: Mapping[str, Any], now: datetime) -> datetime | None:
        """Oldest entry of the long feed to consider, or None when the high-frequency feed suffices."""
        oldest = now - self.catchup_max_age
        last: datetime | None = state.get("last_polled")
        if last is None:
            return now - self.catchup_window  # first start: what the high-frequency feed would hold
        if int(state.get("consecutive_failures") or 0) > 0 or state.get("last_status") not in (200, 304):
            return oldest  # when the last success was is unknown
        if now - last <= self.catchup_window:
            return None
        return max(last - self.catchup_window, oldest)

    async def _poll_feed(self, ctx: SourceContext, url: str, sem: asyncio.Semaphore) -> FeedStats:
        state = await ctx.feed_state(url)
        now = datetime.now(UTC)
        if not self._due(state, now):
            return FeedStats(url, None, skipped=True)
        cutoff = self._catchup_cutoff(state, now)
        try:
            status, body, etag, modified = await self._get_feed(url, state, conditional=url in self._entries)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failures = await ctx.save_feed_state(
                url,
                status=getattr(exc, "status", None),
                etag=state.get("etag"),
                last_modified=state.get("last_modified"),
                error=_describe(exc),
            )
            log.warning(
                "JMA feed unreachable; backing off",
                extra={"feed": url, "error": _describe(exc), "failures": failures},
            )
            return FeedStats(url, getattr(exc, "status", None), errors=1)
        # An unchanged feed costs no parsing: its entries are those we remember, and
        # the database (known_documents, claim_document) says which still need a fetch.
        entries = self._entries.get(url, [])
        listed = {e.url for e in entries}
        errors = 0
        if body is not None:
            found = _entries(body, url)
            if found is None:
                errors += 1
                etag = modified = None  # read it again next time rather than trust a 304 for it
            listed = {e.url for e in found or ()}
            # Failed fetches stay with us after leaving the feed, until the bound says no.
            entries = (found or []) + [e for e in entries if e.url not in listed]
        catchup_error: str | None = None
        long_url = self.long_feeds.get(url)
        if cutoff is not None and long_url:
            try:
                older = await self._read_long_feed(ctx, long_url)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # Recorded as a failure of the high-frequency feed, so the next poll catches up again.
                catchup_error = f"catch-up from {long_url} failed: {_describe(exc)}"
                log.warning("JMA long feed unreachable", extra={"feed": long_url, "error": _describe(exc)})
            else:
                entries += [e for e in older if e.updated is None or e.updated >= cutoff]
                log.info(
                    "caught up from the JMA long feed",
                    extra={"feed": long_url, "since": cutoff.isoformat(), "entries": len(older)},
                )
        stats, retry = await self._handle_entries(ctx, url, status, entries, sem)
        self._entries[url] = [e for e in entries if e.url in listed or e.url in retry]
        await ctx.save_feed_state(url, status=status, etag=etag, last_modified=modified, error=catchup_error)
        return replace(stats, errors=stats.errors + errors + (catchup_error is not None), caught_up=cutoff is not None)

    async def _get_feed(
        self, url: str, state: Mapping[str, Any], *, conditional: bool = True
    ) -> tuple[int, bytes | None, str | None, str | None]:
        """Conditional GET: (status, body or None on 304, ETag, Last-Modified)."""
        headers = {}
        if conditional and state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if conditional and state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        async with self._http().get(url, headers=headers) as resp:
            if resp.status == 304:
                return 304, None, state.get("etag"), state.get("last_modified")
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message=resp.reason or ""
                )
            body = await _read_capped(resp, MAX_FEED_BYTES)
            return 200, body, resp.headers.get("ETag"), resp.headers.get("Last-Modified")

    async def _read_long_feed(self, ctx: SourceContext, url: str) -> list[FeedEntry]:
        """The long feed's entries ([] when unchanged since we last read it)."""
        state = await ctx.feed_state(url)
        try:
            status, body, etag, modified = await self._get_feed(url, state)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            await ctx.save_feed_state(
                url,
                status=getattr(exc, "status", None),
                etag=state.get("etag"),
                last_modified=state.get("last_modified"),
                error=_describe(exc),
            )
            raise
        entries = _entries(body, url) if body is not None else []
        if entries is None:
            raise ValueError(f"{url} is not a valid Atom document")
        await ctx.save_feed_state(url, status=status, etag=etag, last_modified=modified, error=None)
        return entries

    async def _handle_entries(
        self, ctx: SourceContext, url: str, status: int, entries: list[FeedEntry], sem: asyncio.Semaphore
    ) -> tuple[FeedStats, set[str]]:
        """Fetch what is new and due; also returns the links whose fetch failed and may be retried."""
        links = list(dict.fromkeys(e.url for e in entries))
        if not links:
            return FeedStats(url, status), set()
        known = await ctx.known_documents(SOURCE, links)
        # Oldest first, so a series' telegrams are handled in the order JMA issued them.
        order = sorted(
            (e for e in entries if e.url not in known and e.url not in self._refused),
            key=lambda e: e.updated or datetime.max.replace(tzinfo=UTC),
        )
        new = list(dict.fromkeys(e.url for e in order))
        attempts = await ctx.failed_fetches(SOURCE, new) if new else {}
        due = [link for link in new if self._retry_due(attempts.get(link, 0))]
        results = await asyncio.gather(*(self._fetch_one(ctx, sem, link, attempts.get(link, 0) + 1) for link in due))
        retry = {link for link in new if link not in due} | {
            link for link, result in zip(due, results, strict=True) if result == "fetch_failed"
        }
        stats = FeedStats(
            url,
            status,
            entries=len(links),
            new=len(new),
            fetched=sum(1 for r in results if r != "skipped"),
            alerts=results.count("alert"),
            unsupported=results.count("unsupported"),
            errors=results.count("error") + results.count("fetch_failed"),
            deferred=len(new) - len(due),
        )
        return stats, retry

    def _retry_due(self, attempts: int) -> bool:
        """Whether a telegram whose fetch failed ``attempts`` times is tried on this poll (class docstring)."""
        return attempts == 0 or self._polls % max(1, int(self.retry_growth ** min(attempts - 1, 16))) == 0

    async def _fetch_one(self, ctx: SourceContext, sem: asyncio.Semaphore, link: str, attempt: int) -> str:
        doc_id = await ctx.claim_document(SOURCE, link)
        if doc_id is None:
            # Another poll has it, or its fetch failed too often; either way not ours.
            if len(self._refused) > MAX_REMEMBERED:
                self._refused.clear()
            self._refused.add(link)
            return "skipped"
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
                log.warning(
                    "JMA telegram fetch failed", extra={"url": link, "error": _describe(exc), "attempt": attempt}
                )
                return "fetch_failed"
        return await ingest_document(ctx, doc_id, data, link, self.parse)


def _entries(body: bytes, url: str) -> list[FeedEntry] | None:
    """The entries of an Atom feed; None when it is not one."""
    # feedparser never raises on bad input; it sets ``bozo`` instead.
    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        log.error("JMA feed is not a valid Atom document", extra={"feed": url, "error": str(parsed.bozo_exception)})
        return None
    out = []
    for entry in parsed.entries:
        link = _entry_url(entry)
        if link:
            stamp = entry.get("updated_parsed") or entry.get("published_parsed")
            updated = datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None
            out.append(FeedEntry(link, updated))
    return out


async def ingest_document(
    ctx: SourceContext, doc_id: int, data: bytes, url: str, parse: Callable[..., ParseOutcome] = parse_telegram
) -> str:
    """Parse a fetched telegram, store what it was, and emit its alert."""
    outcome = await asyncio.to_thread(parse, data, url=url) if len(data) > 200_000 else parse(data, url=url)
    if isinstance(outcome, Parsed):
        alert = outcome.alert
        document = Document(SOURCE, url, content=data, kind=alert.kind, title=alert.event, id=doc_id)
        # The document is marked parsed in the transaction that stores its alert: if
        # the database is gone for longer than emit waits, the telegram stays
        # claimable ("fetch_failed") and a later poll tries again; never lost.
        try:
            await ctx.emit(alert, document=document)
        except ValueError as exc:  # a value that cannot be stored (dispatcher.validate): the telegram is bad
            log.error("JMA telegram refused", extra={"url": url, "error": str(exc)})
            await ctx.record_document(doc_id, outcome="error", content=data, error=f"alert not stored: {exc}")
            return "error"
        except Exception as exc:
            log.error("could not store the alert of a JMA telegram", extra={"url": url, "error": str(exc)})
            with contextlib.suppress(Exception):
                await ctx.record_document(doc_id, outcome="fetch_failed", error=f"alert not stored: {exc}")
            return "error"
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
