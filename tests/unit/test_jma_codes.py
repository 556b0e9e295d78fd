"""Tests of the JMA area-code tables (sources/jma/codes.py) against the packaged CSVs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dispatcher.model import Area
from sources.jma.codes import TSUNAMI_CODE_TYPE, AreaCodes, default_codes

NUMAZU = "2220300"


@pytest.fixture(scope="module")
def codes() -> AreaCodes:
    return AreaCodes.load()


def test_version_and_names(codes: AreaCodes) -> None:
    assert codes.version == "jmaxml_20250306"
    assert codes.name(NUMAZU) == "沼津市"
    assert codes.name("220031") == "富士山南東"
    assert codes.name("220030") == "東部"
    assert codes.name("220000") == "静岡県"
    assert codes.name("9999999") is None


@pytest.mark.parametrize("code", ["220000", "220030", "220031", NUMAZU])
def test_every_level_contains_numazu(codes: AreaCodes, code: str) -> None:
    assert NUMAZU in codes.municipalities_for([code])


def test_levels_nest(codes: AreaCodes) -> None:
    pref = codes.municipalities_for(["220000"])
    east = codes.municipalities_for(["220030"])
    southeast = codes.municipalities_for(["220031"])
    assert southeast < east < pref
    assert "2220600" in southeast  # 三島市 shares 富士山南東 with 沼津市
    assert "2220500" not in east  # 熱海市 is in 伊豆, not 東部
    assert all(code.startswith("22") and len(code) == 7 for code in pref)


def test_unknown_codes_are_reported_not_raised(codes: AreaCodes) -> None:
    res = codes.resolve(["220031", "123456", "", "nonsense", "123456"])
    assert NUMAZU in res.municipalities
    assert res.unknown == ("123456", "", "nonsense")
    assert codes.unknown(["220031", "123456", "123456"]) == ("123456",)
    assert codes.unknown(["380", "999"], TSUNAMI_CODE_TYPE) == ("999",)


def test_tsunami_region_needs_its_code_type(codes: AreaCodes) -> None:
    assert codes.name("380", TSUNAMI_CODE_TYPE) == "静岡県"
    assert codes.tsunami_region_name("380") == "静岡県"
    res = codes.resolve(["380"], TSUNAMI_CODE_TYPE)
    assert NUMAZU in res.municipalities and res.unknown == ()
    # Without the code type a 3-digit code is ambiguous and stays unknown.
    assert codes.resolve(["380"]).unknown == ("380",)
    # 東京湾内湾 spans three prefectures.
    bay = codes.municipalities_for(["312"], TSUNAMI_CODE_TYPE)
    assert {c[:2] for c in bay} == {"12", "13", "14"}


def test_resolve_areas_uses_code_type(codes: AreaCodes) -> None:
    areas = [
        Area("静岡県", ("380",), details={"code_type": TSUNAMI_CODE_TYPE}),
        Area("東京都", ("130000",)),
    ]
    res = codes.resolve_areas(areas)
    assert NUMAZU in res.municipalities
    assert "1310100" in res.municipalities
    assert res.unknown == ()


def test_tsunami_table_covers_every_region_in_the_telegrams(codes: AreaCodes, shared_data: Path) -> None:
    from sources.jma.safexml import parse_xml

    seen: dict[str, str] = {}
    jma = shared_data / "jma"
    files = [*jma.rglob("*VTSE4*.xml"), *jma.rglob("*VTSE5*.xml"), *jma.rglob("*Tsunami*.xml")]
    assert files
    for path in files:
        root = parse_xml(path.read_bytes())
        for item in root.iterfind(".//{*}Forecast/{*}Item"):
            area = item.find("{*}Area")
            if area is not None:
                seen[area.findtext("{*}Code")] = area.findtext("{*}Name")
    assert len(seen) >= 60
    for code, name in seen.items():
        if code != "772":  # renamed 奄美諸島 → 奄美群島 between sample generations
            assert codes.name(code, TSUNAMI_CODE_TYPE) == name
        assert codes.municipalities_for([code], TSUNAMI_CODE_TYPE), code


def test_load_from_directory(tmp_path: Path) -> None:
    (tmp_path / "VERSION").write_text("test_1\n", encoding="utf-8")
    rows = {
        "prefcode.csv": [["prefcode", "prefname"], ["220000", "静岡県"]],
        "firstareacode.csv": [["firstareacode", "firstareaname"], ["220030", "東部"]],
        "matomeareacode.csv": [["matomeareacode", "matomeareaname"], ["220031", "富士山南東"]],
        "citycode.csv": [["citycode", "cityname"], [NUMAZU, "沼津市"]],
        "jmacode.csv": [
            ["citycode", "cityname", "matomeareacode", "firstareacode", "prefcode"],
            [NUMAZU, "沼津市", "220031", "220030", "220000"],
        ],
    }
    for name, table in rows.items():
        with (tmp_path / name).open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows(table)
    codes = AreaCodes.load(tmp_path)
    assert codes.version == "test_1"
    assert codes.municipalities_for(["220000"]) == frozenset({NUMAZU})
    assert codes.resolve(["380"], TSUNAMI_CODE_TYPE).unknown == ("380",)


def test_default_codes_is_cached() -> None:
    assert default_codes() is default_codes()
