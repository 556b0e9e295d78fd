"""Parse JMA 防災情報XML telegrams into ``dispatcher.model.Alert``.

Format reference: https://xml.kishou.go.jp/ (技術資料: 解説資料, 個別コード表).
Every telegram is ``Report`` = ``Control`` (Title, Status, EditorialOffice) +
``Head`` (Title, ReportDateTime, EventID, InfoType, Serial, Headline) + ``Body``
(meteorology1 / seismology1 / volcanology1). Lookups are by local name so that
a namespace version bump does not break them.

Contracts with the dispatcher:

* ``parse_telegram`` never raises for bad input: it returns ``Parsed(alert)``,
  ``Unsupported(...)`` for well-formed telegrams of a family we do not
  normalise (stored and reported, not delivered), or ``Failed(error)``.
* ``identifier``: JMA has no message id, so it is ``"jma-"`` + the first 32 hex
  digits of SHA-256 over Control/Title, Control/EditorialOffice,
  Control/Status, Head/Title, Head/ReportDateTime, Head/InfoType, Head/Serial,
  Head/EventID, Head/Headline/Text and a SHA-256 of the Body's bytes. The same
  telegram fetched twice (the same bytes) gets the same identifier; two
  telegrams that differ in what they say never share one, even when their Head
  does (two 噴火速報 of one minute with an empty Serial): a collision would drop
  the second as "already stored". A copy re-encoded on the way (other line
  endings) gets another identifier; folding one issuance into one message is
  the pipeline's job, not the identifier's.
* Completeness: a Report must carry every Control and Head element the jmx
  schemas require (Control: Title, DateTime, Status, EditorialOffice,
  PublishingOffice; Head: Title, ReportDateTime, TargetDateTime, EventID,
  InfoType, Serial, InfoKind, InfoKindVersion, Headline), with a non-empty
  Control/Title, Status, EditorialOffice, Head/Title and InfoType and valid
  Control/DateTime and Head/ReportDateTime; EventID, Serial and TargetDateTime
  may be empty (they are in 107, 178 and 0 of the 424 real telegrams of
  ``shared/data/jma``, and every one of those has all the elements). A
  telegram without them is ``Failed`` (stored and reported, never sent), with
  the missing elements named.
* Text limits (characters; the largest real values in ``shared/data/jma`` are
  36 for a title, 33 for an area name, 3,015 for a Body text):
  identity fields (Control/Title, Status, EditorialOffice, Head/Title,
  InfoType, EventID, Serial) over ``MAX_IDENTITY_CHARS`` (200) make the
  telegram ``Failed``; free text is cut, ending in "…": the headline at
  ``MAX_HEADLINE_CHARS`` (4,000), description and instruction at
  ``MAX_TEXT_CHARS`` (20,000), the event at ``MAX_IDENTITY_CHARS``, an area's
  name at ``MAX_AREA_NAME_CHARS`` (200) and each of its details at
  ``MAX_DETAIL_CHARS`` (4,000).
* ``details["level"]`` (int) is the highest 警戒レベル of the alert's areas, and
  each such Area has ``details["level"]`` ("1"–"5"): from R06 Kind names, the
  levels VPWW53/54 give only in Body/Notice (〈レベル４大雨危険警報〉姫路市　…),
  VXKO flood kinds, 土砂災害警戒情報 = 4, 特別警報 = 5 (rules in
  :mod:`sources.jma.severity`); priority follows it.
* ``details["push"] is False`` marks telegrams stored and shown on the site but
  not pushed to residents by default (台風解析・予報情報 VPTW60–65); the pipeline
  honours it.
* ``series_key``: ``Control/Title|EditorialOffice|Status`` plus ``|EventID``
  when there is one (DESIGN.md §5). The newest ``sent`` of a series wins.
* ``references``: for 訂正 (UPDATE) and 取消 (CANCEL) the telegram does not
  name the identifier it replaces, so ``references == (series_key,)`` and the
  dispatcher resolves it to the latest alert of that series.
* ``areas``: each Area carries its JMA code(s) and ``details["code_type"]``
  (the telegram's codeType: 市町村等, 津波予報区, 地震情報／細分区域 …); 3-digit
  codes are ambiguous between code types, so resolve them with
  ``AreaCodes.resolve_areas``. Warnings list only municipalities where a
  warning is in force or was just lifted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import chain
from operator import attrgetter, methodcaller
from typing import Any

from lxml import etree

from dispatcher.model import Alert, Area, MsgType, Status
from sources.safexml import DEFAULT_MAX_BYTES, MalformedXmlError, UnsafeXmlError, parse_xml

from .codes import (
    CITY_CODE_TYPE,
    COAST_CODE_TYPE,
    EEW_AREA_CODE_TYPE,
    FORECAST_CODE_TYPE,
    SEISMIC_AREA_CODE_TYPE,
    TSUNAMI_CODE_TYPE,
    AreaCodes,
)
from .severity import (
    DEFAULT,
    LIFTED,
    Rating,
    kind_level,
    more_severe,
    most_severe,
    rate,
    rate_intensity,
    with_level,
)

__all__ = [
    "MAX_AREA_NAME_CHARS",
    "MAX_DETAIL_CHARS",
    "MAX_HEADLINE_CHARS",
    "MAX_IDENTITY_CHARS",
    "MAX_TEXT_CHARS",
    "Failed",
    "ParseOutcome",
    "Parsed",
    "Unsupported",
    "kind_from_name",
    "parse_telegram",
]

JST = timezone(timedelta(hours=9))
SOURCE = "jma"

# Limits well above anything real (see the module docstring).
MAX_IDENTITY_CHARS = 200
MAX_HEADLINE_CHARS = 4_000
MAX_TEXT_CHARS = 20_000
MAX_AREA_NAME_CHARS = 200
MAX_DETAIL_CHARS = 4_000

# Elements the jmx schemas require (minOccurs=1), and those that must also hold text.
_REQUIRED_CONTROL = ("Title", "DateTime", "Status", "EditorialOffice", "PublishingOffice")
_REQUIRED_HEAD = (
    "Title",
    "ReportDateTime",
    "TargetDateTime",
    "EventID",
    "InfoType",
    "Serial",
    "InfoKind",
    "InfoKindVersion",
    "Headline",
)
_REQUIRED_CONTROL_SET = frozenset(_REQUIRED_CONTROL)
_REQUIRED_HEAD_SET = frozenset(_REQUIRED_HEAD)
_NON_EMPTY_CONTROL = ("Title", "Status", "EditorialOffice")
_NON_EMPTY_HEAD = ("Title", "InfoType")
_IDENTITY_CONTROL = ("Title", "Status", "EditorialOffice")
_IDENTITY_HEAD = ("Title", "InfoType", "EventID", "Serial")
_BODY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Body[\s/>]")
_DESCRIPTION = attrgetter("description")
_DETAILS = attrgetter("details")
_VALUES = methodcaller("values")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A telegram normalised to an Alert."""

    alert: Alert


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A well-formed telegram of a family we do not normalise (yet)."""

    kind: str
    title: str
    reason: str
    series_key: str | None = None
    head_title: str = ""
    sent: datetime | None = None
    status: Status | None = None
    msg_type: MsgType | None = None
    # What the severity table makes of the title, so that an unknown but
    # alarming new type (2026's 危険警報) can be reported loudly.
    rating: Rating = DEFAULT


@dataclass(frozen=True, slots=True)
class Failed:
    """The input could not be read as a JMA telegram (unsafe, malformed, not a Report)."""

    error: str


ParseOutcome = Parsed | Unsupported | Failed

_STATUS = {"通常": Status.ACTUAL, "訓練": Status.EXERCISE, "試験": Status.TEST}
_MSG_TYPE = {
    "発表": MsgType.ALERT,
    "訂正": MsgType.UPDATE,
    "遅延": MsgType.UPDATE,
    "取消": MsgType.CANCEL,
}

# Data-type codes by Control/Title, for telegrams whose file name does not carry one.
_TITLE_KIND = {
    "気象特別警報・警報・注意報": "VPWW53",
    "気象警報・注意報（Ｈ２７）": "VPWW54",
    "気象警報・注意報": "VPWW50",
    "気象警報・注意報（Ｒ０６）（大雨）": "VPWW55",
    "気象警報・注意報（Ｒ０６）（土砂災害）": "VPWW56",
    "気象警報・注意報（Ｒ０６）（土砂）": "VPWW56",
    "気象警報・注意報（Ｒ０６）（高潮）": "VPWW57",
    "気象警報・注意報（Ｒ０６）（暴風）": "VPWW58",
    "気象警報・注意報（Ｒ０６）（波浪）": "VPWW59",
    "気象警報・注意報（Ｒ０６）（大雪）": "VPWW60",
    "気象警報・注意報（Ｒ０６）（その他注意報）": "VPWW61",
    "震度速報": "VXSE51",
    "震源に関する情報": "VXSE52",
    "震源・震度に関する情報": "VXSE53",
    "緊急地震速報配信テスト": "VXSE42",
    "緊急地震速報（警報）": "VXSE43",
    "緊急地震速報（予報）": "VXSE44",
    "地震の活動状況等に関する情報": "VXSE56",
    "地震回数に関する情報": "VXSE60",
    "顕著な地震の震源要素更新のお知らせ": "VXSE61",
    "津波警報・注意報・予報a": "VTSE41",
    "津波情報a": "VTSE51",
    "沖合の津波観測に関する情報": "VTSE52",
    "土砂災害警戒情報": "VXWW50",
    "指定河川洪水予報": "VXKO",
    "記録的短時間大雨情報": "VPOA50",
    "竜巻注意情報": "VPHW50",
    "竜巻注意情報（目撃情報付き）": "VPHW51",
    "噴火警報・予報": "VFVO50",
    "噴火速報": "VFVO56",
    "気象特別警報報知": "VPNO50",
    "府県気象防災速報": "VPBS50",
    "台風解析・予報情報（５日予報）（Ｈ３０）": "VPTW60",
    "南海トラフ地震臨時情報": "VYSE50",
    "南海トラフ地震関連解説情報": "VYSE51",
    "北海道・三陸沖後発地震注意情報": "VYSE60",
}

_KIND_IN_NAME = re.compile(r"(?:^|[_/])(V[A-Z]{3}(?:\d\d|ii|[A-Za-z0-9]{2}))(?=[_.]|$)")
_COORD = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?/")
_WS = re.compile(r"[\s\u3000]+")
_PARENS = re.compile(r"（[^）]*）")
_REGION_PREFIX = re.compile(r"^.{1,12}?(?:都|道|府|県|地方)(?=気象|竜巻|土砂|記録|大雨|レベル)")

# Warning statuses meaning "nothing in force here" (VPWW, VXWW, VPOA, VPHW).
_NOT_IN_FORCE = frozenset({"", "解除", "なし", "発表警報・注意報はなし", "発表なし"})

# Code types whose codes AreaCodes knows; the rest (rivers, volcanoes) are not checked.
_RESOLVABLE = frozenset(
    {CITY_CODE_TYPE, TSUNAMI_CODE_TYPE, COAST_CODE_TYPE, FORECAST_CODE_TYPE, SEISMIC_AREA_CODE_TYPE, EEW_AREA_CODE_TYPE}
)

_TSUNAMI_ORDER = ("大津波警報", "津波警報", "津波注意報", "津波予報")


def kind_from_name(name: str | None) -> str:
    """JMA data-type code (``VPWW54``) in a feed URL or file name, or ``""``."""
    if not name:
        return ""
    match = _KIND_IN_NAME.search(name.rsplit("/", 1)[-1])
    return match.group(1) if match else ""


@lru_cache(maxsize=512)
def _steps(path: str) -> tuple[str, ...]:
    # "{*}Name" matches Name in any namespace (or none) inside libxml2, so the
    # children that do not match never become Python objects.
    return tuple("{*}" + step for step in path.split("/"))


_LOCAL_NAMES: dict[str, str] = {}
_SEISMIC_LISTS = frozenset({"City", "IntensityStation"})
_ELEMENTS_ONLY = etree.Element  # iterchildren(tag=etree.Element): no comments or PIs


def _local_name(tag: str) -> str:
    # Tags repeat endlessly across telegrams; the cache saves a split per child.
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(_LOCAL_NAMES) < 4096:  # bounded: hostile input cannot grow it forever
            _LOCAL_NAMES[tag] = name
    return name


def _children(el: Any, name: str) -> list[Any]:
    """Direct child elements with local name ``name`` (``*``: all), any namespace."""
    if name == "*":
        return list(el.iterchildren(_ELEMENTS_ONLY))
    return list(el.iterchildren(_steps(name)[0]))


def _first(el: Any, name: str) -> Any:
    return next(el.iterchildren(_steps(name)[0]), None)


def _fields(el: Any, stop: frozenset[str] = frozenset()) -> dict[str, str]:
    """Local name -> stripped text of the direct children (first of each), in one pass.

    Elements read several children each; one pass is several times cheaper than
    a lookup each. Iteration ends at the first child named in ``stop`` (the long
    lists that follow the scalar fields, such as IntensityStation).
    """
    out: dict[str, str] = {}
    names = _LOCAL_NAMES
    for child in el.iterchildren(_ELEMENTS_ONLY):
        tag = child.tag
        name = names.get(tag) or _local_name(tag)
        if name in stop:
            break
        if name not in out:
            text = child.text
            out[name] = text.strip() if text else ""
    return out


def _wanted(el: Any, wanted: frozenset[str]) -> dict[str, str]:
    """Like ``_fields`` for the children named in ``wanted`` only; stops once it has them all.

    A warning Kind carries its Name and Status first and then long Property lists.
    """
    out: dict[str, str] = {}
    names = _LOCAL_NAMES
    for child in el.iterchildren(_ELEMENTS_ONLY):
        tag = child.tag
        name = names.get(tag) or _local_name(tag)
        if name in wanted and name not in out:
            text = child.text
            out[name] = text.strip() if text else ""
            if len(out) == len(wanted):
                break
    return out


def _find(el: Any, path: str) -> Any:
    for step in _steps(path):
        if el is None:
            return None
        el = next(el.iterchildren(step), None)
    return el


def _text(el: Any, path: str) -> str:
    el = _find(el, path)
    if el is None:
        return ""
    value = el.text
    return value.strip() if value else ""


def _findall(el: Any, path: str) -> list[Any]:
    if el is None:
        return []
    steps = _steps(path)
    nodes = list(el.iterchildren(steps[0]))
    for step in steps[1:]:
        nodes = [child for node in nodes for child in node.iterchildren(step)]
    return nodes


def _kids(el: Any) -> dict[str, Any]:
    """Local name -> first direct child element of that name, in one pass."""
    out: dict[str, Any] = {}
    names = _LOCAL_NAMES
    for child in el.iterchildren(_ELEMENTS_ONLY):
        tag = child.tag
        name = names.get(tag) or _local_name(tag)
        if name not in out:
            out[name] = child
    return out


def _own_text(el: Any) -> str:
    if el is None:
        return ""
    value = el.text
    return value.strip() if value else ""


def _attr(el: Any, key: str) -> str:
    value = el.get(key) if el is not None else None
    return value.strip() if value else ""


def _codes(code: str) -> tuple[str, ...]:
    return (code,) if code else ()


def _local(el: Any) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _dt(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # JMA always gives an offset; a bare time is JST by convention.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=JST)


def _join(parts: Iterable[str], sep: str = "\n\n") -> str:
    seen: dict[str, None] = {}
    for part in parts:
        if part and part not in seen:
            seen[part] = None
    return sep.join(seen)


def _coordinate(el: Any, *, seismic: bool = True) -> dict[str, Any]:
    """Decode a jmx_eb:Coordinate (ISO 6709) into latitude, longitude and depth."""
    if el is None:
        return {}
    out: dict[str, Any] = {}
    description = (el.get("description") or "").strip()
    if description:
        out["coordinate_description"] = description
    match = _COORD.match((el.text or "").strip())
    if not match:
        return out
    lat, lon = float(match.group(1)), float(match.group(2))
    if abs(lat) > 90 or abs(lon) > 180:
        # Volcano coordinates are ±DDMM.MM+DDDMM.MM.
        lat = (abs(lat) // 100 + (abs(lat) % 100) / 60) * (1 if lat >= 0 else -1)
        lon = (abs(lon) // 100 + (abs(lon) % 100) / 60) * (1 if lon >= 0 else -1)
    out["latitude"], out["longitude"] = round(lat, 4), round(lon, 4)
    if match.group(3) is not None:
        height = float(match.group(3))
        if seismic:
            # Depth is a negative height in metres; "+0" means ごく浅い.
            out["depth_km"] = round(-height / 1000, 1) if height < 0 else 0.0
        else:
            out["height_m"] = height
    return out


@dataclass(slots=True)
class _Ctx:
    """What every family handler needs from Control and Head."""

    root: Any
    head: Any
    body: Any
    control_title: str
    head_title: str
    office: str
    status: Status
    msg_type: MsgType
    info_type: str
    event_id: str
    serial: str
    sent: datetime
    kind: str
    series_key: str
    identifier: str
    headline: str
    valid: datetime | None
    codes: AreaCodes | None
    data: bytes
    url: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Result:
    event: str
    rating: Rating
    areas: list[Area]
    details: dict[str, Any]
    texts: list[str]
    instruction: str = ""
    # The highest 警戒レベル of the areas (their details["level"]), when any has one.
    level: int | None = None
    # The handler applied the area text limits itself (the seismic hot loop).
    capped: bool = False


def parse_telegram(
    data: bytes,
    *,
    url: str | None = None,
    codes: AreaCodes | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ParseOutcome:
    """Parse one telegram. Never raises for bad input (see the module docstring)."""
    try:
        root = parse_xml(data, max_bytes=max_bytes)
    except (UnsafeXmlError, MalformedXmlError) as exc:
        return Failed(f"{type(exc).__name__}: {exc}")
    try:
        return _parse_root(root, bytes(data), url, codes)
    except Exception as exc:  # a bug or an unforeseen shape must not stop the poller
        return Failed(f"cannot interpret telegram: {type(exc).__name__}: {exc}")


def _parse_root(root: Any, data: bytes, url: str | None, codes: AreaCodes | None) -> ParseOutcome:
    if _local(root) != "Report":
        title = _text(root, "title")
        return Unsupported(
            kind=_local(root) or "?",
            title=title,
            reason=f"not a JMA Report telegram (root element <{_local(root)}>)",
        )
    parts = _kids(root)
    control = parts.get("Control")
    head = parts.get("Head")
    if control is None or head is None:
        return Failed("Report lacks Control or Head")
    cf = _fields(control)
    hf = _fields(head)
    problem = _incomplete(cf, hf)
    if problem:
        return Failed(f"malformed telegram {cf.get('Title', '')[:MAX_IDENTITY_CHARS]!r}: {problem}")
    control_title = cf["Title"]
    office = cf["EditorialOffice"]
    status_text = cf["Status"]
    # An unknown status is fenced like a test: never let it reach the public.
    status = _STATUS.get(status_text, Status.TEST)
    info_type = hf["InfoType"]
    msg_type = _MSG_TYPE.get(info_type, MsgType.ALERT)
    event_id = hf["EventID"]
    serial = hf["Serial"]
    head_title = hf["Title"]
    report_dt = hf["ReportDateTime"]
    sent = _dt(report_dt)
    assert sent is not None  # _incomplete checked it
    kind = kind_from_name(url) or _TITLE_KIND.get(control_title, "")
    series_key = "|".join((control_title, office, status_text))
    if event_id:
        series_key += "|" + event_id

    handler = _handler_for(control_title)
    if handler is None:
        rating = with_level(rate(head_title or control_title), kind_level(head_title or control_title))
        return Unsupported(
            kind=kind,
            title=control_title,
            reason="telegram family not normalised",
            series_key=series_key,
            head_title=head_title,
            sent=sent,
            status=status,
            msg_type=msg_type,
            rating=rating,
        )
    headline = _text(head, "Headline/Text")
    # After the family check: an Unsupported telegram has no identifier to mint.
    identifier = _identifier(
        data, (control_title, office, status_text, head_title, report_dt, info_type, serial, event_id, headline)
    )
    ctx = _Ctx(
        root=root,
        head=head,
        body=parts.get("Body"),
        control_title=control_title,
        head_title=head_title,
        office=office,
        status=status,
        msg_type=msg_type,
        info_type=info_type,
        event_id=event_id,
        serial=serial,
        sent=sent,
        kind=kind,
        series_key=series_key,
        identifier=identifier,
        headline=headline,
        valid=_dt(hf.get("ValidDateTime", "")),
        codes=codes,
        data=data,
        url=url,
    )
    result = handler(ctx)
    return Parsed(_alert(ctx, result))


def _incomplete(cf: dict[str, str], hf: dict[str, str]) -> str:
    """What makes Control/Head fields ``cf``/``hf`` not a whole telegram, or ``""``."""
    if (
        cf.keys() >= _REQUIRED_CONTROL_SET
        and hf.keys() >= _REQUIRED_HEAD_SET
        and all(map(cf.__getitem__, _NON_EMPTY_CONTROL))
        and all(map(hf.__getitem__, _NON_EMPTY_HEAD))
        and max(map(len, map(cf.__getitem__, _IDENTITY_CONTROL))) <= MAX_IDENTITY_CHARS
        and max(map(len, map(hf.__getitem__, _IDENTITY_HEAD))) <= MAX_IDENTITY_CHARS
        and _dt(cf["DateTime"]) is not None
        and _dt(hf["ReportDateTime"]) is not None
    ):
        return ""  # the usual case, in one pass; the detailed report below names what is wrong
    missing = [f"Control/{n}" for n in _REQUIRED_CONTROL if n not in cf]
    missing += [f"Head/{n}" for n in _REQUIRED_HEAD if n not in hf]
    empty = [f"Control/{n}" for n in _NON_EMPTY_CONTROL if n in cf and not cf[n]]
    empty += [f"Head/{n}" for n in _NON_EMPTY_HEAD if n in hf and not hf[n]]
    invalid = [
        f"{part}/{n}"
        for part, fields, n in (("Control", cf, "DateTime"), ("Head", hf, "ReportDateTime"))
        if n in fields and _dt(fields[n]) is None
    ]
    too_long = [f"Control/{n}" for n in _IDENTITY_CONTROL if len(cf.get(n, "")) > MAX_IDENTITY_CHARS]
    too_long += [f"Head/{n}" for n in _IDENTITY_HEAD if len(hf.get(n, "")) > MAX_IDENTITY_CHARS]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if empty:
        problems.append("empty " + ", ".join(empty))
    if invalid:
        problems.append("no valid date-time in " + ", ".join(invalid))
    if too_long:
        problems.append(f"longer than {MAX_IDENTITY_CHARS} characters: " + ", ".join(too_long))
    return "; ".join(problems)


def _identifier(data: bytes, fields: tuple[str, ...]) -> str:
    """``jma-`` + 32 hex digits over the Head fields and the Body's bytes (module docstring)."""
    # JMA writes <Body xmlns=…> unprefixed; the pattern is the fallback for a prefixed one.
    start = data.find(b"<Body")
    if start < 0 or data[start + 5 : start + 6] not in (b" ", b">", b"/", b"\n", b"\t", b"\r"):
        match = _BODY_START.search(data)
        start = match.start() if match else len(data)
    body = hashlib.sha256(memoryview(data)[start:]).hexdigest()
    src = "\x1f".join((*fields, body))
    return "jma-" + hashlib.sha256(src.encode("utf-8")).hexdigest()[:32]


