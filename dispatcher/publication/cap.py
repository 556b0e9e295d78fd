"""CAP 1.2 out: every public alert as an OASIS CAP 1.2 document, in Japanese and English.

Spec: https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html (element order and
the ``dateTime`` form ``2026-11-29T20:15:00+09:00`` as its XSD requires; the schema is
``../shared/data/cap/cap12.xsd``, which the tests validate every document against).
Built with lxml. An update or cancel names what it replaces in ``references``
(``sender,identifier,sent`` of each). Each document has a ``ja-JP`` and an ``en-US``
``info`` block whose texts come from the message templates (never machine
translation); area codes are JMA's (``valueName`` ``JMA``) or the city's districts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lxml import etree

from channels.templates import Templates
from dispatcher.model import Alert, MsgType
from dispatcher.status import JST

NS = "urn:oasis:names:tc:emergency:cap:1.2"
CONTENT_TYPE = "application/cap+xml"
LANGUAGES = (("ja", "ja-JP"), ("en", "en-US"))


def cap_time(value: datetime) -> str:
    """CAP's dateTime: seconds, an explicit offset (JST), no ``Z`` and no fraction."""
    return value.astimezone(JST).replace(microsecond=0).isoformat()


def cap_identifier(alert: Alert) -> str:
    """Our identifier for ``alert``: its public id (no spaces, commas or markup, as CAP requires)."""
    return f"numazu-{alert.public_id}"


def category(alert: Alert) -> str:
    if any(word in alert.event for word in ("地震", "津波", "火山", "噴火", "南海トラフ")):
        return "Geo"
    if alert.source == "jma":
        return "Met"
    if alert.source == "broadcast":
        return "Safety"
    return "Other"


def _el(parent: Any, tag: str, text: str | None = None) -> Any:
    element = etree.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters; a sender's text might.
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 32)


def cap_document(
    alert: Alert,
    templates: Templates,
    *,
    sender: str,
    sender_name: str,
    page_url: str,
    replaces: Sequence[Alert] = (),
) -> bytes:
    """The CAP 1.2 document of ``alert`` (``replaces``: the alerts an update or cancel replaces)."""
    root = etree.Element(f"{{{NS}}}alert", nsmap={None: NS})
    _el(root, "identifier", cap_identifier(alert))
    _el(root, "sender", sender)
    _el(root, "sent", cap_time(alert.sent))
    _el(root, "status", alert.status.value.capitalize())
    _el(root, "msgType", alert.msg_type.value.capitalize())
    _el(root, "source", alert.source)
    _el(root, "scope", "Public")
    if alert.source == "jma":
        _el(root, "note", "出典：気象庁 (Source: Japan Meteorological Agency)")
    if replaces:
        _el(root, "references", " ".join(f"{sender},{cap_identifier(r)},{cap_time(r.sent)}" for r in replaces))
    for language, tag in LANGUAGES:
        pack = language if language in templates.languages else "ja"
        values = templates.values(alert, pack)
        subject, text = templates.compose(alert, pack, max_length=8000, link=None)
        info = _el(root, "info")
        _el(info, "language", tag)
        _el(info, "category", category(alert))
        _el(info, "event", _clean(values.get("event_name") or alert.event))
        if alert.msg_type is MsgType.CANCEL:
            _el(info, "responseType", "AllClear")
        _el(info, "urgency", alert.urgency.value.capitalize())
        _el(info, "severity", alert.severity.value.capitalize())
        _el(info, "certainty", alert.certainty.value.capitalize())
        if alert.kind:
            code = _el(info, "eventCode")
            _el(code, "valueName", "JMA")
            _el(code, "value", alert.kind)
        _el(info, "effective", cap_time(alert.sent))
        if alert.expires is not None:
            _el(info, "expires", cap_time(alert.expires))
        _el(info, "senderName", sender_name)
        _el(info, "headline", _clean(subject or alert.headline)[:160])
        _el(info, "description", _clean(text if language != "ja" else (alert.description.strip() or text)))
        if alert.instruction.strip() and language == "ja":
            _el(info, "instruction", _clean(alert.instruction.strip()))
        _el(info, "web", page_url if language == "ja" else f"{page_url}/en")
        for area in alert.areas:
            a = _el(info, "area")
            _el(a, "areaDesc", _clean(area.description) or "-")
            for ring in area.polygons:
                if len(ring) >= 4:
                    _el(a, "polygon", " ".join(f"{lat},{lon}" for lat, lon in ring))
            for lat, lon, radius in area.circles:
                _el(a, "circle", f"{lat},{lon} {radius}")
            for c in area.codes:
                g = _el(a, "geocode")
                _el(g, "valueName", "JMA" if c.isdigit() else "district")
                _el(g, "value", c)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
