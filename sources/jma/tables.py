"""Derive ``config/jma/seismic_areas.csv`` from real JMA seismic telegrams.

JMA's own table from 地震情報／細分区域 (3-digit seismic areas such as ``441``
静岡県東部) to municipalities now ships as ``config/jma/AreaInformationCity_quake.csv``
(see the README); this derivation is kept as an independent cross-check of it
and for towns merged away since. Every 震源・震度に関する情報 (VXSE53) nests each
``City`` under its seismic ``Area`` in ``Body/Intensity/Observation/Pref/Area/City``;
the union of those pairs over real telegrams is an honest, if incomplete, table:
a municipality appears only once some telegram listed it. Run::

    python -m sources.jma.tables ../shared/data/jma > config/jma/seismic_areas.csv

Format reference: https://xml.kishou.go.jp/ (地震火山関連XML電文解説資料).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from sources.safexml import MalformedXmlError, UnsafeXmlError, parse_xml

__all__ = ["derive_seismic_areas", "main"]

_SEIS = "{http://xml.kishou.go.jp/jmaxml1/body/seismology1/}"
_HEAD = "{http://xml.kishou.go.jp/jmaxml1/informationBasis1/}"


def _text(el: object, tag: str) -> str:
    child = el.find(tag)  # type: ignore[attr-defined]
    return (child.text or "").strip() if child is not None else ""


def derive_seismic_areas(files: Iterable[Path]) -> tuple[dict[tuple[str, str], set[tuple[str, str]]], list[str]]:
    """(area code, area name) → {(city code, city name)}, and the files that contributed."""
    pairs: dict[tuple[str, str], set[tuple[str, str]]] = {}
    used: list[str] = []
    for path in files:
        try:
            root = parse_xml(path.read_bytes())
        except (UnsafeXmlError, MalformedXmlError, OSError):
            continue
        status = root.findtext("{http://xml.kishou.go.jp/jmaxml1/}Control/{http://xml.kishou.go.jp/jmaxml1/}Status")
        if (status or "").strip() != "通常":
            continue  # 訓練/試験 telegrams may name made-up places
        found = False
        for area in root.iterfind(f".//{_SEIS}Observation/{_SEIS}Pref/{_SEIS}Area"):
            key = (_text(area, f"{_SEIS}Code"), _text(area, f"{_SEIS}Name"))
            for city in area.iterfind(f"{_SEIS}City"):
                code, name = _text(city, f"{_SEIS}Code"), _text(city, f"{_SEIS}Name")
                if key[0] and code:
                    pairs.setdefault(key, set()).add((code, name))
                    found = True
        if found:
            used.append(path.name)
    return pairs, used


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m sources.jma.tables SHARED_DATA_JMA_DIR", file=sys.stderr)
        return 2
    root = Path(args[0])
    files = sorted(p for p in root.rglob("*.xml") if "schema" not in p.parts)
    pairs, used = derive_seismic_areas(files)
    out = io.StringIO()
    out.write("# 地震情報／細分区域 (seismic area) → 市町村等 (municipality), 出典：気象庁.\n")
    out.write(f"# Derived by sources/jma/tables.py from the Area/City nesting of {len(used)} JMA seismic\n")
    out.write("# telegrams (VXSE53) in shared/data/jma: live ones, and official samples whose events\n")
    out.write("# are fictitious but whose area and municipality codes are JMA's own. Incomplete: a\n")
    out.write("# municipality is listed only if some telegram named it under its area. See README.md.\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["code", "name", "citycode", "cityname"])
    for (code, name), cities in sorted(pairs.items()):
        for city_code, city_name in sorted(cities):
            writer.writerow([code, name, city_code, city_name])
    sys.stdout.write(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