def _alert(ctx: _Ctx, res: _Result) -> Alert:
    details = {
        "control_title": ctx.control_title,
        "head_title": ctx.head_title,
        "info_type": ctx.info_type,
        "event_id": ctx.event_id,
        "serial": ctx.serial,
        **res.details,
    }
    rating = res.rating
    if res.level is not None:
        details["level"] = res.level
        rating = with_level(rating, res.level)
    if ctx.msg_type is MsgType.CANCEL:
        # A withdrawal must reach the same people as fast as what it withdraws,
        # but it is not itself a danger.
        rating = Rating(LIFTED.severity, LIFTED.urgency, LIFTED.certainty, res.rating.priority)
    comments = _comments(ctx.body)
    if ctx.codes is not None:
        by_type: dict[str, list[str]] = {}
        for area in res.areas:
            code_type = area.details.get("code_type", "")
            if code_type in _RESOLVABLE:
                by_type.setdefault(code_type, []).extend(area.codes)
        unknown = [u for t, c in by_type.items() for u in ctx.codes.unknown(c, t)]
        details["area_codes_version"] = ctx.codes.version
        if unknown:
            details["unknown_area_codes"] = list(unknown)
    return Alert(
        identifier=ctx.identifier,
        sender=ctx.office,
        sent=ctx.sent,
        status=ctx.status,
        msg_type=ctx.msg_type,
        event=_cap(res.event or ctx.head_title or ctx.control_title, MAX_IDENTITY_CHARS),
        severity=rating.severity,
        urgency=rating.urgency,
        certainty=rating.certainty,
        priority=rating.priority,
        headline=_cap(ctx.headline or ctx.head_title, MAX_HEADLINE_CHARS),
        source=SOURCE,
        references=(ctx.series_key,) if ctx.msg_type in (MsgType.UPDATE, MsgType.CANCEL) else (),
        description=_cap(_join([ctx.headline, *res.texts, *comments]), MAX_TEXT_CHARS),
        instruction=_cap(res.instruction, MAX_TEXT_CHARS),
        areas=tuple(res.areas) if res.capped else _capped_areas(res.areas),
        expires=ctx.valid,
        series_key=ctx.series_key,
        kind=ctx.kind,
        details=details,
        original=ctx.data,
        original_url=ctx.url,
    )


