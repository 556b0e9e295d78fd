"""JMA area-code tables, loaded from versioned CSV data in ``config/jma/``.

JMA addresses weather warnings to 市町村等 (7-digit codes such as ``2220300``
沼津市) and to the areas that group them: まとめ地域 (``220031`` 富士山南東),
一次細分 (``220030`` 東部) and 府県予報区 (``220000`` 静岡県). Seismic
telegrams name municipalities with the same 7-digit codes; tsunami telegrams use
3-digit 津波予報区 codes (``380`` 静岡県) from ``tsunami_regions.csv``, and
seismic telegrams and 緊急地震速報 3-digit 地震情報／細分区域 codes (``441``
静岡県東部), mapped to municipalities by JMA's own table
(``AreaInformationCity_quake.csv``: 市町村等（地震津波関係） → 細分区域, with the
names in ``AreaForecastLocalE.csv``) joined with ``seismic_areas.csv``
(derived from real telegrams by :mod:`sources.jma.tables`). 緊急地震速報 also
names 4-digit 緊急地震速報／府県予報区 codes (``9220`` 静岡, names in
``AreaForecastLocalEEW.csv``), whose digits 2–3 are the prefecture: they
resolve to every municipality of that prefecture (over-including the split
ones such as 9011 北海道道央, the safe direction). VTSE52's 沿岸地域 codes are
津波予報区 codes and resolve through the tsunami table.

A 7-digit 市町村等 code is the 5-digit 全国地方公共団体コード (without check
digit) plus two digits that split some municipalities for warnings
(``2210001`` 静岡市南部, ``2210002`` 静岡市北部). Seismic telegrams name the
undivided municipality (``0720300`` 郡山市) and the wards of designated cities
(``2210100`` 静岡市葵区); both resolve to the weather table's parts of that
municipality. Wards and designated cities are exactly the ``PP1xx`` block of
the local-government codes, so a ward ``PP1xy`` belongs to the nearest
designated city at or below it that the table knows (``22101`` → ``22100``).
A ward spanning both parts of a split city reaches both: over-including within
the city is the safe direction.

Codes come from 気象庁「XML個別コード表」 (https://xml.kishou.go.jp/tec_material.html),
出典：気象庁; see ``config/jma/README.md`` for provenance and the version policy.
Municipalities merge, so the tables carry a ``version``; unknown codes are
reported, never raised.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Protocol

__all__ = [
    "CITY_CODE_TYPE",
    "COAST_CODE_TYPE",
    "EEW_AREA_CODE_TYPE",
    "FORECAST_CODE_TYPE",
    "SEISMIC_AREA_CODE_TYPE",
    "TSUNAMI_CODE_TYPE",
    "AreaCodes",
    "Resolution",
    "default_codes",
]

# codeType attribute values used in telegrams and in Area.details["code_type"].
TSUNAMI_CODE_TYPE = "津波予報区"
CITY_CODE_TYPE = "気象・地震・火山情報／市町村等"
FORECAST_CODE_TYPE = "気象情報／府県予報区・細分区域等"
SEISMIC_AREA_CODE_TYPE = "地震情報／細分区域"
EEW_AREA_CODE_TYPE = "緊急地震速報／府県予報区"
# VTSE52 Estimation/Item/Area: 沿岸地域 codes are 津波予報区 codes.
COAST_CODE_TYPE = "沿岸地域"
_TSUNAMI_TYPES = frozenset({TSUNAMI_CODE_TYPE, COAST_CODE_TYPE})


class _HasCodesAndDetails(Protocol):
    @property
    def codes(self) -> tuple[str, ...]: ...

    @property
    def details(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class Resolution:
    """Municipalities (7-digit 市町村等 codes) inside some codes, and the codes not understood."""

    municipalities: frozenset[str]
    unknown: tuple[str, ...] = ()


def _read_csv(base: Traversable, name: str) -> list[dict[str, str]]:
    text = (base / name).read_text(encoding="utf-8")
    lines = [line for line in io.StringIO(text) if not line.startswith("#")]
    return list(csv.DictReader(lines))


class AreaCodes:
    """Names and containment of JMA area codes, for one version of the tables."""

    def __init__(
        self,
        *,
        version: str,
        names: Mapping[str, str],
        members: Mapping[str, frozenset[str]],
        tsunami_names: Mapping[str, str],
        tsunami_members: Mapping[str, frozenset[str]],
        seismic_names: Mapping[str, str] | None = None,
        seismic_members: Mapping[str, frozenset[str]] | None = None,
        eew_names: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version
        self._names = dict(names)
        self._members = dict(members)
        self._tsunami_names = dict(tsunami_names)
        self._tsunami_members = dict(tsunami_members)
        self._seismic_names = dict(seismic_names or {})
        self._seismic_members = dict(seismic_members or {})
        self._eew_names = dict(eew_names or {})
        self._eew_members: dict[str, frozenset[str]] = {}
        # 5-digit municipality → its 7-digit 市町村等 entries (one, or the parts of a split one).
        self._parts: dict[str, set[str]] = {}
        self._inferred: dict[str, frozenset[str] | None] = {}
        for code, cities in self._members.items():
            if len(code) == 7 and cities == {code}:
                self._parts.setdefault(code[:5], set()).add(code)
        # The undivided code of a split municipality (0720300 郡山市) stands for all its parts.
        for code, parts in self._parts.items():
            whole = code + "00"
            if whole not in self._members:
                self._members[whole] = frozenset(parts)
        by_prefecture: dict[str, set[str]] = {}
        for code, cities in self._members.items():
            if len(code) == 7 and cities == {code}:
                by_prefecture.setdefault(code[:2], set()).add(code)
        for code in self._eew_names:
            self._eew_members[code] = frozenset(by_prefecture.get(code[1:3], ()))

    def municipality_parts(self, code: str) -> frozenset[str] | None:
        """The table's 市町村等 entries for a 7-digit code, inferring wards and split municipalities."""
        if len(code) != 7 or not code.isdigit():
            return None
        found = self._members.get(code)
        if found is not None:
            return found
        if code in self._inferred:
            return self._inferred[code]
        base = code[:5]
        if base[2] == "1":  # PP1xx: a designated city or one of its wards
            for candidate in range(int(base), int(base[:2] + "100") - 1, -1):
                parts = self._parts.get(f"{candidate:05d}")
                if parts:
                    found = frozenset(parts)
                    break
        # A VXSE53 names ~1,000 municipalities; remember answers (bounded: input is hostile).
        if len(self._inferred) < 20_000:
            self._inferred[code] = found
        return found

    @classmethod
    def load(cls, directory: str | Path | Traversable | None = None) -> AreaCodes:
        """Load the tables from ``directory`` (default: the packaged ``config/jma``)."""
        if directory is None:
            base: Traversable = resources.files("config") / "jma"
        elif isinstance(directory, str | Path):
            base = Path(directory)
        else:
            base = directory
        version_file = base / "VERSION"
        version = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else ""

        names: dict[str, str] = {}
        members: dict[str, set[str]] = {}
        for file, code_col, name_col in (
            ("prefcode.csv", "prefcode", "prefname"),
            ("firstareacode.csv", "firstareacode", "firstareaname"),
            ("matomeareacode.csv", "matomeareacode", "matomeareaname"),
            ("citycode.csv", "citycode", "cityname"),
        ):
            for row in _read_csv(base, file):
                names[row[code_col]] = row[name_col]
        by_prefecture: dict[str, set[str]] = {}
        for row in _read_csv(base, "jmacode.csv"):
            city = row["citycode"]
            names.setdefault(city, row["cityname"])
            members.setdefault(city, set()).add(city)
            # In Hokkaido and Okinawa a 府県予報区 and its 一次細分 share a code;
            # the union is still the right set of municipalities.
            for col in ("matomeareacode", "firstareacode", "prefcode"):
                members.setdefault(row[col], set()).add(city)
            by_prefecture.setdefault(city[:2], set()).add(city)

        seismic_names: dict[str, str] = {}
        seismic_cities: dict[str, set[str]] = {}
        if (base / "seismic_areas.csv").is_file():
            for row in _read_csv(base, "seismic_areas.csv"):
                seismic_names[row["code"]] = row["name"]
                seismic_cities.setdefault(row["code"], set()).add(row["citycode"])
        # JMA's own tables win for names and add the municipalities no telegram named.
        if (base / "AreaForecastLocalE.csv").is_file():
            for row in _read_csv(base, "AreaForecastLocalE.csv"):
                seismic_names[row["code"]] = row["name"]
        if (base / "AreaInformationCity_quake.csv").is_file():
            for row in _read_csv(base, "AreaInformationCity_quake.csv"):
                seismic_cities.setdefault(row["areacode"], set()).add(row["citycode"])
        eew_names: dict[str, str] = {}
        if (base / "AreaForecastLocalEEW.csv").is_file():
            for row in _read_csv(base, "AreaForecastLocalEEW.csv"):
                eew_names[row["code"]] = row["name"]

        tsunami_names: dict[str, str] = {}
        tsunami_members: dict[str, frozenset[str]] = {}
        if (base / "tsunami_regions.csv").is_file():
            for row in _read_csv(base, "tsunami_regions.csv"):
                tsunami_names[row["code"]] = row["name"]
                cities: set[str] = set()
                for pref in row["prefectures"].split():
                    cities |= by_prefecture.get(pref, set())
                tsunami_members[row["code"]] = frozenset(cities)
        table = cls(
            version=version,
            names=names,
            members={code: frozenset(cities) for code, cities in members.items()},
            tsunami_names=tsunami_names,
            tsunami_members=tsunami_members,
            seismic_names=seismic_names,
            eew_names=eew_names,
        )
        # Municipalities the telegrams named that have since merged away resolve to nothing.
        for code, cities in seismic_cities.items():
            found: set[str] = set()
            for city in cities:
                found |= table.municipality_parts(city) or set()
            table._seismic_members[code] = frozenset(found)
        return table

    def name(self, code: str, code_type: str | None = None) -> str | None:
        """The JMA name of ``code`` (forecast areas, 市町村等; 津波予報区 with its code type)."""
        if code_type in _TSUNAMI_TYPES:
            return self._tsunami_names.get(code)
        if code_type == SEISMIC_AREA_CODE_TYPE:
            return self._seismic_names.get(code)
        if code_type == EEW_AREA_CODE_TYPE:
            return self._eew_names.get(code)
        return self._names.get(code)

    def tsunami_region_name(self, code: str) -> str | None:
        """The name of a 3-digit 津波予報区 code."""
        return self._tsunami_names.get(code)

    def resolve(self, codes: Iterable[str], code_type: str | None = None) -> Resolution:
        """Expand codes to 7-digit 市町村等 codes; report codes not in the tables.

        6- and 7-digit codes are forecast areas and municipalities (wards and
        split municipalities inferred, see the module docstring). 3-digit codes
        are ambiguous (津波予報区 ``390`` 愛知県外海 vs 地震情報細分区域 ``390``
        石川県能登), so they resolve only with ``code_type`` ``TSUNAMI_CODE_TYPE``
        (or ``COAST_CODE_TYPE``) or ``SEISMIC_AREA_CODE_TYPE``; 4-digit
        緊急地震速報／府県予報区 codes with ``EEW_AREA_CODE_TYPE``.
        """
        found: set[str] = set()
        unknown: list[str] = []
        for code in codes:
            cities = self._lookup(code, code_type)
            if cities is None:
                unknown.append(code)
            else:
                found |= cities
        return Resolution(frozenset(found), tuple(dict.fromkeys(unknown)))

    def _lookup(self, code: str, code_type: str | None) -> frozenset[str] | None:
        if code_type in _TSUNAMI_TYPES:
            return self._tsunami_members.get(code)
        if code_type == SEISMIC_AREA_CODE_TYPE:
            return self._seismic_members.get(code)
        if code_type == EEW_AREA_CODE_TYPE:
            return self._eew_members.get(code)
        found = self._members.get(code)
        return found if found is not None else self.municipality_parts(code)

    def unknown(self, codes: Iterable[str], code_type: str | None = None) -> tuple[str, ...]:
        """The codes ``resolve`` would report unknown, without building the municipality set."""
        # Same answers as ``_lookup`` (table values are never None), with the
        # code-type dispatch done once: a VXSE53 checks ~1,300 codes per telegram.
        tables = {SEISMIC_AREA_CODE_TYPE: self._seismic_members, EEW_AREA_CODE_TYPE: self._eew_members}
        table = self._tsunami_members if code_type in _TSUNAMI_TYPES else tables.get(code_type or "")
        if table is not None:
            return tuple(dict.fromkeys(code for code in codes if code not in table))
        members, parts = self._members, self.municipality_parts
        return tuple(dict.fromkeys(code for code in codes if code not in members and parts(code) is None))

    def municipalities_for(self, codes: Iterable[str], code_type: str | None = None) -> frozenset[str]:
        """The 7-digit 市町村等 codes inside ``codes`` (unknown codes ignored)."""
        return self.resolve(codes, code_type).municipalities

    def resolve_areas(self, areas: Iterable[_HasCodesAndDetails]) -> Resolution:
        """Resolve ``dispatcher.model.Area`` objects, honouring ``details["code_type"]``."""
        found: set[str] = set()
        unknown: list[str] = []
        for area in areas:
            res = self.resolve(area.codes, area.details.get("code_type"))
            found |= res.municipalities
            unknown.extend(res.unknown)
        return Resolution(frozenset(found), tuple(dict.fromkeys(unknown)))


_default: AreaCodes | None = None


def default_codes() -> AreaCodes:
    """The packaged tables, loaded once per process."""
    global _default  # a lazily filled module cache
    if _default is None:
        _default = AreaCodes.load()
    return _default
