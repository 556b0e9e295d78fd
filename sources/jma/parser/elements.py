"""Shared XML helpers of the JMA parser: lookups by local name, texts, coordinates, warning items.

Telegrams (https://xml.kishou.go.jp/) are read by local name, whatever the namespace
version, with lxml's ``{*}Name`` child lookups (https://lxml.de/api/lxml.etree._Element-class.html
``iterchildren(tag=...)``): children that do not match never become Python objects.
Every helper takes ``None`` for a missing parent where a family may pass one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from lxml import etree

JST = timezone(timedelta(hours=9))
_COORD = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?/")


@lru_cache(maxsize=512)
def step_tags(path: str) -> tuple[str, ...]:
    # "{*}Name" matches Name in any namespace (or none) inside libxml2, so the
    # children that do not match never become Python objects.
    return tuple("{*}" + step for step in path.split("/"))


LOCAL_NAMES: dict[str, str] = {}
ELEMENTS = etree.Element  # iterchildren(tag=etree.Element): no comments or PIs


def local_name(tag: str) -> str:
    # Tags repeat endlessly across telegrams; the cache saves a split per child.
    name = LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(LOCAL_NAMES) < 4096:  # bounded: hostile input cannot grow it forever
            LOCAL_NAMES[tag] = name
    return name


def children(el: Any, name: str) -> list[Any]:
    """Direct child elements with local name ``name`` (``*``: all), any namespace."""
    if name == "*":
        return list(el.iterchildren(ELEMENTS))
    return list(el.iterchildren(step_tags(name)[0]))


def first_child(el: Any, name: str) -> Any:
    return next(el.iterchildren(step_tags(name)[0]), None)


def child_texts(el: Any, stop: frozenset[str] = frozenset()) -> dict[str, str]:
    """Local name -> stripped text of the direct children (first of each), in one pass.

    Elements read several children each: one pass over the children serves them
    all, where a lookup per field would walk them again each time. Iteration ends
    at the first child named in ``stop`` (the long lists that follow the scalar
    fields, such as IntensityStation).
    """
    out: dict[str, str] = {}
    names = LOCAL_NAMES
    for child in el.iterchildren(ELEMENTS):
        tag = child.tag
        name = names.get(tag) or local_name(tag)
        if name in stop:
            break
        if name not in out:
            text = child.text
            out[name] = text.strip() if text else ""
    return out


def wanted_texts(el: Any, wanted: frozenset[str]) -> dict[str, str]:
    """Like ``child_texts`` for the children named in ``wanted`` only; stops once it has them all.

    A warning Kind carries its Name and Status first and then long Property lists.
    """
    out: dict[str, str] = {}
    names = LOCAL_NAMES
    for child in el.iterchildren(ELEMENTS):
        tag = child.tag
        name = names.get(tag) or local_name(tag)
        if name in wanted and name not in out:
            text = child.text
            out[name] = text.strip() if text else ""
            if len(out) == len(wanted):
                break
    return out


def find(el: Any, path: str) -> Any:
    for step in step_tags(path):
        if el is None:
            return None
        el = next(el.iterchildren(step), None)
    return el


def text_at(el: Any, path: str) -> str:
    el = find(el, path)
    if el is None:
        return ""
    value = el.text
    return value.strip() if value else ""


def find_all(el: Any, path: str) -> list[Any]:
    if el is None:
        return []
    steps = step_tags(path)
    nodes = list(el.iterchildren(steps[0]))
    for step in steps[1:]:
        nodes = [child for node in nodes for child in node.iterchildren(step)]
    return nodes


def child_elements(el: Any) -> dict[str, Any]:
    """Local name -> first direct child element of that name, in one pass."""
    out: dict[str, Any] = {}
    names = LOCAL_NAMES
    for child in el.iterchildren(ELEMENTS):
        tag = child.tag
        name = names.get(tag) or local_name(tag)
        if name not in out:
            out[name] = child
    return out


def own_text(el: Any) -> str:
    if el is None:
        return ""
    value = el.text
    return value.strip() if value else ""


def attr(el: Any, key: str) -> str:
    value = el.get(key) if el is not None else None
    return value.strip() if value else ""


def code_tuple(code: str) -> tuple[str, ...]:
    return (code,) if code else ()


def tag_name(el: Any) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def jma_datetime(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # JMA always gives an offset; a bare time is JST by convention.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=JST)


def join_unique(parts: Iterable[str], sep: str = "\n\n") -> str:
    seen: dict[str, None] = {}
    for part in parts:
        if part and part not in seen:
            seen[part] = None
    return sep.join(seen)


def coordinate(el: Any, *, seismic: bool = True) -> dict[str, Any]:
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


_KIND_TAG = "{*}Kind"


def kind_pairs(item: Any) -> list[tuple[str, str]]:
    """(Name, Status) of each Kind child of a warning Item, stopping inside a Kind once both are read.

    The hot loop of the warning families: an R06 Kind carries Name, Code, Status
    and then long Property lists.
    """
    out: list[tuple[str, str]] = []
    names = LOCAL_NAMES
    for kind in item.iterchildren(_KIND_TAG):
        name = status = None
        for child in kind.iterchildren(ELEMENTS):
            tag = child.tag
            local = names.get(tag) or local_name(tag)
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


def name_and_code(area: Any) -> tuple[str, str]:
    """Name and Code of an Area element: by position in the usual <Name/><Code/> shape, else by name."""
    kids = area[:2]
    if len(kids) == 2:
        first, second = kids
        t1, t2 = first.tag, second.tag
        if isinstance(t1, str) and isinstance(t2, str) and t1.endswith("}Name") and t2.endswith("}Code"):
            n, c = first.text, second.text
            return (n.strip() if n else ""), (c.strip() if c else "")
    af = child_texts(area)
    return af.get("Name", ""), af.get("Code", "")


def item_areas(item: Any) -> list[Any]:
    return find_all(item, "Area") + find_all(item, "Areas/Area")


def areas_code_type(el: Any, default: str) -> str:
    parent = el.getparent()
    if parent is not None and tag_name(parent) == "Areas" and parent.get("codeType"):
        return str(parent.get("codeType"))
    return default


def code_define(el: Any, xpath: str) -> str:
    """The code type a CodeDefine/Type gives for ``xpath`` (``Item/Area/Code``), or ``""``."""
    for type_el in find_all(el, "CodeDefine/Type"):
        if type_el.get("xpath") == xpath:
            return own_text(type_el)
    return ""