def _cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _capped_areas(areas: list[Area]) -> tuple[Area, ...]:
    """The areas with over-long names and detail values cut (rebuilt only when needed)."""
    # One C-level pass over every name and value first: a VXSE53 has ~1,300 areas.
    longest_name = max(map(len, map(_DESCRIPTION, areas)), default=0)
    longest_detail = max(map(len, chain.from_iterable(map(_VALUES, map(_DETAILS, areas)))), default=0)
    if longest_name <= MAX_AREA_NAME_CHARS and longest_detail <= MAX_DETAIL_CHARS:
        return tuple(areas)
    out = []
    for area in areas:
        details = area.details
        if len(area.description) > MAX_AREA_NAME_CHARS or max(map(len, details.values()), default=0) > MAX_DETAIL_CHARS:
            area = Area(
                _cap(area.description, MAX_AREA_NAME_CHARS),
                area.codes,
                area.polygons,
                area.circles,
                {k: _cap(v, MAX_DETAIL_CHARS) for k, v in details.items()},
            )
        out.append(area)
    return tuple(out)


def _max_level(areas: Iterable[Area]) -> int | None:
    """The highest ``details["level"]`` among ``areas``, None when none has one."""
    levels = [int(a.details["level"]) for a in areas if "level" in a.details]
    return max(levels) if levels else None


