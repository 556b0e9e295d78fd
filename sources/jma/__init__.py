"""JMA 防災情報XML source: safe parsing, area codes, severity and telegram parsing.

Upstream format: https://xml.kishou.go.jp/ (気象庁防災情報XMLフォーマット).
"""

from __future__ import annotations

from sources.safexml import MalformedXmlError, UnsafeXmlError, parse_xml

from .codes import (
    CITY_CODE_TYPE,
    SEISMIC_AREA_CODE_TYPE,
    TSUNAMI_CODE_TYPE,
    AreaCodes,
    Resolution,
    default_codes,
)
from .parser import kind_from_name, parse_telegram
from .severity import rate, rate_intensity

__all__ = [
    "CITY_CODE_TYPE",
    "SEISMIC_AREA_CODE_TYPE",
    "TSUNAMI_CODE_TYPE",
    "AreaCodes",
    "MalformedXmlError",
    "Resolution",
    "UnsafeXmlError",
    "default_codes",
    "kind_from_name",
    "parse_telegram",
    "parse_xml",
    "rate",
    "rate_intensity",
]
