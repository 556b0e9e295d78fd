"""Volcanoes: 噴火警報・予報 VFVO50 and 噴火速報 VFVO56.

https://xml.kishou.go.jp/tec_material.html (噴火警報・予報, 噴火速報). The 噴火警戒レベル is
kept in the details; it is its own scale, not the 警戒レベル of ``details["level"]``.
"""

from __future__ import annotations

import re
from typing import Any

from dispatcher.model import Area
from sources.jma.codes import CITY_CODE_TYPE
from sources.jma.parser.elements import code_tuple, coordinate, find, find_all, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading
from sources.jma.severity import rate

_WS = re.compile(r"[\s\u3000]+")


def read_volcano(telegram: Telegram) -> Reading:
    """噴火警報・予報 VFVO50 and 噴火速報 VFVO56."""
    # Head/Title is "火山名　浅間山　噴火警報（火口周辺）": the last word is the event.
    words = _WS.split(telegram.head_title.strip())
    event = words[-1] if words and words[-1] else telegram.control_title
    areas: list[Area] = []
    details: dict[str, Any] = {}
    for info in find_all(telegram.body, "VolcanoInfo"):
        vtype = info.get("type") or ""
        for item in find_all(info, "Item"):
            kind_name = text_at(item, "Kind/Name")
            for area in find_all(item, "Areas/Area"):
                code = text_at(area, "Code")
                if vtype.endswith("（対象火山）"):
                    details.setdefault("volcano", text_at(area, "Name"))
                    details.setdefault("volcano_code", code)
                    # 噴火警戒レベル, its own scale: not the 警戒レベル of details["level"].
                    details.setdefault("volcano_level", kind_name)
                    condition = text_at(item, "Kind/Condition")
                    if condition:
                        details.setdefault("level_change", condition)
                    last = text_at(item, "LastKind/Name")
                    if last:
                        details.setdefault("last_volcano_level", last)
                    details.update(
                        {
                            k: v
                            for k, v in coordinate(find(area, "Coordinate"), seismic=False).items()
                            if k not in details
                        }
                    )
                else:
                    d = {"code_type": CITY_CODE_TYPE, "kind": kind_name}
                    condition = text_at(item, "Kind/Condition")
                    if condition:
                        d["condition"] = condition
                    areas.append(Area(text_at(area, "Name"), code_tuple(code), details=d))
    content = find(telegram.body, "VolcanoInfoContent")
    texts = [text_at(content, "VolcanoHeadline"), text_at(content, "VolcanoActivity")]
    instruction = text_at(content, "VolcanoPrevention")
    rating = rate(event)
    return Reading(event, rating, areas, details, texts, instruction)
