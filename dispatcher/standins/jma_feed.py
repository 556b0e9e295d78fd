"""A local stand-in for JMA's disaster XML Atom feed server.

Serves the four high-frequency Atom feeds (the format of
https://www.data.jma.go.jp/developer/xml/feed/*.xml), their long counterparts
(``<name>_l.xml``, holding everything published) and the telegrams themselves.
It answers conditional GETs (``If-None-Match`` and ``If-Modified-Since``) with
304 as JMA's servers do, and counts every request per path, so tests can check
that nothing is fetched twice.

A feed can also be a *raw* document, such as a real Atom snapshot saved from
JMA: its entry links to ``https://www.data.jma.go.jp/developer/xml/data/<file>``
are rewritten to this server's ``/data/<file>``, and only the telegram bodies
given with it are served (404 for the rest). Used by ``dispatcher demo``, the
tests and the benchmarks; never in production.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from xml.sax.saxutils import escape

from aiohttp import web

JMA_DATA_PREFIX = "https://www.data.jma.go.jp/developer/xml/data/"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    title: str
    updated: datetime
    body: bytes


class JmaFeedStandIn:
    """``/feed/<name>.xml`` and ``/feed/<name>_l.xml`` list entries; ``/data/<file>`` serves telegrams."""

    def __init__(self, feed_names: tuple[str, ...] = ("regular", "extra", "eqvol", "other")) -> None:
        names = [*feed_names, *(f"{n}_l" for n in feed_names)]
        self.feeds: dict[str, list[Entry]] = {n: [] for n in names}
        self.raw: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        # Telegram files answered 404 even though a feed lists them.
        self.gone: set[str] = set()
        self.requests: Counter[str] = Counter()
        self.not_modified = 0
        self.fail_next = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._changed: dict[str, datetime] = {n: datetime(2000, 1, 1, tzinfo=UTC) for n in names}

    def publish(self, feed: str, name: str, body: bytes, *, title: str = "", updated: datetime | None = None) -> str:
        """Add a telegram to ``feed`` and its long feed; return its URL."""
        when = (updated or datetime.now(UTC)).replace(microsecond=0)
        entry = Entry(name, title or name, when, body)
        for target in (feed, f"{feed}_l"):
            if target in self.feeds:
                self.feeds[target].insert(0, entry)
                self._touch(target)
        return self.url_of(name)

    def age_out(self, feed: str, keep: int = 0) -> None:
        """Drop all but the newest ``keep`` entries of a high-frequency feed (the long feed keeps them)."""
        del self.feeds[feed][keep:]
        self._touch(feed)

    def serve_raw(self, feed: str, document: bytes, bodies: Mapping[str, bytes]) -> None:
        """Serve ``document`` (a real Atom feed) as ``feed``, with telegram ``bodies`` by file name."""
        self.raw[feed] = document
        self.files.update(bodies)
        self._touch(feed)

    def _touch(self, feed: str) -> None:
        # HTTP dates have one-second resolution; never go backwards.
        self._changed[feed] = max(datetime.now(UTC).replace(microsecond=0), self._changed.get(feed, datetime.now(UTC)))

    def url_of(self, name: str) -> str:
        return f"{self.base_url}/data/{name}"

    def feed_url(self, feed: str) -> str:
        return f"{self.base_url}/feed/{feed}.xml"

    def _atom(self, feed: str) -> bytes:
        if feed in self.raw:
            return self.raw[feed].replace(JMA_DATA_PREFIX.encode(), f"{self.base_url}/data/".encode())
        entries = "".join(
            "<entry>"
            f"<title>{escape(e.title)}</title><id>{escape(self.url_of(e.name))}</id>"
            f"<updated>{e.updated.isoformat()}</updated><author><name>気象庁</name></author>"
            f'<link type="application/xml" href="{escape(self.url_of(e.name))}"/>'
            f'<content type="text/plain">{escape(e.title)}</content></entry>'
            for e in self.feeds[feed]
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom" lang="ja">'
            f"<title>高頻度フィード（{feed}）</title><subtitle>JMAXML publishing feed</subtitle>"
            f"<updated>{self._changed[feed].isoformat()}</updated><id>urn:standin:{feed}</id>"
            f'<link href="{escape(self.feed_url(feed))}" rel="self"/>'
            "<rights>Published by Japan Meteorological Agency</rights>"
            f"{entries}</feed>"
        ).encode()

    def _unchanged_since(self, request: web.Request, feed: str) -> bool:
        header = request.headers.get("If-Modified-Since")
        if not header:
            return False
        try:
            since = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return False  # an unparseable date is ignored, as RFC 9110 says
        return since.tzinfo is not None and self._changed[feed] <= since

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        feed = request.match_info["feed"]
        self.requests[request.path] += 1
        if feed not in self.feeds and feed not in self.raw:
            raise web.HTTPNotFound()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise web.HTTPServiceUnavailable()
        body = self._atom(feed)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        modified = format_datetime(self._changed[feed], usegmt=True)
        # If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2).
        inm = request.headers.get("If-None-Match")
        if inm == etag or (inm is None and self._unchanged_since(request, feed)):
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag, "Last-Modified": modified})
        return web.Response(
            body=body,
            content_type="application/atom+xml",
            charset="utf-8",
            headers={"ETag": etag, "Last-Modified": modified},
        )

    async def _data(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests[request.path] += 1
        if name in self.gone:
            raise web.HTTPNotFound()
        if name in self.files:
            return web.Response(body=self.files[name], content_type="application/xml", charset="utf-8")
        for entries in self.feeds.values():
            for e in entries:
                if e.name == name:
                    return web.Response(body=e.body, content_type="application/xml", charset="utf-8")
        raise web.HTTPNotFound()

    def fetches_of(self, name: str) -> int:
        return self.requests[f"/data/{name}"]

    def feed_requests(self, feed: str) -> int:
        return self.requests[f"/feed/{feed}.xml"]

    def data_requests(self) -> Counter[str]:
        """Telegram requests by file name."""
        return Counter({p.removeprefix("/data/"): n for p, n in self.requests.items() if p.startswith("/data/")})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/feed/{feed}.xml", self._feed)
        app.router.add_get("/data/{name}", self._data)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
