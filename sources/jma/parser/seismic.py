"""Earthquake information: 震度速報 VXSE51, 震源に関する情報 VXSE52, 震源・震度に関する情報 VXSE53, VXSE61.

https://xml.kishou.go.jp/tec_material.html (地震火山関連XML電文). Also the hypocenter
details every earthquake and tsunami telegram shares (:func:`earthquake_details`).
"""

from __future__ import annotations

from typing import Any

from dispatcher.model import Area
from sources.jma.codes import CITY_CODE_TYPE, SEISMIC_AREA_CODE_TYPE
from sources.jma.parser.elements import (
    LOCAL_NAMES,
    attr,
    child_elements,
    child_texts,
    coordinate,
    find,
    first_child,
    local_name,
    own_text,
    step_tags,
    text_at,
)
from sources.jma.parser.envelope import MAX_AREA_NAME_CHARS, MAX_DETAIL_CHARS, Telegram
from sources.jma.parser.reading import Reading, cut
from sources.jma.severity import rate, rate_intensity


def earthquake_details(body: Any) -> dict[str, Any]:
    eq = find(body, "Earthquake")
    if eq is None:
        return {}
    k = child_elements(eq)
    hypocenter = k.get("Hypocenter")
    area = first_child(hypocenter, "Area") if hypocenter is not None else None
    af = child_texts(area) if area is not None else {}
    magnitude = k.get("Magnitude")
    out: dict[str, Any] = {
        "origin_time": own_text(k.get("OriginTime")),
        "hypocenter": af.get("Name", ""),
        "hypocenter_code": af.get("Code", ""),
        "hypocenter_detail": af.get("NameFromMark", ""),
        "magnitude": own_text(magnitude),
        "magnitude_description": attr(magnitude, "description"),
    }
    out.update(coordinate(first_child(area, "Coordinate") if area is not None else None))
    return {k: v for k, v in out.items() if v not in ("", None)}


def read_seismic(telegram: Telegram) -> Reading:
    """震度速報 VXSE51, 震源に関する情報 VXSE52, 震源・震度に関する情報 VXSE53 (and VXSE61)."""
    details = earthquake_details(telegram.body)
    observation = find(telegram.body, "Intensity/Observation")
    max_int = text_at(observation, "MaxInt")
    areas: list[Area] = []
    if observation is not None:
        _intensity_areas(observation, areas)
    if max_int:
        details["max_intensity"] = max_int
    if telegram.control_title == "震源に関する情報" or not max_int:
        rating = rate(telegram.control_title)
        if telegram.head_title == "遠地地震に関する情報":
            rating = rate(telegram.head_title)
    else:
        rating = rate_intensity(max_int)
    event = telegram.head_title or telegram.control_title
    texts = [text_at(telegram.body, "Text")]
    return Reading(event, rating, areas, details, texts, capped=True)


_SCALARS = ("Name", "Code", "MaxInt", "Condition")
_SEISMIC_LISTS = frozenset({"City", "IntensityStation"})


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
            local = LOCAL_NAMES.get(tag) or local_name(tag)
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
    any_city, any_area, any_pref = step_tags("City/Area/Pref")
    for pref in observation.iterchildren(any_pref):
        pref_name = cut(text_at(pref, "Name"), MAX_DETAIL_CHARS)
        for area in pref.iterchildren(any_area):
            area_name, area_code, area_int, area_cond = _intensity_scalars(area, tags)
            area_name = cut(area_name, MAX_AREA_NAME_CHARS)
            area_int, area_cond = cut(area_int, MAX_DETAIL_CHARS), cut(area_cond, MAX_DETAIL_CHARS)
            area_detail = cut(area_name, MAX_DETAIL_CHARS)
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
                    condition = cut(condition, MAX_DETAIL_CHARS)
                if len(name) > MAX_AREA_NAME_CHARS or len(max_int) > MAX_DETAIL_CHARS:
                    name, max_int = cut(name, MAX_AREA_NAME_CHARS), cut(max_int, MAX_DETAIL_CHARS)
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
