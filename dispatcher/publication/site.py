"""The public site in memory and on disk: every page and feed rebuilt on every change.

:class:`Site` keeps each public page and feed as bytes in memory (the daemon answers
from there: a disaster's traffic costs no query and no rendering) and writes the same
bytes into ``[publication] static_dir``, each file written to a temporary name in its
folder and renamed over the old one (atomic on POSIX), so a plain web server or a CDN
serves the copy without touching the daemon. It follows the database: a trigger
``NOTIFY publication`` on every stored or changed alert (migration 0011) wakes it,
and a full refresh every :data:`REFRESH` seconds drops what expired (and covers a lost
LISTEN connection).

URL → file: a path ending in ``/`` is ``index.html`` in that folder; a path whose last
segment has an extension is itself; any other is a folder with ``index.html`` (pages)
or ``index.atom`` (feeds). A server needs ``index index.html index.atom`` and
``try_files $uri $uri/ =404`` (nginx), see README "Public site".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from channels.templates import Templates
from dispatcher.publication import cap, feeds, opendata
from dispatcher.publication import text as T
from dispatcher.publication.config import PublicationConfig
from dispatcher.publication.render import FIELDS, environment, render, svg
from dispatcher.publication.svgmap import district_map
from dispatcher.publication.view import COLOURS, alert_view, history_view, url
from dispatcher.store import public
from dispatcher.store.alerts import row_to_alert
from geo.layers import Feature

log = logging.getLogger(__name__)
NOTIFY_CHANNEL = "publication"
# Seconds between full refreshes (expiries, a lost LISTEN).
REFRESH = 60.0
# Changes arriving this close together are published together.
DEBOUNCE = 0.02
HTML = "text/html; charset=utf-8"
STYLESHEET = Path(__file__).resolve().parent.parent / "web" / "static" / "site.css"
ATOM = "application/atom+xml; charset=utf-8"
GRAVITY = ("special", "danger", "warning", "advisory", "info")
CAP = "application/cap+xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    content_type: str
    etag: str


def page(body: bytes | str, content_type: str) -> Page:
    data = body.encode() if isinstance(body, str) else body
    return Page(data, content_type, '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"')


def static_path(path: str, content_type: str) -> str:
    """Where the page served at ``path`` lies in the static copy (module docstring)."""
    p = path.lstrip("/")
    if p == "" or p.endswith("/"):
        return p + "index.html"
    if "." in p.rsplit("/", 1)[-1]:
        return p
    return p + ("/index.atom" if content_type.startswith(feeds.CONTENT_TYPE) else "/index.html")


def write_atomically(root: Path, files: Mapping[str, bytes]) -> None:
    """Write each file under ``root`` by a temporary file in its folder and a rename."""
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class Site:
    """Every public page and feed, in memory and in ``static_dir`` (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        templates: Templates,
        config: PublicationConfig,
        public_url: str,
        static_dir: Path,
        districts: Sequence[Feature],
        city_codes: Sequence[str],
        site_name: str = "沼津市 防災情報",
    ) -> None:
        self.pool = pool
        self.templates = templates
        self.config = config
        self.base = public_url.rstrip("/")
        self.static_dir = static_dir
        self.districts = list(districts)
        self.city_codes = list(city_codes)
        self.site_name = site_name
        self.pages: dict[str, Page] = {}
        self._written: dict[str, str] = {}
        self._changed: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.built = asyncio.Event()
        self.last_build: float = 0.0
        # monotonic time of each alert's last publication (benches measure with it).
        self.published_at: dict[int, float] = {}
        # Views and feed entries of alerts seen before: an alert changes only its state
        # (and replaced_by), so a rebuild computes only what is new.
        self._views: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._entry_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._targets: dict[int, frozenset[str]] = {}

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, dsn: str) -> None:
        await self.rebuild(None)
        self._task = asyncio.create_task(self._run(dsn), name="publication")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit():
            self._changed.add(int(payload))
            self._wake.set()

    async def _listen(self, dsn: str) -> None:
        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(dsn)
            except Exception as exc:  # the refresh timer keeps the site current meanwhile
                log.warning("publication LISTEN failed; retrying", extra={"error": str(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, ev=lost: ev.set())
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self._wake.set()  # whatever changed while we were not listening
                await lost.wait()
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    async def _run(self, dsn: str) -> None:
        listener = asyncio.create_task(self._listen(dsn), name="publication-listen")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=REFRESH)
                await asyncio.sleep(DEBOUNCE)
                self._wake.clear()
                changed, self._changed = self._changed, set()
                try:
                    await self.rebuild(changed)
                except Exception:
                    log.exception("publishing the public site failed; retrying on the next change or refresh")
                    self._changed |= changed
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def copy_stylesheet(self) -> None:
        """The public pages' stylesheet, for the static copy (the daemon serves it too)."""
        css = STYLESHEET.read_bytes()
        self.pages["/site.css"] = page(css, "text/css; charset=utf-8")
        write_atomically(self.static_dir, {"site.css": css})

    # -- building ---------------------------------------------------------------------

    def _reaches(self, row: Mapping[str, Any], codes: Sequence[str]) -> bool:
        """Whether the alert reaches a reader following any of ``codes`` (its codes' set kept per alert)."""
        key = int(row["id"])
        targets = self._targets.get(key)
        if targets is None:
            targets = self._targets[key] = frozenset(row["target_codes"] or ()) | frozenset(row["area_codes"] or ())
        return not targets.isdisjoint(codes)

    def get(self, path: str) -> Page | None:
        return self.pages.get(path)

    async def rebuild(self, changed: set[int] | None) -> float:
        """Rebuild the lists and feeds, and the pages of ``changed`` alerts' chains (None: every alert)."""
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            current = await public.current(conn, self.config.current_hours)
            aired = await public.broadcasts(conn, self.config.relisten_hours)
            recent = await public.recent(conn, max(500, self.config.feed_entries))
            every = await public.every_public(conn)
            events = await public.event_names(conn)
            if changed is None:
                pages_of = [r for r in await conn.fetch("SELECT * FROM alerts WHERE state <> 'held'")]
            else:
                pages_of = list(await public.by_ids(conn, sorted(changed)))
            chains: dict[int, list[asyncpg.Record]] = {}
            for row in pages_of:
                if int(row["id"]) in chains:
                    continue
                chain = await public.chain(conn, int(row["id"]))
                for member in chain:
                    chains[int(member["id"])] = chain
        built: dict[str, Page] = {}
        for lang in T.LANGUAGES:
            self._lists(built, lang, current, recent, events, aired)
        for chain in {id(c): c for c in chains.values()}.values():
            for row in chain:
                self._alert_pages(built, row, chain)
        self._feeds(built, recent)
        built["/open-data/alerts.csv"] = page(opendata.as_csv(every, self.base), "text/csv; charset=utf-8")
        built["/open-data/alerts.json"] = page(opendata.as_json(every, self.base), "application/json; charset=utf-8")
        self.pages.update(built)
        await asyncio.to_thread(self._write, built)
        now = time.monotonic()
        for alert_id in chains:
            self.published_at[alert_id] = now
        self.last_build = time.perf_counter() - started
        self.built.set()
        log.debug("public site published", extra={"pages": len(built), "seconds": round(self.last_build, 3)})
        return self.last_build

    def _write(self, built: Mapping[str, Page]) -> None:
        files = {}
        for path, p in built.items():
            rel = static_path(path, p.content_type)
            if self._written.get(rel) != p.etag:
                files[rel] = p.body
        write_atomically(self.static_dir, files)
        for path, p in built.items():
            self._written[static_path(path, p.content_type)] = p.etag

    def _view(self, row: Mapping[str, Any], lang: str, district: tuple[str, str] | None = None) -> dict[str, Any]:
        key = (row["id"], row["state"], row["replaced_by"], lang, district)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 50_000:
                self._views.clear()
            view = self._views[key] = alert_view(row, lang, self.templates, district=district)
            # Rendered once: the lists of every rebuild only join the cards.
            card = environment().get_template("site_card.html").render(v=view, w=T.words(lang), lang=lang)
            view["card"] = svg(card)
        return view

    def _lists(
        self,
        built: dict[str, Page],
        lang: str,
        current: Sequence[Mapping[str, Any]],
        recent: Sequence[Mapping[str, Any]],
        events: list[str],
        aired: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        w = T.words(lang)
        # What is in force here: alerts for the city or one of its districts, not the whole country's.
        local = [*self.city_codes, *(d.code for d in self.districts)]
        current = [r for r in current if self._reaches(r, local)]
        views = [self._view(r, lang) for r in current]
        counts = {
            d.code: sum(1 for r in current if self._reaches(r, [d.code, *self.city_codes])) for d in self.districts
        }
        heard = [self._view(r, lang) for r in aired if self._reaches(r, local)]
        built[url(lang, "home")] = page(self._home(lang, w["site"], views, counts, None, heard), HTML)
        for d in self.districts:
            rows = [r for r in current if self._reaches(r, [d.code, *self.city_codes])]
            dviews = [self._view(r, lang, (d.code, d.name)) for r in rows]
            dheard = [v for v in heard if self._reaches(v["row"], [d.code, *self.city_codes])]
            title = f"{d.name} — {w['current']}"
            built[url(lang, "district", d.code)] = page(self._home(lang, title, dviews, counts, d, dheard), HTML)
        built[url(lang, "archive")] = page(
            self.archive_html(lang, recent[:200], events, since="", until="", event=""), HTML
        )
        built[url(lang, "open-data")] = page(
            render("site_opendata.html", lang, w["open_data"], "open-data", fields=FIELDS), HTML
        )

    def _home(
        self,
        lang: str,
        title: str,
        views: list[dict[str, Any]],
        counts: Mapping[str, int],
        district: Feature | None,
        heard: Sequence[dict[str, Any]] = (),
    ) -> str:
        w = T.words(lang)
        fills: dict[str, str] = {}
        # Each district wears the colour of the gravest alert in force there.
        for v in sorted(views, key=lambda v: GRAVITY.index(v["grade"])):
            colour = COLOURS[v["grade"]][0] if v["grade"] != "info" else "#b8c7e0"
            for d in self.districts:
                if self._reaches(v["row"], [d.code, *self.city_codes]):
                    fills.setdefault(d.code, colour)
        links = {d.code: url(lang, "district", d.code) for d in self.districts}
        current = district.code if district else None
        svg_markup = district_map(self.districts, links=links, fills=fills, title=w["map"], current=current)
        dlist = [
            {"url": links[d.code], "name": d.name, "count": counts.get(d.code, 0), "current": d.code == current}
            for d in self.districts
        ]
        return render(
            "site_home.html",
            lang,
            title,
            "district" if district else "home",
            district.code if district else "",
            alerts=views,
            heard=heard,
            districts=dlist,
            map_svg=svg(svg_markup),
            district_name=district.name if district else "",
        )

    def archive_html(
        self, lang: str, rows: Sequence[Mapping[str, Any]], events: list[str], *, since: str, until: str, event: str
    ) -> str:
        w = T.words(lang)
        views = [self._view(r, lang) for r in rows]
        return render(
            "site_archive.html", lang, w["archive"], "archive", alerts=views, events=events,
            since=since, until=until, event=event, action=url(lang, "archive"),
        )  # fmt: skip

    def alert_html(self, row: Mapping[str, Any], chain: Sequence[Mapping[str, Any]], lang: str) -> str:
        v = self._view(row, lang)
        newest = chain[-1] if chain else row
        latest = url(lang, "alert", str(newest["public_id"])) if newest["public_id"] != row["public_id"] else None
        title = ("【訓練】" if v["exercise"] else "") + str(v["event"])
        return render(
            "site_alert.html", lang, title, "alert", str(row["public_id"]), v=v,
            history=history_view(chain, lang, str(row["public_id"])), latest=latest, noindex=v["exercise"],
        )  # fmt: skip

    def _alert_pages(self, built: dict[str, Page], row: Mapping[str, Any], chain: Sequence[Mapping[str, Any]]) -> None:
        pid = str(row["public_id"])
        for lang in T.LANGUAGES:
            built[url(lang, "alert", pid)] = page(self.alert_html(row, chain, lang), HTML)
        if row["status"] == "actual":
            built[f"/feeds/cap/{pid}.xml"] = page(self.cap_xml(row, chain), CAP)

    def cap_xml(self, row: Mapping[str, Any], chain: Sequence[Mapping[str, Any]]) -> bytes:
        alert = row_to_alert(row)
        replaces = [row_to_alert(r) for r in chain if r["replaced_by"] == row["id"]]
        return cap.cap_document(
            alert,
            self.templates,
            sender=self.config.cap_sender,
            sender_name=self.config.author,
            page_url=f"{self.base}/alerts/{alert.public_id}",
            replaces=replaces,
        )

    def _entries(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in list(rows)[: self.config.feed_entries]:
            key = (r["id"], r["state"])
            entry = self._entry_cache.get(key)
            if entry is None:
                alert = row_to_alert(r)
                subject, text = self.templates.compose(alert, "ja", max_length=1000, link=None)
                entry = {"public_id": alert.public_id, "title": subject or alert.event, "summary": text,
                         "sent": alert.sent, "updated": r["received_at"], "event": alert.event}  # fmt: skip
                if len(self._entry_cache) > 50_000:
                    self._entry_cache.clear()
                self._entry_cache[key] = entry
            out.append(entry)
        return out

    def _feeds(self, built: dict[str, Page], recent: Sequence[Mapping[str, Any]]) -> None:
        author, title = self.config.author, self.site_name
        city = self._entries(recent)
        built["/feeds/atom"] = page(
            feeds.atom_feed(base=self.base, path="/feeds/atom", title=title, author=author, entries=city), ATOM
        )
        built["/feeds/cap"] = page(
            feeds.atom_feed(base=self.base, path="/feeds/cap", title=f"{title} (CAP 1.2)", author=author,
                            entries=city, cap=True),
            ATOM,
        )  # fmt: skip
        for d in self.districts:
            rows = [r for r in recent if self._reaches(r, [d.code, *self.city_codes])]
            path = f"/feeds/atom/{d.code}"
            built[path] = page(
                feeds.atom_feed(base=self.base, path=path, title=f"{title} — {d.name}", author=author,
                                entries=self._entries(rows)),
                ATOM,
            )  # fmt: skip