def _comments(body: Any) -> list[str]:
    out: list[str] = []
    for comments in _findall(body, "Comments"):
        for child in comments:
            name = _local(child)
            if name in ("WarningComment", "ForecastComment", "VarComment", "ObservationComment"):
                out.append(_text(child, "Text"))
            elif name == "FreeFormComment":
                out.append((child.text or "").strip())
    return [t for t in out if t]


# ---------------------------------------------------------------- families


def _handler_for(control_title: str) -> Any:
    if control_title.startswith(("気象特別警報・警報・注意報", "気象警報・注意報")):
        return _weather_warnings
    if control_title in ("震度速報", "震源に関する情報", "震源・震度に関する情報"):
        return _seismic
    if control_title == "顕著な地震の震源要素更新のお知らせ":
        return _seismic
    if control_title in ("緊急地震速報（警報）", "緊急地震速報（予報）"):
        return _eew
    if control_title in ("津波警報・注意報・予報a", "津波情報a", "沖合の津波観測に関する情報"):
        return _tsunami
    if control_title in (
        "土砂災害警戒情報",
        "記録的短時間大雨情報",
        "竜巻注意情報",
        "竜巻注意情報（目撃情報付き）",
    ):
        return _warning_items
    if control_title == "指定河川洪水予報":
        return _flood
    if control_title in ("噴火警報・予報", "噴火速報"):
        return _volcano
    if control_title == "気象特別警報報知":
        return _special_warning_notice
    if control_title == "府県気象防災速報":
        return _weather_bulletin
    if control_title.startswith("台風解析・予報情報") and control_title.endswith("（Ｈ３０）"):
        # VPTW60–65 (the 2018 format JMA sends today); the retired VPTW40/41/50/51
        # formats stay Unsupported (stored and reported).
        return _typhoon
    if control_title in (
        "南海トラフ地震臨時情報",
        "南海トラフ地震関連解説情報",
        "北海道・三陸沖後発地震注意情報",
    ):
        return _earthquake_info
    return None


_KIND_TAG = "{*}Kind"


def _kinds(item: Any) -> list[tuple[str, str]]:
    """(Name, Status) of each Kind child of a warning Item, stopping inside a Kind once both are read.

    The hot loop of the warning families: an R06 Kind carries Name, Code, Status
    and then long Property lists.
    """
    out: list[tuple[str, str]] = []
    names = _LOCAL_NAMES
    for kind in item.iterchildren(_KIND_TAG):
        name = status = None
        for child in kind.iterchildren(_ELEMENTS_ONLY):
            tag = child.tag
            local = names.get(tag) or _local_name(tag)
            if local == "Name":
                if name is None:
                    name = child.text or ""
                    if status is not None:
                        break
            elif local == "Status" and status is None:
                status = child.text or ""
                if name is not None:
                    break
        out.append((name.strip() if name else "", status.strip() if status else ""))
    return out


def _name_code(area: Any) -> tuple[str, str]:
    """Name and Code of an Area element: by position in the usual <Name/><Code/> shape, else by name."""
    kids = area[:2]
    if len(kids) == 2:
        first, second = kids
        t1, t2 = first.tag, second.tag
        if isinstance(t1, str) and isinstance(t2, str) and t1.endswith("}Name") and t2.endswith("}Code"):
            n, c = first.text, second.text
            return (n.strip() if n else ""), (c.strip() if c else "")
    af = _fields(area)
    return af.get("Name", ""), af.get("Code", "")


def _item_areas(item: Any) -> list[Any]:
    return _findall(item, "Area") + _findall(item, "Areas/Area")


def _code_type(el: Any, default: str) -> str:
    parent = el.getparent()
    if parent is not None and _local(parent) == "Areas" and parent.get("codeType"):
        return str(parent.get("codeType"))
    return default


