"""指定河川洪水予報 VXKO: the flood kind, its 警戒レベル and the municipalities that may flood.

https://xml.kishou.go.jp/tec_material.html (指定河川洪水予報).
"""

from __future__ import annotations

from dispatcher.model import Area
from sources.jma.codes import CITY_CODE_TYPE
from sources.jma.parser.elements import code_tuple, find_all, join_unique, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading, max_level
from sources.jma.severity import kind_level, rate


def read_flood(telegram: Telegram) -> Reading:
    """指定河川洪水予報 (VXKO*): the flood kind and its 警戒レベル, inundation municipalities as areas.

    The kind (氾濫危険情報, 2026: レベル４氾濫危険警報) is the Head/Headline
    Information's, else the Head/Title's; Body items are the main text and the
    municipalities whose districts may flood, which all share the kind's level.
    """
    event = telegram.head_title or telegram.control_title
    flood_kind = text_at(telegram.head, "Headline/Information/Item/Kind/Name") or event
    level = kind_level(flood_kind) or kind_level(event)
    areas: list[Area] = []
    texts: list[str] = []
    rivers: list[str] = []
    for item in find_all(telegram.body, "Warning/Item"):
        for prop in find_all(item, "Kind/Property"):
            if text_at(prop, "Type") == "主文":
                texts.append(text_at(prop, "Text"))
        for area in find_all(item, "Areas/Area"):
            city_code = text_at(area, "CityCode")
            if city_code:
                d = {"code_type": CITY_CODE_TYPE, "kind": flood_kind}
                sub = text_at(area, "SubCityList")
                if sub and sub != "-":
                    d["districts"] = sub
                if level is not None:
                    d["level"] = str(level)
                areas.append(Area(text_at(area, "City"), code_tuple(city_code), details=d))
            elif text_at(area, "Name"):
                rivers.append(text_at(area, "Name"))
                areas.append(
                    Area(
                        text_at(area, "Name"),
                        code_tuple(text_at(area, "Code")),
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
            merged["districts"] = join_unique([seen.details.get("districts", ""), area.details["districts"]], " ")
            area = Area(seen.description, seen.codes, details=merged)
        elif seen is not None:
            continue
        unique[key] = area
    return Reading(event, rate(event), list(unique.values()), details, texts, level=max_level(unique.values()))
