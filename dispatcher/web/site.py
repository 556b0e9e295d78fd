"""The public site and the open feeds, answered from the publication's in-memory copy.

Routes (registered by :func:`routes`):
    GET /public/, /public/{lang}/            current alerts for the city, the district map
    GET /public/[{lang}/]districts/{code}/   the same for one district
    GET /public/[{lang}/]archive/            the archive (?from=YYYY-MM-DD &to= &type=)
    GET /alerts/{id}[/{lang}]                an alert's permanent page with its history
    GET /open-data/[{lang}/], /open-data/alerts.csv, /open-data/alerts.json
    GET /feeds/atom, /feeds/atom/{district}, /feeds/cap, /feeds/cap/{id}.xml
    GET /site.css

Pages are the bytes :class:`dispatcher.publication.site.Site` built (and wrote to the
static copy); an alert not among them (held, or none such) is a 404. Answers carry an
``ETag`` and ``Cache-Control: no-cache`` (always revalidated, as an alert can be
cancelled; a revalidation is a 304 answered from memory). An alert page not in memory
(a link sent before public ids existed, which carried the sender's identifier) is read
from the database and rendered for the request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from dispatcher.publication import text as T
from dispatcher.publication.site import HTML, Page, page
from dispatcher.publication.wiring import Publication
from dispatcher.status import JST
from dispatcher.store import alerts as alert_store
from dispatcher.store import public
from dispatcher.web.context import WEB
from dispatcher.web.public import alert_page as plain_alert_page

# Always revalidated (an alert can be cancelled); a revalidation is a 304 from memory.
CACHE = "no-cache"
_LANGS = "|".join(lang for lang in T.LANGUAGES if lang != "ja")


def _publication(request: web.Request) -> Publication:
    pub = request.app[WEB].publication
    if pub is None:
        raise web.HTTPNotFound(text="the public site is not enabled")
    return pub


def answer(request: web.Request, p: Page) -> web.Response:
    headers = {"ETag": p.etag, "Cache-Control": CACHE}
    if request.headers.get("If-None-Match") == p.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=p.body, headers={**headers, "Content-Type": p.content_type})


async def cached(request: web.Request) -> web.StreamResponse:
    """Any page of the in-memory copy, by its path."""
    p = _publication(request).site.get(request.path)
    if p is None:
        raise web.HTTPNotFound(text="no such page")
    return answer(request, p)


async def alert(request: web.Request) -> web.StreamResponse:
    """An alert's page: from the copy, else from the database (older links), else (publication off) the plain page."""
    pub = request.app[WEB].publication
    if pub is None:
        return await plain_alert_page(request)
    p = pub.site.get(request.path)
    if p is not None:
        return answer(request, p)
    key, lang = request.match_info["id"], request.match_info.get("lang", "ja")
    async with request.app[WEB].pool.acquire() as conn:
        row = await alert_store.public_alert(conn, key) if len(key) <= 200 else None
        if row is None or row["state"] == "held":
            raise web.HTTPNotFound(text="no such alert")
        chain = await public.chain(conn, int(row["id"]))
    return answer(request, page(pub.site.alert_html(row, chain, lang), HTML))


def _day(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=JST)
    except ValueError:
        raise web.HTTPBadRequest(text="from and to are dates: YYYY-MM-DD") from None


async def archive(request: web.Request) -> web.StreamResponse:
    """The archive; with a search, rendered for it (dates are JST days, ``to`` inclusive)."""
    pub = _publication(request)
    q = request.query
    since, until, event = q.get("from", ""), q.get("to", ""), q.get("type", "")[:100]
    if not (since or until or event):
        return await cached(request)
    lang = request.match_info.get("lang", "ja")
    end = _day(until)
    async with request.app[WEB].pool.acquire() as conn:
        rows = await public.archive(
            conn, since=_day(since), until=end + timedelta(days=1) if end else None, event=event or None, limit=200
        )
        events = await public.event_names(conn)
    body = pub.site.archive_html(lang, rows, events, since=since, until=until, event=event)
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers={"Cache-Control": CACHE})


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return await cached(request)


async def with_slash(request: web.Request) -> web.StreamResponse:
    """``/public`` and the like: the page is its folder's (``/public/``)."""
    raise web.HTTPMovedPermanently(request.path + "/")


def routes() -> list[web.RouteDef]:
    lang = f"{{lang:{_LANGS}}}"
    return [
        web.get("/site.css", stylesheet),
        web.get("/public", with_slash),
        web.get("/open-data", with_slash),
        web.get("/public/", cached),
        web.get(f"/public/{lang}/", cached),
        web.get("/public/districts/{district}/", cached),
        web.get(f"/public/{lang}/districts/{{district}}/", cached),
        web.get("/public/archive/", archive),
        web.get(f"/public/{lang}/archive/", archive),
        web.get(f"/alerts/{{id}}/{lang}", alert),
        web.get("/open-data/", cached),
        web.get(f"/open-data/{lang}/", cached),
        web.get("/open-data/alerts.csv", cached),
        web.get("/open-data/alerts.json", cached),
        web.get("/feeds/atom", cached),
        web.get("/feeds/atom/{district}", cached),
        web.get("/feeds/cap", cached),
        web.get("/feeds/cap/{id}.xml", cached),
    ]


__all__ = ["HTML", "alert", "answer", "cached", "routes"]
