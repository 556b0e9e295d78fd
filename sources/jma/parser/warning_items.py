"""Warning-item families: 土砂災害警戒情報 VXWW50, 記録的短時間大雨情報 VPOA50, 竜巻注意情報 VPHW50/51.

https://xml.kishou.go.jp/tec_material.html. Each names its municipalities in
Body/Warning/Item with a status (発表, 継続, 解除); 土砂災害警戒情報 is 警戒レベル４.
"""

from __future__ import annotations

import re

from dispatcher.model import Area, MsgType
from sources.jma.codes import CITY_CODE_TYPE, FORECAST_CODE_TYPE
from sources.jma.parser.elements import (
    areas_code_type,
    child_texts,
    code_tuple,
    find_all,
    item_areas,
    kind_pairs,
    text_at,
)
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import NOT_IN_FORCE, Reading, max_level
from sources.jma.severity import LIFTED, kind_level, rate

_PARENS = re.compile(r"（[^）]*）")
_REGION_PREFIX = re.compile(r"^.{1,12}?(?:都|道|府|県|地方)(?=気象|竜巻|土砂|記録|大雨|レベル)")


def read_warning_items(telegram: Telegram) -> Reading:
    """土砂災害警戒情報 VXWW50, 記録的短時間大雨情報 VPOA50, 竜巻注意情報 VPHW50/51."""
    target = text_at(telegram.body, "TargetArea/Name")
    event = telegram.head_title
    base = _PARENS.sub("", telegram.control_title)
    if target and event.startswith(target):
        event = event[len(target) :]
    elif base and base in event:
        event = base
    else:
        # "埼玉県気象防災速報（竜巻注意）": drop the leading prefecture / region name.
        event = _REGION_PREFIX.sub("", event, count=1)
    event = event or telegram.control_title
    # 土砂災害警戒情報 is 警戒レベル４ (2026: レベル４土砂災害危険警報); its Kind names
    # are only 警戒 / 解除, so the level comes from the family.
    level = kind_level(event) or (4 if base == "土砂災害警戒情報" else None)
    areas: list[Area] = []
    any_in_force = any_lifted = False
    for warning in find_all(telegram.body, "Warning"):
        for item in find_all(warning, "Item"):
            kinds = list(kind_pairs(item))
            in_force = [n for n, s in kinds if s not in NOT_IN_FORCE and n not in NOT_IN_FORCE]
            lifted = [n for n, s in kinds if s == "解除" or n == "解除"]
            if not in_force and not lifted:
                continue
            any_in_force |= bool(in_force)
            any_lifted |= bool(lifted)
            status = ",".join(s for _, s in kinds if s)
            for area in item_areas(item):
                af = child_texts(area)
                code = af.get("Code", "")
                d = {
                    "code_type": areas_code_type(area, CITY_CODE_TYPE if len(code) == 7 else FORECAST_CODE_TYPE),
                    "status": status,
                    "kind": ",".join(n for n, _ in kinds if n),
                }
                if in_force and level is not None:
                    d["level"] = str(level)
                areas.append(Area(af.get("Name", ""), code_tuple(code), details=d))
    if any_in_force or telegram.msg_type is not MsgType.ALERT:
        rating = rate(event)
    elif any_lifted:
        event, rating = event + "解除", LIFTED
    else:
        rating = rate(event)
    return Reading(event, rating, areas, {"target_area": target}, [], level=max_level(areas))
