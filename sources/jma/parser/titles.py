"""The one table from Control/Title to the telegram's data-type code and the family that reads it.

Titles and codes: https://xml.kishou.go.jp/tec_material.html (解説資料, 電文一覧). The
code is used when the file name carries none (a telegram read from disk or posted
without its JMA name); a title with no family (``None``) is a telegram we know of but
do not normalise: it is stored and reported as ``Unsupported``, as is any title not
in the table. A key ending in ``…`` stands for every title that begins with what
precedes it (and ends with what follows it): the versions of the warnings and the
typhoon products JMA adds over the years reach their family without a new line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sources.jma.parser.earthquake_info import read_earthquake_info
from sources.jma.parser.eew import read_eew
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.flood import read_flood
from sources.jma.parser.reading import Reading
from sources.jma.parser.seismic import read_seismic
from sources.jma.parser.special_warning_notice import read_special_warning_notice
from sources.jma.parser.tsunami import read_tsunami
from sources.jma.parser.typhoon import read_typhoon
from sources.jma.parser.volcano import read_volcano
from sources.jma.parser.warning_items import read_warning_items
from sources.jma.parser.weather_bulletin import read_weather_bulletin
from sources.jma.parser.weather_warnings import read_weather_warnings

__all__ = ["TITLES", "Family", "family_of"]

Reader = Callable[[Telegram], Reading]


@dataclass(frozen=True, slots=True)
class Family:
    """A Control/Title's data-type code (``""`` when it names several) and the reader of its Body."""

    kind: str
    read: Reader | None


TITLES: dict[str, Family] = {
    # 気象警報・注意報: the older copies and the R06 element telegrams (2026).
    "気象特別警報・警報・注意報": Family("VPWW53", read_weather_warnings),
    "気象警報・注意報（Ｈ２７）": Family("VPWW54", read_weather_warnings),
    "気象警報・注意報": Family("VPWW50", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（大雨）": Family("VPWW55", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（土砂災害）": Family("VPWW56", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（土砂）": Family("VPWW56", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（高潮）": Family("VPWW57", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（暴風）": Family("VPWW58", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（波浪）": Family("VPWW59", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（大雪）": Family("VPWW60", read_weather_warnings),
    "気象警報・注意報（Ｒ０６）（その他注意報）": Family("VPWW61", read_weather_warnings),
    "気象特別警報・警報・注意報…": Family("", read_weather_warnings),
    "気象警報・注意報…": Family("", read_weather_warnings),
    "気象特別警報報知": Family("VPNO50", read_special_warning_notice),
    "府県気象防災速報": Family("VPBS50", read_weather_bulletin),
    # Earthquakes.
    "震度速報": Family("VXSE51", read_seismic),
    "震源に関する情報": Family("VXSE52", read_seismic),
    "震源・震度に関する情報": Family("VXSE53", read_seismic),
    "顕著な地震の震源要素更新のお知らせ": Family("VXSE61", read_seismic),
    "緊急地震速報配信テスト": Family("VXSE42", None),
    "緊急地震速報（警報）": Family("VXSE43", read_eew),
    "緊急地震速報（予報）": Family("VXSE44", read_eew),
    "地震の活動状況等に関する情報": Family("VXSE56", None),
    "地震回数に関する情報": Family("VXSE60", None),
    "南海トラフ地震臨時情報": Family("VYSE50", read_earthquake_info),
    "南海トラフ地震関連解説情報": Family("VYSE51", read_earthquake_info),
    "北海道・三陸沖後発地震注意情報": Family("VYSE60", read_earthquake_info),
    # Tsunami.
    "津波警報・注意報・予報a": Family("VTSE41", read_tsunami),
    "津波情報a": Family("VTSE51", read_tsunami),
    "沖合の津波観測に関する情報": Family("VTSE52", read_tsunami),
    # Landslide, rain, tornado, rivers.
    "土砂災害警戒情報": Family("VXWW50", read_warning_items),
    "記録的短時間大雨情報": Family("VPOA50", read_warning_items),
    "竜巻注意情報": Family("VPHW50", read_warning_items),
    "竜巻注意情報（目撃情報付き）": Family("VPHW51", read_warning_items),
    "指定河川洪水予報": Family("VXKO", read_flood),
    # Volcanoes.
    "噴火警報・予報": Family("VFVO50", read_volcano),
    "噴火速報": Family("VFVO56", read_volcano),
    # Typhoons: VPTW60–65, the 2018 format JMA sends today; the retired
    # VPTW40/41/50/51 formats are in no line and stay Unsupported.
    "台風解析・予報情報（５日予報）（Ｈ３０）": Family("VPTW60", read_typhoon),
    "台風解析・予報情報…（Ｈ３０）": Family("", read_typhoon),
}

# The "…" keys as (beginning, end, family), longest beginning first.
_PATTERNS = sorted(
    ((key.partition("…")[0], key.partition("…")[2], family) for key, family in TITLES.items() if "…" in key),
    key=lambda pattern: -len(pattern[0]),
)


def family_of(control_title: str) -> Family | None:
    """The family of a Control/Title, None when the table does not know it."""
    family = TITLES.get(control_title)
    if family is not None:
        return family
    for start, end, family in _PATTERNS:
        if control_title.startswith(start) and control_title.endswith(end):
            return family
    return None
