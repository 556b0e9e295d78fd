"""府県気象防災速報 VPBS50: 記録的短時間大雨, 線状降水帯 and its 直前予測, 短時間大雪.

https://xml.kishou.go.jp/tec_material.html (府県気象防災速報).
"""

from __future__ import annotations

import re
from typing import Any

from dispatcher.model import Area
from sources.jma.codes import FORECAST_CODE_TYPE
from sources.jma.parser.elements import attr, child_texts, code_tuple, find, find_all, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading
from sources.jma.severity import rate

# Head/Title "長野県気象防災速報（記録的短時間大雨）": the parenthesis is the kind.
_BULLETIN_KIND = re.compile(r"（([^（）]+)）\s*$")
_BULLETIN_TAGS = {"記録雨": "記録的短時間大雨", "線状降水帯直前": "線状降水帯直前予測"}


def read_weather_bulletin(telegram: Telegram) -> Reading:
    """府県気象防災速報 VPBS50: 記録的短時間大雨, 線状降水帯の発生 and its 直前予測, 短時間大雪.

    The kind is Head/Title's parenthesis (else the 情報タグ Condition); the areas
    are the 情報タグ's forecast areas (一次細分区域 such as 200030 南部), which
    resolve to municipalities; the observation (伊那付近で１時間に約１００ミリ) is in
    ``details["observations"]``: its point codes (2020911) are not area codes.
    """
    match = _BULLETIN_KIND.search(telegram.head_title)
    tag = ""
    areas: dict[tuple[str, str], Area] = {}
    for info in find_all(telegram.head, "Headline/Information"):
        for item in find_all(info, "Item"):
            tag = tag or text_at(item, "Kind/Condition")
            for areas_el in find_all(item, "Areas"):
                code_type = areas_el.get("codeType") or FORECAST_CODE_TYPE
                for area in find_all(areas_el, "Area"):
                    af = child_texts(area)
                    key = (af.get("Name", ""), af.get("Code", ""))
                    areas.setdefault(key, Area(key[0], code_tuple(key[1]), details={"code_type": code_type}))
    kind = match.group(1) if match else _BULLETIN_TAGS.get(tag, tag)
    event = kind or telegram.head_title or telegram.control_title
    observations: list[str] = []
    for item in find_all(telegram.body, "MeteorologicalInfos/MeteorologicalInfo/Item"):
        place = text_at(item, "Area/Name") + text_at(item, "Area/Status")
        for prop in find_all(item, "Kind/Property"):
            rain = find(prop, "PrecipitationPart/Precipitation")
            amount = attr(rain, "description")
            if amount:
                observations.append(f"{place} {attr(rain, 'type')} {amount}".strip())
            for ev in find_all(prop, "EventPart/Event"):
                observations.append(f"{place} {text_at(ev, 'EventName')}".strip())
    out = [Area(a.description, a.codes, details={**a.details, "kind": event}) for a in areas.values()]
    details: dict[str, Any] = {"bulletin_kind": event}
    if observations:
        details["observations"] = "、".join(dict.fromkeys(observations))
    return Reading(event, rate(event), out, details, [])