def _weather_warnings(ctx: _Ctx) -> _Result:
    """気象特別警報・警報・注意報 (VPWW53/54, R06 VPWW55–61, legacy VPWW50).

    Each area's 警戒レベル is the highest its in-force kinds give or imply; the
    older copies (VPWW53/54) name only the hazard (大雨警報) and carry the R06
    kind only in Body/Notice, which adds that kind to the areas it names.
    """
    warnings = _findall(ctx.body, "Warning")
    chosen = [w for w in warnings if (w.get("type") or "").endswith("（市町村等）")] or warnings
    noticed = _notice_kinds(ctx.body)
    areas: list[Area] = []
    in_force_all: dict[str, None] = {}
    lifted_all: dict[str, None] = {}
    for warning in chosen:
        wtype = warning.get("type") or ""
        for item in _findall(warning, "Item"):
            in_force: list[str] = []
            lifted: list[str] = []
            for name, status in _kinds(item):
                if not name:
                    continue
                if status == "解除":
                    lifted.append(name)
                elif status not in _NOT_IN_FORCE:
                    in_force.append(name)
            if not in_force and not lifted:
                continue
            for name in lifted:
                lifted_all.setdefault(name, None)
            change = _text(item, "ChangeStatus")
            for kind in in_force:
                in_force_all.setdefault(kind, None)
            item_level = _level_of(in_force)
            item_warnings = ",".join(in_force)
            for area in _item_areas(item):
                name, code = _name_code(area)
                area_warnings, level = item_warnings, item_level
                extra = noticed.get(name) if noticed and in_force else None
                if extra:
                    kinds = [*in_force, *(k for k in extra if k not in in_force)]
                    for kind in kinds:
                        in_force_all.setdefault(kind, None)
                    area_warnings, level = ",".join(kinds), _level_of(kinds)
                d = {
                    "code_type": CITY_CODE_TYPE if wtype.endswith("（市町村等）") else FORECAST_CODE_TYPE,
                    "warnings": area_warnings,
                }
                if level is not None:
                    d["level"] = str(level)
                if lifted:
                    d["lifted"] = ",".join(lifted)
                if change:
                    d["change"] = change
                areas.append(Area(name, _codes(code), details=d))
    best = most_severe(in_force_all)
    if best is not None:
        event, rating = best
    elif lifted_all:
        event, rating = "警報・注意報解除", LIFTED
    else:
        event, rating = "警報・注意報なし", LIFTED
    details: dict[str, Any] = {
        "warnings_in_force": list(in_force_all),
        "warnings_lifted": list(lifted_all),
        "target_area": _text(ctx.body, "TargetArea/Name"),
    }
    return _Result(event, rating, areas, details, [], level=_max_level(areas))


def _level_of(kinds: Iterable[str]) -> int | None:
    """The highest 警戒レベル the kinds give or imply, None when none has one."""
    best = None
    for level in map(kind_level, kinds):
        if level is not None and (best is None or level > best):
            best = level
    return best


# 〈レベル４大雨危険警報〉姫路市　たつの市　多可町＊ in Body/Notice of VPWW53/54 (2026).
_NOTICE_ITEM = re.compile(r"〈([^〉]+)〉([^〈［]*)")
_NOTICE_NAME_SPLIT = re.compile(r"[\s\u3000、，,]+")


def _notice_kinds(body: Any) -> dict[str, list[str]]:
    """Area name → the warning kinds Body/Notice names for it (only kinds that carry a level)."""
    out: dict[str, list[str]] = {}
    for notice in _findall(body, "Notice"):
        text = _own_text(notice)
        if "〈" not in text:
            continue
        for match in _NOTICE_ITEM.finditer(text):
            kind = match.group(1).strip()
            if kind_level(kind) is None:
                continue
            for name in _NOTICE_NAME_SPLIT.split(match.group(2)):
                # A trailing ＊ marks a town newly under the kind; the town is the same.
                name = name.strip().rstrip("＊*")
                if name and name != "なし":
                    out.setdefault(name, []).append(kind)
    return out


def _earthquake(body: Any) -> dict[str, Any]:
    eq = _find(body, "Earthquake")
    if eq is None:
        return {}
    k = _kids(eq)
    hypocenter = k.get("Hypocenter")
    area = _first(hypocenter, "Area") if hypocenter is not None else None
    af = _fields(area) if area is not None else {}
    magnitude = k.get("Magnitude")
    out: dict[str, Any] = {
        "origin_time": _own_text(k.get("OriginTime")),
        "hypocenter": af.get("Name", ""),
        "hypocenter_code": af.get("Code", ""),
        "hypocenter_detail": af.get("NameFromMark", ""),
        "magnitude": _own_text(magnitude),
        "magnitude_description": _attr(magnitude, "description"),
    }
    out.update(_coordinate(_first(area, "Coordinate") if area is not None else None))
    return {k: v for k, v in out.items() if v not in ("", None)}


def _seismic(ctx: _Ctx) -> _Result:
    """震度速報 VXSE51, 震源に関する情報 VXSE52, 震源・震度に関する情報 VXSE53 (and VXSE61)."""
    details = _earthquake(ctx.body)
    observation = _find(ctx.body, "Intensity/Observation")
    max_int = _text(observation, "MaxInt")
    areas: list[Area] = []
    if observation is not None:
        _intensity_areas(observation, areas)
    if max_int:
        details["max_intensity"] = max_int
    if ctx.control_title == "震源に関する情報" or not max_int:
        rating = rate(ctx.control_title)
        if ctx.head_title == "遠地地震に関する情報":
            rating = rate(ctx.head_title)
    else:
        rating = rate_intensity(max_int)
    event = ctx.head_title or ctx.control_title
    texts = [_text(ctx.body, "Text")]
    return _Result(event, rating, areas, details, texts, capped=True)


_SCALARS = ("Name", "Code", "MaxInt", "Condition")


def _intensity_scalars(el: Any, tags: tuple[str, ...]) -> tuple[str, str, str, str]:
    """Name, Code, MaxInt and Condition of a seismic Area or City (first of each).

    The hot loop of a VXSE53 (~1,300 municipalities, each followed by its
    IntensityStation list): compare Clark tags instead of building a dict of
    local names, and stop at the first City or IntensityStation child. ``tags``
    are the four names plus City and IntensityStation in the document's own
    namespace; a child in another namespace falls back to its local name.
    """
    name_tag, code_tag, max_tag, cond_tag, city_tag, station_tag = tags
    name = code = max_int = condition = None
    for child in el:  # comments and PIs are removed at parse time; guarded below anyway
        tag = child.tag
        if tag == name_tag:
            if name is None:
                name = child.text or ""
        elif tag == code_tag:
            if code is None:
                code = child.text or ""
        elif tag == max_tag:
            if max_int is None:
                max_int = child.text or ""
        elif tag in (station_tag, city_tag):
            break
        elif tag == cond_tag:
            if condition is None:
                condition = child.text or ""
        elif isinstance(tag, str):
            local = _LOCAL_NAMES.get(tag) or _local_name(tag)
            if local in _SEISMIC_LISTS:
                break
            if local in _SCALARS:  # same name, another namespace
                text = child.text or ""
                if local == "Name" and name is None:
                    name = text
                elif local == "Code" and code is None:
                    code = text
                elif local == "MaxInt" and max_int is None:
                    max_int = text
                elif local == "Condition" and condition is None:
                    condition = text
    return (
        name.strip() if name else "",
        code.strip() if code else "",
        max_int.strip() if max_int else "",
        condition.strip() if condition else "",
    )


