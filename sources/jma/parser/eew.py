"""緊急地震速報（警報） VXSE43 and （予報） VXSE44: forecast intensities per seismic area.

https://xml.kishou.go.jp/tec_material.html (緊急地震速報).
"""

from __future__ import annotations

from dispatcher.model import Area
from sources.jma.codes import SEISMIC_AREA_CODE_TYPE
from sources.jma.parser.elements import child_elements, child_texts, code_tuple, find, find_all, own_text, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading
from sources.jma.parser.seismic import earthquake_details
from sources.jma.severity import rate


def read_eew(telegram: Telegram) -> Reading:
    """緊急地震速報（警報） VXSE43 and （予報） VXSE44."""
    details = earthquake_details(telegram.body)
    forecast = find(telegram.body, "Intensity/Forecast")
    if forecast is not None:
        details["forecast_max_intensity_from"] = text_at(forecast, "ForecastInt/From")
        details["forecast_max_intensity_to"] = text_at(forecast, "ForecastInt/To")
    areas: list[Area] = []
    for area in find_all(forecast, "Pref/Area"):
        k = child_elements(area)
        forecast_int = child_texts(k["ForecastInt"]) if "ForecastInt" in k else {}
        d = {
            "code_type": SEISMIC_AREA_CODE_TYPE,
            "category": text_at(k.get("Category"), "Kind/Name"),
            "intensity_from": forecast_int.get("From", ""),
            "intensity_to": forecast_int.get("To", ""),
        }
        for key, name in (("condition", "Condition"), ("arrival_time", "ArrivalTime")):
            value = own_text(k.get(name))
            if value:
                d[key] = value
        areas.append(Area(own_text(k.get("Name")), code_tuple(own_text(k.get("Code"))), details=d))
    return Reading(telegram.control_title, rate(telegram.control_title), areas, details, [])
