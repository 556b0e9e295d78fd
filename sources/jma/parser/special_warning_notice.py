"""気象特別警報報知 VPNO50: the notice JMA sends beside a 特別警報.

https://xml.kishou.go.jp/tec_material.html (気象特別警報報知). Its Body is empty; the
kinds and areas are in Head/Headline/Information.
"""

from __future__ import annotations

from typing import Any

from dispatcher.model import Area
from sources.jma.codes import FORECAST_CODE_TYPE
from sources.jma.parser.elements import child_texts, code_tuple, find_all, kind_pairs
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import NOT_IN_FORCE, Reading, level_of, max_level
from sources.jma.severity import LIFTED, most_severe, rate


def read_special_warning_notice(telegram: Telegram) -> Reading:
    """気象特別警報報知 VPNO50: the notice JMA sends beside a 特別警報 (its Body is empty).

    The kinds and areas are in Head/Headline/Information; the 市町村等 level is
    used when present (else the finest level given). A 特別警報 is 警戒レベル５;
    a Kind 解除 means the 特別警報 was switched to a warning or lifted, and the
    event says so (特別警報解除, rated as a lifting).
    """
    infos = find_all(telegram.head, "Headline/Information")
    by_type = {(i.get("type") or ""): i for i in infos}
    chosen = next(
        (by_type[t] for t in by_type if t.endswith("（市町村等）")),
        next((i for i in reversed(infos) if not (i.get("type") or "").endswith("種別毎）")), None),
    )
    areas: list[Area] = []
    in_force: dict[str, None] = {}
    lifted = False
    for item in find_all(chosen, "Item"):
        names = [n for n, _ in kind_pairs(item) if n]
        live = [n for n in names if n not in NOT_IN_FORCE]
        lifted |= any(n == "解除" for n in names)
        for name in live:
            in_force.setdefault(name, None)
        for areas_el in find_all(item, "Areas"):
            code_type = areas_el.get("codeType") or FORECAST_CODE_TYPE
            for area in find_all(areas_el, "Area"):
                af = child_texts(area)
                d = {"code_type": code_type, "warnings": ",".join(live)}
                if not live:
                    d["lifted"] = "特別警報"
                level = level_of(live)
                if level is not None:
                    d["level"] = str(level)
                areas.append(Area(af.get("Name", ""), code_tuple(af.get("Code", "")), details=d))
    best = most_severe(in_force)
    if best is not None:
        event, rating = best
    elif lifted:
        event, rating = "特別警報解除", LIFTED
    else:
        event, rating = telegram.head_title or telegram.control_title, rate(telegram.head_title)
    details: dict[str, Any] = {"warnings_in_force": list(in_force)}
    return Reading(event, rating, areas, details, [], level=max_level(areas))
