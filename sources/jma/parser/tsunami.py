"""Tsunami: 津波警報・注意報・予報 VTSE41, 津波情報 VTSE51, 沖合の津波観測に関する情報 VTSE52.

https://xml.kishou.go.jp/tec_material.html (津波警報・注意報・予報, 津波情報). One Area per
津波予報区, with its grade, expected arrival and height, observations and estimates.
"""

from __future__ import annotations

from typing import Any

from dispatcher.model import Area
from sources.jma.codes import COAST_CODE_TYPE, TSUNAMI_CODE_TYPE
from sources.jma.parser.elements import (
    attr,
    child_elements,
    child_texts,
    code_define,
    code_tuple,
    find,
    find_all,
    own_text,
    step_tags,
    text_at,
)
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading
from sources.jma.parser.seismic import earthquake_details
from sources.jma.severity import more_severe, rate

_TSUNAMI_ORDER = ("大津波警報", "津波警報", "津波注意報", "津波予報")


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
    f = child_texts(el)
    return f.get("ArrivalTime") or f.get("Condition", "")


def _max_height(kids: dict[str, Any]) -> tuple[str, str]:
    """(MaxHeight/TsunamiHeight@description or @condition, MaxHeight/Condition)."""
    el = kids.get("MaxHeight")
    if el is None:
        return "", ""
    mk = child_elements(el)
    height = mk.get("TsunamiHeight")
    value = attr(height, "description") or attr(height, "condition")
    return value, own_text(mk.get("Condition"))


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


def read_tsunami(telegram: Telegram) -> Reading:
    """津波警報・注意報・予報 VTSE41, 津波情報 VTSE51, 沖合の津波観測に関する情報 VTSE52.

    Areas are the Forecast items (category, expected arrival and height), the
    Observation items that name a region, and the Estimation items of VTSE52
    (沿岸地域 codes, which are 津波予報区 codes: 380 静岡県). A VTSE41 in which
    nothing is in force any more but something was lifted is the event
    "<what was lifted>解除" (津波注意報解除), rated as a lifting.
    """
    tsunami = find(telegram.body, "Tsunami")
    areas: dict[str, Area] = {}
    by_category: dict[str, list[str]] = {}
    lifted_all: dict[str, None] = {}
    for item in find_all(tsunami, "Forecast/Item"):
        k = child_elements(item)
        af = child_texts(k["Area"]) if "Area" in k else {}
        name, code = af.get("Name", ""), af.get("Code", "")
        cat = child_elements(k["Category"]) if "Category" in k else {}
        kind_name = text_at(cat.get("Kind"), "Name")
        last = text_at(cat.get("LastKind"), "Name")
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
        for station in item.iterchildren(step_tags("Station")[0]):
            sk = child_elements(station)
            stations.append(f"{own_text(sk.get('Name'))} {_first_height(sk)}".strip())
        if stations:
            d["stations"] = "、".join(stations)
        areas[code] = Area(name, code_tuple(code), details=d)
        by_category.setdefault(category, []).append(name)
    offshore: list[str] = []
    for item in find_all(tsunami, "Observation/Item"):
        code = text_at(item, "Area/Code")
        observed = []
        for station in item.iterchildren(step_tags("Station")[0]):
            sk = child_elements(station)
            height, condition = _max_height(sk)
            observed.append(f"{own_text(sk.get('Name'))} {height or condition}".strip())
        if not observed:
            continue
        if not code:
            # 沖合の観測点 (VTSE52) belong to no region: they are facts of the alert.
            offshore.extend(observed)
            continue
        base = areas.get(code)
        d = dict(base.details) if base else {"code_type": TSUNAMI_CODE_TYPE}
        d["observed"] = "、".join(observed)
        description = base.description if base else text_at(item, "Area/Name")
        areas[code] = Area(description, code_tuple(code), details=d)
    estimation = find(tsunami, "Estimation")
    coast_type = code_define(estimation, "Item/Area/Code") or COAST_CODE_TYPE
    for item in find_all(estimation, "Item"):
        k = child_elements(item)
        af = child_texts(k["Area"]) if "Area" in k else {}
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
        areas[code] = Area(base.description if base else af.get("Name", ""), code_tuple(code), details=d)
    top = next((c for c in _TSUNAMI_ORDER if c in by_category), "")
    details: dict[str, Any] = {
        "tsunami_categories": by_category,
        "max_category": top,
        **earthquake_details(telegram.body),
    }
    if lifted_all:
        details["lifted"] = list(lifted_all)
    if offshore:
        details["observed_offshore"] = "、".join(offshore)
    if telegram.control_title == "津波警報・注意報・予報a":
        in_force = next((c for c in _TSUNAMI_ORDER[:3] if c in by_category), "")
        if in_force:
            event = in_force
        elif lifted_all:
            highest = next(c for c in _TSUNAMI_ORDER[:3] if c in lifted_all)
            event = highest + "解除"
        else:
            event = top or telegram.head_title
        rating = rate(event)
    else:
        # 津波情報 during a warning carries observed heights: as urgent as the warning.
        event = telegram.head_title or telegram.control_title
        rating = more_severe(rate(event), rate(top)) if top else rate(event)
    return Reading(event, rating, list(areas.values()), details, [])