def _intensity_areas(observation: Any, areas: list[Area]) -> None:
    """Intensity/Observation → one Area per City, or per seismic Area without cities.

    The text limits are applied here, as each value is read (module docstring): a
    VXSE53 has ~1,300 areas, too many to scan again afterwards.
    """
    tag = observation.tag
    ns = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
    tags = tuple(ns + local for local in (*_SCALARS, "City", "IntensityStation"))
    name_tag, code_tag, max_tag, _, _, station_tag = tags
    any_city, any_area, any_pref = _steps("City/Area/Pref")
    for pref in observation.iterchildren(any_pref):
        pref_name = _cap(_text(pref, "Name"), MAX_DETAIL_CHARS)
        for area in pref.iterchildren(any_area):
            area_name, area_code, area_int, area_cond = _intensity_scalars(area, tags)
            area_name = _cap(area_name, MAX_AREA_NAME_CHARS)
            area_int, area_cond = _cap(area_int, MAX_DETAIL_CHARS), _cap(area_cond, MAX_DETAIL_CHARS)
            area_detail = _cap(area_name, MAX_DETAIL_CHARS)
            has_city = False
            for city in area.iterchildren(any_city):
                has_city = True
                # The usual shape, Name Code MaxInt IntensityStation…, read by position;
                # anything else (Condition, Revise, no stations) takes the general loop.
                kids = city[:4]
                if (
                    len(kids) == 4
                    and kids[0].tag == name_tag
                    and kids[1].tag == code_tag
                    and kids[2].tag == max_tag
                    and kids[3].tag == station_tag
                ):
                    name, code, max_int = kids[0].text, kids[1].text, kids[2].text
                    name = name.strip() if name else ""
                    code = code.strip() if code else ""
                    max_int = max_int.strip() if max_int else ""
                    condition = ""
                else:
                    name, code, max_int, condition = _intensity_scalars(city, tags)
                    condition = _cap(condition, MAX_DETAIL_CHARS)
                if len(name) > MAX_AREA_NAME_CHARS or len(max_int) > MAX_DETAIL_CHARS:
                    name, max_int = _cap(name, MAX_AREA_NAME_CHARS), _cap(max_int, MAX_DETAIL_CHARS)
                d = {"code_type": CITY_CODE_TYPE, "intensity": max_int, "pref": pref_name}
                if condition:  # e.g. 震度５弱以上未入電
                    d["condition"] = condition
                d["area"] = area_detail
                areas.append(Area(name, (code,) if code else (), details=d))
            if not has_city:
                d = {"code_type": SEISMIC_AREA_CODE_TYPE, "intensity": area_int, "pref": pref_name}
                if area_cond:
                    d["condition"] = area_cond
                areas.append(Area(area_name, (area_code,) if area_code else (), details=d))


def _eew(ctx: _Ctx) -> _Result:
    """緊急地震速報（警報） VXSE43 and （予報） VXSE44."""
    details = _earthquake(ctx.body)
    forecast = _find(ctx.body, "Intensity/Forecast")
    if forecast is not None:
        details["forecast_max_intensity_from"] = _text(forecast, "ForecastInt/From")
        details["forecast_max_intensity_to"] = _text(forecast, "ForecastInt/To")
    areas: list[Area] = []
    for area in _findall(forecast, "Pref/Area"):
        k = _kids(area)
        forecast_int = _fields(k["ForecastInt"]) if "ForecastInt" in k else {}
        d = {
            "code_type": SEISMIC_AREA_CODE_TYPE,
            "category": _text(k.get("Category"), "Kind/Name"),
            "intensity_from": forecast_int.get("From", ""),
            "intensity_to": forecast_int.get("To", ""),
        }
        for key, name in (("condition", "Condition"), ("arrival_time", "ArrivalTime")):
            value = _own_text(k.get(name))
            if value:
                d[key] = value
        areas.append(Area(_own_text(k.get("Name")), _codes(_own_text(k.get("Code"))), details=d))
    return _Result(ctx.control_title, rate(ctx.control_title), areas, details, [])


def _tsunami_category(name: str) -> str:
    for category in _TSUNAMI_ORDER:
        if name.startswith(category):
            return category
    return name.split("：", 1)[0]


def _first_height(kids: dict[str, Any]) -> str:
    """FirstHeight/ArrivalTime, else FirstHeight/Condition, of a tsunami Item or Station."""
    el = kids.get("FirstHeight")
    if el is None:
        return ""
    f = _fields(el)
    return f.get("ArrivalTime") or f.get("Condition", "")


def _max_height(kids: dict[str, Any]) -> tuple[str, str]:
    """(MaxHeight/TsunamiHeight@description or @condition, MaxHeight/Condition)."""
    el = kids.get("MaxHeight")
    if el is None:
        return "", ""
    mk = _kids(el)
    height = mk.get("TsunamiHeight")
    value = _attr(height, "description") or _attr(height, "condition")
    return value, _own_text(mk.get("Condition"))


def _tsunami_lifted(kind_name: str, last: str) -> str:
    """What a tsunami Item lifts (津波注意報, 津波警報…), or ``""``.

    A lifting is a Kind ending in 解除 (津波注意報解除 code 60, 警報解除 code 50:
    LastKind says which), or 津波予報 / 津波なし after a warning or advisory.
    """
    last_category = _tsunami_category(last) if last else ""
    if kind_name.endswith("解除"):
        if last_category in _TSUNAMI_ORDER[:3]:
            return last_category
        lifted = kind_name.removesuffix("解除")
        return lifted if lifted in _TSUNAMI_ORDER[:3] else "津波警報"
    if _tsunami_category(kind_name) in ("津波予報", "津波なし") and last_category in _TSUNAMI_ORDER[:3]:
        return last_category
    return ""


def _tsunami(ctx: _Ctx) -> _Result:
    """津波警報・注意報・予報 VTSE41, 津波情報 VTSE51, 沖合の津波観測に関する情報 VTSE52.

    Areas are the Forecast items (category, expected arrival and height), the
    Observation items that name a region, and the Estimation items of VTSE52
    (沿岸地域 codes, which are 津波予報区 codes: 380 静岡県). A VTSE41 in which
    nothing is in force any more but something was lifted is the event
    "<what was lifted>解除" (津波注意報解除), rated as a lifting.
    """
    tsunami = _find(ctx.body, "Tsunami")
    areas: dict[str, Area] = {}
    by_category: dict[str, list[str]] = {}
    lifted_all: dict[str, None] = {}
    for item in _findall(tsunami, "Forecast/Item"):
        k = _kids(item)
        af = _fields(k["Area"]) if "Area" in k else {}
        name, code = af.get("Name", ""), af.get("Code", "")
        cat = _kids(k["Category"]) if "Category" in k else {}
        kind_name = _text(cat.get("Kind"), "Name")
        last = _text(cat.get("LastKind"), "Name")
        lifted = _tsunami_lifted(kind_name, last)
        category = "解除" if kind_name.endswith("解除") else _tsunami_category(kind_name)
        d = {"code_type": TSUNAMI_CODE_TYPE, "category": category, "kind": kind_name}
        if last:
            d["last_kind"] = last
        if lifted:
            d["lifted"] = lifted
            lifted_all.setdefault(lifted, None)
        first = _first_height(k)
        if first:
            d["first_arrival"] = first
        max_height, condition = _max_height(k)
        if max_height:
            d["max_height"] = max_height
        if condition:
            d["max_height_condition"] = condition
        stations = []
        for station in item.iterchildren(_steps("Station")[0]):
            sk = _kids(station)
            stations.append(f"{_own_text(sk.get('Name'))} {_first_height(sk)}".strip())
        if stations:
            d["stations"] = "、".join(stations)
        areas[code] = Area(name, _codes(code), details=d)
        by_category.setdefault(category, []).append(name)
    offshore: list[str] = []
    for item in _findall(tsunami, "Observation/Item"):
        code = _text(item, "Area/Code")
        observed = []
        for station in item.iterchildren(_steps("Station")[0]):
            sk = _kids(station)
            height, condition = _max_height(sk)
            observed.append(f"{_own_text(sk.get('Name'))} {height or condition}".strip())
        if not observed:
            continue
        if not code:
            # 沖合の観測点 (VTSE52) belong to no region: they are facts of the alert.
            offshore.extend(observed)
            continue
        base = areas.get(code)
        d = dict(base.details) if base else {"code_type": TSUNAMI_CODE_TYPE}
        d["observed"] = "、".join(observed)
        description = base.description if base else _text(item, "Area/Name")
        areas[code] = Area(description, _codes(code), details=d)
    estimation = _find(tsunami, "Estimation")
    coast_type = _code_define(estimation, "Item/Area/Code") or COAST_CODE_TYPE
    for item in _findall(estimation, "Item"):
        k = _kids(item)
        af = _fields(k["Area"]) if "Area" in k else {}
        code = af.get("Code", "")
        if not code:
            continue
        base = areas.get(code)
        d = dict(base.details) if base else {"code_type": coast_type}
        d["estimated"] = "沖合の観測から推定"
        first = _first_height(k)
        if first:
            d.setdefault("first_arrival", first)
        max_height, condition = _max_height(k)
        if max_height:
            d["estimated_max_height"] = max_height
            d.setdefault("max_height", max_height)
        if condition:
            d["max_height_condition"] = condition
        areas[code] = Area(base.description if base else af.get("Name", ""), _codes(code), details=d)
    top = next((c for c in _TSUNAMI_ORDER if c in by_category), "")
    details: dict[str, Any] = {
        "tsunami_categories": by_category,
        "max_category": top,
        **_earthquake(ctx.body),
    }
    if lifted_all:
        details["lifted"] = list(lifted_all)
    if offshore:
        details["observed_offshore"] = "、".join(offshore)
    if ctx.control_title == "津波警報・注意報・予報a":
        in_force = next((c for c in _TSUNAMI_ORDER[:3] if c in by_category), "")
        if in_force:
            event = in_force
        elif lifted_all:
            highest = next(c for c in _TSUNAMI_ORDER[:3] if c in lifted_all)
            event = highest + "解除"
        else:
            event = top or ctx.head_title
        rating = rate(event)
    else:
        # 津波情報 during a warning carries observed heights: as urgent as the warning.
        event = ctx.head_title or ctx.control_title
        rating = more_severe(rate(event), rate(top)) if top else rate(event)
    return _Result(event, rating, list(areas.values()), details, [])


