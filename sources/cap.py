"""CAP 1.2 (and 1.1) alerts in: OASIS Common Alerting Protocol XML → ``dispatcher.model.Alert``.

Spec: https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html. One CAP message
becomes one Alert: ``<alert>`` gives identifier, sender, sent, status, msgType and
references; the preferred ``<info>`` (Japanese, else English, else the first) gives
event, urgency, severity, certainty, headline, description, instruction and expires;
the ``<area>`` blocks of *every* info become Areas (``areaDesc``, ``polygon``, ``circle``,
``geocode`` values as codes), so targeting never misses an area only one language names.
A Cancel may have no info at all.

Parsing is safe for documents from outside: no DTD (a DOCTYPE is refused outright), no
entity expansion, no network, a size limit (https://lxml.de/FAQ.html#how-do-i-use-lxml-
safely-as-a-web-service-endpoint). Fields are held to what the database and the pages
take (:mod:`dispatcher.limits`): ``identifier``, ``sender``, each reference and geocode
value at most 200 printable characters, at most 100 references, ``sent`` from 2000 to a
day from now, ``expires`` from 2000 to 2100, texts capped (:data:`MAX_TEXT`). XML 1.0
already keeps out NUL and lone surrogates. Nothing here raises on bad input:
:func:`parse_cap` returns a :mod:`sources.outcome`: ``Parsed``, ``Unsupported`` (CAP 1.0,
Ack/Error messages, not CAP; its ``kind`` is the CAP version) or ``Failed`` (unsafe,
malformed, missing required fields).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from lxml import etree

from dispatcher.limits import EARLIEST, MAX_ITEMS, name_problem, text_problem, time_problem
from dispatcher.model import Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency
from sources.outcome import Failed, Parsed, ParseOutcome, Unsupported
from sources.safexml import parse_xml

__all__ = ["CAP_NAMESPACES", "MAX_BYTES", "is_cap", "parse_cap", "parse_cap_circle", "parse_cap_polygon"]

T = TypeVar("T")

CAP_NAMESPACES = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
}
CAP_10_NAMESPACE = "http://www.incident.com/cap/1.0"
MAX_BYTES = 5_000_000
SOURCE = "cap"
# Longest text field kept (description, instruction…): a CAP message is read aloud,
# not a document. Headlines and events are far shorter by the spec's advice.
MAX_TEXT = 20_000
MAX_HEADLINE = 1_000
# Areas and geocode values of one message.
MAX_AREAS = 1_000
# No expiry we honour lies beyond this.
LATEST_EXPIRY = datetime(2100, 1, 1, tzinfo=UTC)


class _Refused(ValueError):
    """A field beyond its limit; becomes ``Failed`` with the reason."""


_STATUS = {"Actual": Status.ACTUAL, "Exercise": Status.EXERCISE, "System": Status.TEST, "Test": Status.TEST}
_STATUS["Draft"] = Status.DRAFT
_MSG_TYPE = {"Alert": MsgType.ALERT, "Update": MsgType.UPDATE, "Cancel": MsgType.CANCEL}
_PRIORITY = {
    Severity.EXTREME: Priority.CRITICAL,
    Severity.SEVERE: Priority.HIGH,
    Severity.MODERATE: Priority.NORMAL,
    Severity.MINOR: Priority.LOW,
    Severity.UNKNOWN: Priority.NORMAL,
}


def parse_cap_polygon(text: str) -> tuple[tuple[float, float], ...]:
    """CAP ``<polygon>`` text ("lat,lon lat,lon ...") as (lat, lon) pairs.

    Raises ValueError on malformed text; range checks are the geometry's
    (``geo.resolve_areas`` reports a shape it cannot use).
    """
    pairs = []
    for token in text.split():
        lat, sep, lon = token.partition(",")
        if not sep:
            raise ValueError(f"CAP polygon point {token!r} is not 'lat,lon'")
        pairs.append((float(lat), float(lon)))
    return tuple(pairs)


def parse_cap_circle(text: str) -> tuple[float, float, float]:
    """CAP ``<circle>`` text ("lat,lon radius_km") as (lat, lon, radius_km)."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"CAP circle {text!r} is not 'lat,lon radius'")
    lat, lon = parse_cap_polygon(parts[0])[0]
    return (lat, lon, float(parts[1]))


def _root(data: bytes) -> Any:
    """The root element; raises ValueError (Unsafe/MalformedXmlError) when unsafe or malformed."""
    return parse_xml(data, max_bytes=MAX_BYTES)


def is_cap(data: bytes) -> bool:
    """Whether ``data`` looks like a CAP message (root element ``alert``), cheaply."""
    head = data[:4096]
    return b"<alert" in head or b":alert" in head


def _local(el: Any) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def _text(el: Any, name: str) -> str:
    found = _children(el, name)
    return (found[0].text or "").strip() if found else ""


def _enum(value: str, enum: Any, default: Any) -> Any:
    try:
        return enum(value.strip().lower())
    except ValueError:
        return default


def _time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _preferred(infos: list[Any]) -> Any:
    for prefix in ("ja", "en"):
        for info in infos:
            if (_text(info, "language") or "en-US").lower().startswith(prefix):
                return info
    return infos[0]


def _area(el: Any, problems: list[str]) -> Area:
    desc = _capped(el, "areaDesc", MAX_HEADLINE)
    polygons = _shapes(el, "polygon", parse_cap_polygon, desc, problems)
    circles = _shapes(el, "circle", parse_cap_circle, desc, problems)
    codes: dict[str, None] = {}
    kinds: dict[str, None] = {}
    for g in _children(el, "geocode"):
        value = _text(g, "value")
        if value:
            _limit(name_problem(value, "geocode value"))
            codes[value] = None
            kinds[_text(g, "valueName")[:MAX_HEADLINE]] = None
    details = {"geocode_names": ",".join(k for k in kinds if k)} if kinds else {}
    return Area(desc, tuple(codes), tuple(polygons), tuple(circles), details)


