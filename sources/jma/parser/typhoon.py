"""台風解析・予報情報 VPTW60–65: stored and shown on the site, not pushed to residents.

https://xml.kishou.go.jp/tec_material.html (台風解析・予報情報（Ｈ３０）).
"""

from __future__ import annotations

from typing import Any

from sources.jma.parser.elements import attr, child_texts, find, find_all, first_child, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading
from sources.jma.severity import rate


def read_typhoon(telegram: Telegram) -> Reading:
    """台風解析・予報情報 VPTW60–65: stored and shown, not pushed (``details["push"] is False``).

    A track forecast reaches residents through the warnings it leads to; the
    typhoon's name, number, class and position are kept for the site.
    """
    details: dict[str, Any] = {"push": False}
    info = find(telegram.body, "MeteorologicalInfos/MeteorologicalInfo")
    for kind in find_all(info, "Item/Kind"):
        prop = first_child(kind, "Property")
        if prop is None:
            continue
        name = find(prop, "TyphoonNamePart")
        if name is not None:
            nf = child_texts(name)
            _keep(details, typhoon_name=nf.get("NameKana") or nf.get("Name", ""), typhoon_number=nf.get("Number", ""))
        cls = find(prop, "ClassPart")
        if cls is not None:
            cf = child_texts(cls)
            _keep(details, typhoon_class=cf.get("TyphoonClass", ""), typhoon_intensity=cf.get("IntensityClass", ""))
        center = find(prop, "CenterPart")
        if center is not None:
            location = text_at(center, "Location")
            if location:
                details["typhoon_location"] = location
            for pressure in find_all(center, "Pressure"):
                details.setdefault("typhoon_pressure", attr(pressure, "description"))
    number = details.get("typhoon_number", "")
    event = telegram.head_title or telegram.control_title
    texts = [f"台風第{int(number[2:])}号" if len(number) == 4 and number.isdigit() else ""]
    return Reading(event, rate(event), [], details, texts)


def _keep(details: dict[str, Any], **values: str) -> None:
    """Set the non-empty ``values`` in ``details``."""
    details.update((k, v) for k, v in values.items() if v)