def _code_define(el: Any, xpath: str) -> str:
    """The code type a CodeDefine/Type gives for ``xpath`` (``Item/Area/Code``), or ``""``."""
    for type_el in _findall(el, "CodeDefine/Type"):
        if type_el.get("xpath") == xpath:
            return _own_text(type_el)
    return ""


def _warning_items(ctx: _Ctx) -> _Result:
    """土砂災害警戒情報 VXWW50, 記録的短時間大雨情報 VPOA50, 竜巻注意情報 VPHW50/51."""
    target = _text(ctx.body, "TargetArea/Name")
    event = ctx.head_title
    base = _PARENS.sub("", ctx.control_title)
    if target and event.startswith(target):
        event = event[len(target) :]
    elif base and base in event:
        event = base
    else:
        # "埼玉県気象防災速報（竜巻注意）": drop the leading prefecture / region name.
        event = _REGION_PREFIX.sub("", event, count=1)
    event = event or ctx.control_title
    # 土砂災害警戒情報 is 警戒レベル４ (2026: レベル４土砂災害危険警報); its Kind names
    # are only 警戒 / 解除, so the level comes from the family.
    level = kind_level(event) or (4 if base == "土砂災害警戒情報" else None)
    areas: list[Area] = []
    any_in_force = any_lifted = False
    for warning in _findall(ctx.body, "Warning"):
        for item in _findall(warning, "Item"):
            kinds = list(_kinds(item))
            in_force = [n for n, s in kinds if s not in _NOT_IN_FORCE and n not in _NOT_IN_FORCE]
            lifted = [n for n, s in kinds if s == "解除" or n == "解除"]
            if not in_force and not lifted:
                continue
            any_in_force |= bool(in_force)
            any_lifted |= bool(lifted)
            status = ",".join(s for _, s in kinds if s)
            for area in _item_areas(item):
                af = _fields(area)
                code = af.get("Code", "")
                d = {
                    "code_type": _code_type(area, CITY_CODE_TYPE if len(code) == 7 else FORECAST_CODE_TYPE),
                    "status": status,
                    "kind": ",".join(n for n, _ in kinds if n),
                }
                if in_force and level is not None:
                    d["level"] = str(level)
                areas.append(Area(af.get("Name", ""), _codes(code), details=d))
    if any_in_force or ctx.msg_type is not MsgType.ALERT:
        rating = rate(event)
    elif any_lifted:
        event, rating = event + "解除", LIFTED
    else:
        rating = rate(event)
    return _Result(event, rating, areas, {"target_area": target}, [], level=_max_level(areas))


def _flood(ctx: _Ctx) -> _Result:
    """指定河川洪水予報 (VXKO*): the flood kind and its 警戒レベル, inundation municipalities as areas.

    The kind (氾濫危険情報, 2026: レベル４氾濫危険警報) is the Head/Headline
    Information's, else the Head/Title's; Body items are the main text and the
    municipalities whose districts may flood, which all share the kind's level.
    """
    event = ctx.head_title or ctx.control_title
    flood_kind = _text(ctx.head, "Headline/Information/Item/Kind/Name") or event
    level = kind_level(flood_kind) or kind_level(event)
    areas: list[Area] = []
    texts: list[str] = []
    rivers: list[str] = []
    for item in _findall(ctx.body, "Warning/Item"):
        for prop in _findall(item, "Kind/Property"):
            if _text(prop, "Type") == "主文":
                texts.append(_text(prop, "Text"))
        for area in _findall(item, "Areas/Area"):
            city_code = _text(area, "CityCode")
            if city_code:
                d = {"code_type": CITY_CODE_TYPE, "kind": flood_kind}
                sub = _text(area, "SubCityList")
                if sub and sub != "-":
                    d["districts"] = sub
                if level is not None:
                    d["level"] = str(level)
                areas.append(Area(_text(area, "City"), _codes(city_code), details=d))
            elif _text(area, "Name"):
                rivers.append(_text(area, "Name"))
                areas.append(
                    Area(
                        _text(area, "Name"),
                        _codes(_text(area, "Code")),
                        details={"code_type": "河川", "kind": flood_kind},
                    )
                )
    details = {"rivers": list(dict.fromkeys(rivers)), "river": "、".join(dict.fromkeys(rivers))}
    # The river recurs in every Warning item, and a town under several gauges
    # recurs too: list each area once, its districts joined.
    unique: dict[tuple[str, tuple[str, ...]], Area] = {}
    for area in areas:
        key = (area.description, area.codes)
        seen = unique.get(key)
        if seen is not None and area.details.get("districts"):
            merged = dict(seen.details)
            merged["districts"] = _join([seen.details.get("districts", ""), area.details["districts"]], " ")
            area = Area(seen.description, seen.codes, details=merged)
        elif seen is not None:
            continue
        unique[key] = area
    return _Result(event, rate(event), list(unique.values()), details, texts, level=_max_level(unique.values()))


def _volcano(ctx: _Ctx) -> _Result:
    """噴火警報・予報 VFVO50 and 噴火速報 VFVO56."""
    # Head/Title is "火山名　浅間山　噴火警報（火口周辺）": the last word is the event.
    words = _WS.split(ctx.head_title.strip())
    event = words[-1] if words and words[-1] else ctx.control_title
    areas: list[Area] = []
    details: dict[str, Any] = {}
    for info in _findall(ctx.body, "VolcanoInfo"):
        vtype = info.get("type") or ""
        for item in _findall(info, "Item"):
            kind_name = _text(item, "Kind/Name")
            for area in _findall(item, "Areas/Area"):
                code = _text(area, "Code")
                if vtype.endswith("（対象火山）"):
                    details.setdefault("volcano", _text(area, "Name"))
                    details.setdefault("volcano_code", code)
                    # 噴火警戒レベル, its own scale: not the 警戒レベル of details["level"].
                    details.setdefault("volcano_level", kind_name)
                    condition = _text(item, "Kind/Condition")
                    if condition:
                        details.setdefault("level_change", condition)
                    last = _text(item, "LastKind/Name")
                    if last:
                        details.setdefault("last_volcano_level", last)
                    details.update(
                        {
                            k: v
                            for k, v in _coordinate(_find(area, "Coordinate"), seismic=False).items()
                            if k not in details
                        }
                    )
                else:
                    d = {"code_type": CITY_CODE_TYPE, "kind": kind_name}
                    condition = _text(item, "Kind/Condition")
                    if condition:
                        d["condition"] = condition
                    areas.append(Area(_text(area, "Name"), _codes(code), details=d))
    content = _find(ctx.body, "VolcanoInfoContent")
    texts = [_text(content, "VolcanoHeadline"), _text(content, "VolcanoActivity")]
    instruction = _text(content, "VolcanoPrevention")
    rating = rate(event)
    return _Result(event, rating, areas, details, texts, instruction)


