"""Atom feeds (RFC 4287, https://www.rfc-editor.org/rfc/rfc4287) of the public alerts, built with lxml.

``/feeds/atom`` holds the city's alerts, ``/feeds/atom/{district}`` those reaching one
district, and ``/feeds/cap`` is the same list as an index of CAP 1.2 documents: each
entry links its document with ``type="application/cap+xml"`` (the form
Google Public Alerts and the WMO's alert hub read). Entries are addressed by the
alert's permanent page, so a re-publisher sees an update as a new entry and a cancel
as one more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from dispatcher.publication.cap import CONTENT_TYPE as CAP_TYPE

ATOM = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/atom+xml"
RIGHTS = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). 気象庁の情報は 出典：気象庁"


def _el(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    if text is not None:
        element.text = "".join(c for c in text if c in "\t\n\r" or ord(c) >= 32)
    return element


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def atom_feed(
    *,
    base: str,
    path: str,
    title: str,
    author: str,
    entries: Sequence[dict[str, Any]],
    cap: bool = False,
    language: str = "ja",
) -> bytes:
    """One feed; ``entries``: dicts with public_id, title, summary, sent, updated, event (and html/cap links)."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    feed.set("{http://www.w3.org/XML/1998/namespace}lang", language)
    _el(feed, "id", base + path)
    _el(feed, "title", title)
    updated = max((e["updated"] for e in entries), default=datetime(2000, 1, 1, tzinfo=UTC))
    _el(feed, "updated", _time(updated))
    _el(feed, "link", rel="self", href=base + path, type=CONTENT_TYPE)
    _el(feed, "link", rel="alternate", href=base + "/public/", type="text/html")
    _el(_el(feed, "author"), "name", author)
    _el(feed, "rights", RIGHTS)
    for e in entries:
        entry = _el(feed, "entry")
        page = f"{base}/alerts/{e['public_id']}"
        _el(entry, "id", page)
        _el(entry, "title", e["title"])
        _el(entry, "updated", _time(e["updated"]))
        _el(entry, "published", _time(e["sent"]))
        _el(entry, "link", rel="alternate", type="text/html", href=page)
        if cap:
            _el(entry, "link", rel="alternate", type=CAP_TYPE, href=f"{base}/feeds/cap/{e['public_id']}.xml")
        _el(entry, "category", term=e["event"])
        _el(entry, "summary", e["summary"])
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True))
