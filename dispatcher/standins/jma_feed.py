"""A local stand-in for JMA's disaster XML Atom feed server.

Serves an Atom feed (the format of https://www.data.jma.go.jp/developer/xml/feed/*.xml)
listing telegrams published to it, and the telegrams themselves. It answers
conditional GETs with 304 as JMA's servers do, and counts every request per
path, so tests can check that nothing is fetched twice. Used by
``dispatcher demo``, the tests and the benchmarks; never in production.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    title: str
    updated: datetime
    body: bytes


class JmaFeedStandIn:
    """``/feed/<name>.xml`` lists entries; ``/data/<file>`` serves telegrams."""

    def __init__(self, feed_names: tuple[str, ...] = ("regular", "extra", "eqvol", "other")) -> None:
        self.feeds: dict[str, list[Entry]] = {n: [] for n in feed_names}
        self.requests: Counter[str] = Counter()
        self.not_modified = 0
        self.fail_next = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._changed: dict[str, datetime] = {n: datetime(2000, 1, 1, tzinfo=UTC) for n in feed_names}

    def publish(self, feed: str, name: str, body: bytes, *, title: str = "", updated: datetime | None = None) -> str:
        """Add a telegram to ``feed``; return its URL."""
        when = (updated or datetime.now(UTC)).replace(microsecond=0)
        self.feeds[feed].insert(0, Entry(name, title or name, when, body))
        self._changed[feed] = max(datetime.now(UTC).replace(microsecond=0), self._changed[feed])
        return self.url_of(name)

    def url_of(self, name: str) -> str:
        return f"{self.base_url}/data/{name}"

    def feed_url(self, feed: str) -> str:
        return f"{self.base_url}/feed/{feed}.xml"

    def _atom(self, feed: str) -> bytes:
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

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        feed = request.match_info["feed"]
        self.requests[request.path] += 1
        if feed not in self.feeds:
            raise web.HTTPNotFound()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise web.HTTPServiceUnavailable()
        body = self._atom(feed)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        modified = format_datetime(self._changed[feed], usegmt=True)
        if request.headers.get("If-None-Match") == etag:
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
        for entries in self.feeds.values():
            for e in entries:
                if e.name == name:
                    return web.Response(body=e.body, content_type="application/xml", charset="utf-8")
        raise web.HTTPNotFound()

    def fetches_of(self, name: str) -> int:
        return self.requests[f"/data/{name}"]

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