def _special_warning_notice(ctx: _Ctx) -> _Result:
    """気象特別警報報知 VPNO50: the notice JMA sends beside a 特別警報 (its Body is empty).

    The kinds and areas are in Head/Headline/Information; the 市町村等 level is
    used when present (else the finest level given). A 特別警報 is 警戒レベル５;
    a Kind 解除 means the 特別警報 was switched to a warning or lifted, and the
    event says so (特別警報解除, rated as a lifting).
    """
    infos = _findall(ctx.head, "Headline/Information")
    by_type = {(i.get("type") or ""): i for i in infos}
    chosen = next(
        (by_type[t] for t in by_type if t.endswith("（市町村等）")),
        next((i for i in reversed(infos) if not (i.get("type") or "").endswith("種別毎）")), None),
    )
    areas: list[Area] = []
    in_force: dict[str, None] = {}
    lifted = False
    for item in _findall(chosen, "Item"):
        names = [n for n, _ in _kinds(item) if n]
        live = [n for n in names if n not in _NOT_IN_FORCE]
        lifted |= any(n == "解除" for n in names)
        for name in live:
            in_force.setdefault(name, None)
        for areas_el in _findall(item, "Areas"):
            code_type = areas_el.get("codeType") or FORECAST_CODE_TYPE
            for area in _findall(areas_el, "Area"):
                af = _fields(area)
                d = {"code_type": code_type, "warnings": ",".join(live)}
                if not live:
                    d["lifted"] = "特別警報"
                level = _level_of(live)
                if level is not None:
                    d["level"] = str(level)
                areas.append(Area(af.get("Name", ""), _codes(af.get("Code", "")), details=d))
    best = most_severe(in_force)
    if best is not None:
        event, rating = best
    elif lifted:
        event, rating = "特別警報解除", LIFTED
    else:
        event, rating = ctx.head_title or ctx.control_title, rate(ctx.head_title)
    details: dict[str, Any] = {"warnings_in_force": list(in_force)}
    return _Result(event, rating, areas, details, [], level=_max_level(areas))


# Head/Title "長野県気象防災速報（記録的短時間大雨）": the parenthesis is the kind.
_BULLETIN_KIND = re.compile(r"（([^（）]+)）\s*$")
_BULLETIN_TAGS = {"記録雨": "記録的短時間大雨", "線状降水帯直前": "線状降水帯直前予測"}


def _weather_bulletin(ctx: _Ctx) -> _Result:
    """府県気象防災速報 VPBS50: 記録的短時間大雨, 線状降水帯の発生 and its 直前予測, 短時間大雪.

    The kind is Head/Title's parenthesis (else the 情報タグ Condition); the areas
    are the 情報タグ's forecast areas (一次細分区域 such as 200030 南部), which
    resolve to municipalities; the observation (伊那付近で１時間に約１００ミリ) is in
    ``details["observations"]``: its point codes (2020911) are not area codes.
    """
    match = _BULLETIN_KIND.search(ctx.head_title)
    tag = ""
    areas: dict[tuple[str, str], Area] = {}
    for info in _findall(ctx.head, "Headline/Information"):
        for item in _findall(info, "Item"):
            tag = tag or _text(item, "Kind/Condition")
            for areas_el in _findall(item, "Areas"):
                code_type = areas_el.get("codeType") or FORECAST_CODE_TYPE
                for area in _findall(areas_el, "Area"):
                    af = _fields(area)
                    key = (af.get("Name", ""), af.get("Code", ""))
                    areas.setdefault(key, Area(key[0], _codes(key[1]), details={"code_type": code_type}))
    kind = match.group(1) if match else _BULLETIN_TAGS.get(tag, tag)
    event = kind or ctx.head_title or ctx.control_title
    observations: list[str] = []
    for item in _findall(ctx.body, "MeteorologicalInfos/MeteorologicalInfo/Item"):
        place = _text(item, "Area/Name") + _text(item, "Area/Status")
        for prop in _findall(item, "Kind/Property"):
            rain = _find(prop, "PrecipitationPart/Precipitation")
            amount = _attr(rain, "description")
            if amount:
                observations.append(f"{place} {_attr(rain, 'type')} {amount}".strip())
            for ev in _findall(prop, "EventPart/Event"):
                observations.append(f"{place} {_text(ev, 'EventName')}".strip())
    out = [Area(a.description, a.codes, details={**a.details, "kind": event}) for a in areas.values()]
    details: dict[str, Any] = {"bulletin_kind": event}
    if observations:
        details["observations"] = "、".join(dict.fromkeys(observations))
    return _Result(event, rate(event), out, details, [])


def _typhoon(ctx: _Ctx) -> _Result:
    """台風解析・予報情報 VPTW60–65: stored and shown, not pushed (``details["push"] is False``).

    A track forecast reaches residents through the warnings it leads to; the
    typhoon's name, number, class and position are kept for the site.
    """
    details: dict[str, Any] = {"push": False}
    info = _find(ctx.body, "MeteorologicalInfos/MeteorologicalInfo")
    for kind in _findall(info, "Item/Kind"):
        prop = _first(kind, "Property")
        if prop is None:
            continue
        name = _find(prop, "TyphoonNamePart")
        if name is not None:
            nf = _fields(name)
            details.update(
                {
                    k: v
                    for k, v in (
                        ("typhoon_name", nf.get("NameKana") or nf.get("Name", "")),
                        ("typhoon_number", nf.get("Number", "")),
                    )
                    if v
                }
            )
        cls = _find(prop, "ClassPart")
        if cls is not None:
            cf = _fields(cls)
            details.update(
                {
                    k: v
                    for k, v in (
                        ("typhoon_class", cf.get("TyphoonClass", "")),
                        ("typhoon_intensity", cf.get("IntensityClass", "")),
                    )
                    if v
                }
            )
        center = _find(prop, "CenterPart")
        if center is not None:
            location = _text(center, "Location")
            if location:
                details["typhoon_location"] = location
            for pressure in _findall(center, "Pressure"):
                details.setdefault("typhoon_pressure", _attr(pressure, "description"))
    number = details.get("typhoon_number", "")
    event = ctx.head_title or ctx.control_title
    texts = [f"台風第{int(number[2:])}号" if len(number) == 4 and number.isdigit() else ""]
    return _Result(event, rate(event), [], details, texts)


def _earthquake_info(ctx: _Ctx) -> _Result:
    """南海トラフ地震臨時情報 / 関連解説情報 (VYSE50–52), 北海道・三陸沖後発地震注意情報 (VYSE60)."""
    info = _find(ctx.body, "EarthquakeInfo")
    event = ctx.head_title or ctx.control_title
    details = {
        "info_kind": _text(info, "InfoKind"),
        "info_serial": _text(info, "InfoSerial/Name"),
    }
    texts = [_text(info, "Text"), _text(ctx.body, "NextAdvisory")]
    # No area list: these concern the whole assumed source region; the
    # dispatcher routes them by kind.
    return _Result(event, rate(event), [], details, texts)
