"""気象特別警報・警報・注意報: VPWW53/54, the R06 element telegrams VPWW55–61 and the legacy VPWW50.

https://xml.kishou.go.jp/tec_material.html (気象警報・注意報). One Area per municipality
(or forecast area) under a warning or just lifted from one, with its kinds and 警戒レベル.
"""

from __future__ import annotations

import re
from typing import Any

from dispatcher.model import Area
from sources.jma.codes import CITY_CODE_TYPE, FORECAST_CODE_TYPE
from sources.jma.parser.elements import code_tuple, find_all, item_areas, kind_pairs, name_and_code, own_text, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import NOT_IN_FORCE, Reading, level_of, max_level
from sources.jma.severity import LIFTED, kind_level, most_severe


def read_weather_warnings(telegram: Telegram) -> Reading:
    """気象特別警報・警報・注意報 (VPWW53/54, R06 VPWW55–61, legacy VPWW50).

    Each area's 警戒レベル is the highest its in-force kinds give or imply; the
    older copies (VPWW53/54) name only the hazard (大雨警報) and carry the R06
    kind only in Body/Notice, which adds that kind to the areas it names.
    """
    warnings = find_all(telegram.body, "Warning")
    chosen = [w for w in warnings if (w.get("type") or "").endswith("（市町村等）")] or warnings
    noticed = _notice_kinds(telegram.body)
    areas: list[Area] = []
    in_force_all: dict[str, None] = {}
    lifted_all: dict[str, None] = {}
    for warning in chosen:
        wtype = warning.get("type") or ""
        for item in find_all(warning, "Item"):
            in_force: list[str] = []
            lifted: list[str] = []
            for name, status in kind_pairs(item):
                if not name:
                    continue
                if status == "解除":
                    lifted.append(name)
                elif status not in NOT_IN_FORCE:
                    in_force.append(name)
            if not in_force and not lifted:
                continue
            for name in lifted:
                lifted_all.setdefault(name, None)
            change = text_at(item, "ChangeStatus")
            for kind in in_force:
                in_force_all.setdefault(kind, None)
            item_level = level_of(in_force)
            item_warnings = ",".join(in_force)
            for area in item_areas(item):
                name, code = name_and_code(area)
                area_warnings, level = item_warnings, item_level
                extra = noticed.get(name) if noticed and in_force else None
                if extra:
                    kinds = [*in_force, *(k for k in extra if k not in in_force)]
                    for kind in kinds:
                        in_force_all.setdefault(kind, None)
                    area_warnings, level = ",".join(kinds), level_of(kinds)
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
                areas.append(Area(name, code_tuple(code), details=d))
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
        "target_area": text_at(telegram.body, "TargetArea/Name"),
    }
    return Reading(event, rating, areas, details, [], level=max_level(areas))


# 〈レベル４大雨危険警報〉姫路市　たつの市　多可町＊ in Body/Notice of VPWW53/54 (2026).
_NOTICE_ITEM = re.compile(r"〈([^〉]+)〉([^〈［]*)")
_NOTICE_NAME_SPLIT = re.compile(r"[\s\u3000、，,]+")


def _notice_kinds(body: Any) -> dict[str, list[str]]:
    """Area name → the warning kinds Body/Notice names for it (only kinds that carry a level)."""
    out: dict[str, list[str]] = {}
    for notice in find_all(body, "Notice"):
        text = own_text(notice)
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