def _shapes(el: Any, name: str, parse: Callable[[str], T], desc: str, problems: list[str]) -> list[T]:
    """The ``<polygon>`` or ``<circle>`` shapes of an area; one that cannot be read becomes a problem."""
    shapes = []
    for i, child in enumerate(_children(el, name)):
        try:
            shapes.append(parse(child.text or ""))
        except (ValueError, IndexError) as exc:
            problems.append(f"area {desc!r} {name} {i}: {exc}")
    return shapes


def _limit(problem: str | None) -> None:
    if problem is not None:
        raise _Refused(problem)


def _capped(el: Any, name: str, max_length: int = MAX_TEXT) -> str:
    value = _text(el, name)
    _limit(text_problem(value, name, max_length=max_length))
    return value


def _expires(value: str) -> datetime | None:
    expires = _time(value)
    if expires is not None and not EARLIEST <= expires <= LATEST_EXPIRY:
        raise _Refused(f"expires {expires.isoformat()} is out of range ({EARLIEST:%Y} to {LATEST_EXPIRY:%Y})")
    return expires


def parse_cap(data: bytes, *, url: str | None = None) -> ParseOutcome:
    """Parse one CAP message; never raises for bad input."""
    try:
        root = _root(bytes(data))
    except (ValueError, etree.XMLSyntaxError) as exc:
        return Failed(f"{type(exc).__name__}: {exc}")
    try:
        return _parse_root(root, url)
    except _Refused as exc:
        return Failed(str(exc))
    except Exception as exc:  # an unforeseen shape must not stop a source
        return Failed(f"cannot interpret CAP: {type(exc).__name__}: {exc}")


def _parse_root(root: Any, url: str | None) -> ParseOutcome:
    namespace = etree.QName(root).namespace or ""
    if _local(root) != "alert":
        return Unsupported("", f"not a CAP alert (root element <{_local(root)}>)")
    if namespace == CAP_10_NAMESPACE:
        return Unsupported("1.0", "CAP 1.0 is not supported; senders should use CAP 1.2")
    version = CAP_NAMESPACES.get(namespace)
    if version is None:
        return Unsupported("", f"unknown CAP namespace {namespace!r}")
    identifier, sender = _text(root, "identifier"), _text(root, "sender")
    sent = _time(_text(root, "sent"))
    if not identifier or not sender or sent is None:
        return Failed("CAP alert lacks identifier, sender or a valid sent time with zone")
    _limit(name_problem(identifier, "identifier"))
    _limit(name_problem(sender, "sender"))
    _limit(time_problem(sent, "sent"))
    msg_type_text = _text(root, "msgType")
    msg_type = _MSG_TYPE.get(msg_type_text)
    if msg_type is None:
        return Unsupported(version, f"msgType {msg_type_text!r} is not disseminated")
    # An unknown status is fenced like a test: it must never reach the public.
    status = _STATUS.get(_text(root, "status"), Status.TEST)
    # references: "sender,identifier,sent" triples separated by whitespace.
    references = tuple(ref.split(",")[1] for ref in _text(root, "references").split() if ref.count(",") >= 2)
    if len(references) > MAX_ITEMS:
        return Failed(f"references must name at most {MAX_ITEMS} alerts (it names {len(references)})")
    for i, ref in enumerate(references):
        _limit(name_problem(ref, f"references[{i}] identifier"))
    infos = _children(root, "info")
    if not infos and msg_type is not MsgType.CANCEL:
        return Failed("CAP alert has no <info>")
    problems: list[str] = []
    area_elements = [a for info in infos for a in _children(info, "area")]
    if len(area_elements) > MAX_AREAS:
        return Failed(f"CAP alert has more than {MAX_AREAS} areas")
    areas = tuple(_area(a, problems) for a in area_elements)
    details: dict[str, Any] = {"cap_version": version, "scope": _text(root, "scope")}
    if not infos:
        return Parsed(
            Alert(
                identifier=identifier,
                sender=sender,
                sent=sent,
                status=status,
                msg_type=msg_type,
                event=_capped(root, "note", MAX_HEADLINE) or "Cancel",
                severity=Severity.UNKNOWN,
                urgency=Urgency.UNKNOWN,
                certainty=Certainty.UNKNOWN,
                headline="",
                source=SOURCE,
                references=references,
                kind=f"CAP{version}",
                details=details,
                original_url=url,
            ),
        )
    info = _preferred(infos)
    severity = _enum(_text(info, "severity"), Severity, Severity.UNKNOWN)
    details |= {
        "language": _text(info, "language") or "en-US",
        "categories": [c.text.strip() for c in _children(info, "category") if c.text],
        "sender_name": _text(info, "senderName"),
        "web": _text(info, "web"),
        "parameters": {_text(p, "valueName"): _text(p, "value") for p in _children(info, "parameter")},
    }
    if problems:
        details["problems"] = problems
    alert = Alert(
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        event=_capped(info, "event", MAX_HEADLINE),
        severity=severity,
        urgency=_enum(_text(info, "urgency"), Urgency, Urgency.UNKNOWN),
        certainty=_enum(_text(info, "certainty"), Certainty, Certainty.UNKNOWN),
        headline=_capped(info, "headline", MAX_HEADLINE),
        source=SOURCE,
        priority=_PRIORITY[severity],
        references=references,
        description=_capped(info, "description"),
        instruction=_capped(info, "instruction"),
        areas=areas,
        expires=_expires(_text(info, "expires")),
        kind=f"CAP{version}",
        details=details,
        original_url=url,
    )
    return Parsed(alert, tuple(problems))
