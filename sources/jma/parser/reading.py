"""What a family reads from a Body (:class:`Reading`) and how it becomes an Alert with its envelope.

:func:`to_alert` adds the envelope's identity, the comments every family may carry
(Body/Comments), the highest 警戒レベル of the areas, the unknown area codes
(:class:`sources.jma.codes.AreaCodes`) and the text limits of ``envelope``: over-long
texts are cut, ending in "…". Helpers the families share (levels, "not in force"
statuses) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, methodcaller
from typing import Any

from dispatcher.model import Alert, Area, MsgType
from sources.jma.codes import (
    CITY_CODE_TYPE,
    COAST_CODE_TYPE,
    EEW_AREA_CODE_TYPE,
    FORECAST_CODE_TYPE,
    SEISMIC_AREA_CODE_TYPE,
    TSUNAMI_CODE_TYPE,
)
from sources.jma.parser.elements import find_all, join_unique, tag_name, text_at
from sources.jma.parser.envelope import (
    MAX_AREA_NAME_CHARS,
    MAX_DETAIL_CHARS,
    MAX_HEADLINE_CHARS,
    MAX_IDENTITY_CHARS,
    MAX_TEXT_CHARS,
    Telegram,
)
from sources.jma.severity import LIFTED, kind_level, with_level
from sources.outcome import Rating

SOURCE = "jma"
_DESCRIPTION = attrgetter("description")
_DETAILS = attrgetter("details")
_VALUES = methodcaller("values")
# Warning statuses meaning "nothing in force here" (VPWW, VXWW, VPOA, VPHW).
NOT_IN_FORCE = frozenset({"", "解除", "なし", "発表警報・注意報はなし", "発表なし"})
# Code types whose codes AreaCodes knows; the rest (rivers, volcanoes) are not checked.
RESOLVABLE = frozenset(
    {CITY_CODE_TYPE, TSUNAMI_CODE_TYPE, COAST_CODE_TYPE, FORECAST_CODE_TYPE, SEISMIC_AREA_CODE_TYPE, EEW_AREA_CODE_TYPE}
)


@dataclass(slots=True)
class Reading:
    """What a family reader made of a telegram's Body (and Head/Headline where the family keeps it there)."""

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


def to_alert(telegram: Telegram, res: Reading) -> Alert:
    details = {
        "control_title": telegram.control_title,
        "head_title": telegram.head_title,
        "info_type": telegram.info_type,
        "event_id": telegram.event_id,
        "serial": telegram.serial,
        **res.details,
    }
    rating = res.rating
    if res.level is not None:
        details["level"] = res.level
        rating = with_level(rating, res.level)
    if telegram.msg_type is MsgType.CANCEL:
        # A withdrawal must reach the same people as fast as what it withdraws,
        # but it is not itself a danger.
        rating = Rating(LIFTED.severity, LIFTED.urgency, LIFTED.certainty, res.rating.priority)
    comments = body_comments(telegram.body)
    if telegram.codes is not None:
        by_type: dict[str, list[str]] = {}
        for area in res.areas:
            code_type = area.details.get("code_type", "")
            if code_type in RESOLVABLE:
                by_type.setdefault(code_type, []).extend(area.codes)
        unknown = [u for t, c in by_type.items() for u in telegram.codes.unknown(c, t)]
        details["area_codes_version"] = telegram.codes.version
        if unknown:
            details["unknown_area_codes"] = list(unknown)
    return Alert(
        identifier=telegram.identifier,
        sender=telegram.office,
        sent=telegram.sent,
        status=telegram.status,
        msg_type=telegram.msg_type,
        event=cut(res.event or telegram.head_title or telegram.control_title, MAX_IDENTITY_CHARS),
        severity=rating.severity,
        urgency=rating.urgency,
        certainty=rating.certainty,
        priority=rating.priority,
        headline=cut(telegram.headline or telegram.head_title, MAX_HEADLINE_CHARS),
        source=SOURCE,
        references=(telegram.series_key,) if telegram.msg_type in (MsgType.UPDATE, MsgType.CANCEL) else (),
        description=cut(join_unique([telegram.headline, *res.texts, *comments]), MAX_TEXT_CHARS),
        instruction=cut(res.instruction, MAX_TEXT_CHARS),
        areas=tuple(res.areas) if res.capped else capped_areas(res.areas),
        expires=telegram.valid,
        series_key=telegram.series_key,
        kind=telegram.kind,
        details=details,
        original_url=telegram.url,
    )


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capped_areas(areas: list[Area]) -> tuple[Area, ...]:
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
                cut(area.description, MAX_AREA_NAME_CHARS),
                area.codes,
                area.polygons,
                area.circles,
                {k: cut(v, MAX_DETAIL_CHARS) for k, v in details.items()},
            )
        out.append(area)
    return tuple(out)


def max_level(areas: Iterable[Area]) -> int | None:
    """The highest ``details["level"]`` among ``areas``, None when none has one."""
    levels = [int(a.details["level"]) for a in areas if "level" in a.details]
    return max(levels) if levels else None


def level_of(kinds: Iterable[str]) -> int | None:
    """The highest 警戒レベル the kinds give or imply, None when none has one."""
    best = None
    for level in map(kind_level, kinds):
        if level is not None and (best is None or level > best):
            best = level
    return best


def body_comments(body: Any) -> list[str]:
    out: list[str] = []
    for comments in find_all(body, "Comments"):
        for child in comments:
            name = tag_name(child)
            if name in ("WarningComment", "ForecastComment", "VarComment", "ObservationComment"):
                out.append(text_at(child, "Text"))
            elif name == "FreeFormComment":
                out.append((child.text or "").strip())
    return [t for t in out if t]
