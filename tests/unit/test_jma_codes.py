"""Tests of the JMA area-code tables (sources/jma/codes.py) against the packaged CSVs."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest

from dispatcher.model import Area
from sources.jma import tables
from sources.jma.codes import EEW_AREA_CODE_TYPE, SEISMIC_AREA_CODE_TYPE, TSUNAMI_CODE_TYPE, AreaCodes, default_codes
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed

NUMAZU = "2220300"
CONFIG = Path(__file__).resolve().parents[2] / "config" / "jma"


def _rows(name: str) -> list[dict[str, str]]:
    lines = [line for line in (CONFIG / name).read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


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
    from sources.safexml import parse_xml

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


def test_wards_of_designated_cities_resolve_to_their_city(codes: AreaCodes) -> None:
    # 静岡市 is split in two for warnings; each ward reaches both halves.
    assert codes.resolve(["2210100", "2210200", "2210300"]).municipalities == {"2210001", "2210002"}
    assert codes.resolve(["2213700"]).municipalities == codes.resolve(["2213000"]).municipalities  # 浜松天竜区
    assert codes.resolve(["2311600"]).municipalities == {"2310000"}  # 名古屋天白区 → 名古屋市
    assert codes.resolve(["0111000"]).municipalities == {"0110000"}  # 札幌手稲区 → 札幌市
    # The undivided code of a split municipality stands for all its parts.
    assert codes.resolve(["0720300"]).municipalities == {"0720301", "0720302"}  # 郡山市
    # Not a ward block (PP2xx): a merged-away town stays unknown rather than guessed.
    assert codes.resolve(["2236100"]).unknown == ("2236100",)  # 芝川町, now part of 富士宮市


def test_seismic_areas_resolve_with_their_code_type(codes: AreaCodes) -> None:
    east = codes.resolve(["441"], SEISMIC_AREA_CODE_TYPE)
    assert NUMAZU in east.municipalities and not east.unknown
    assert codes.name("441", SEISMIC_AREA_CODE_TYPE) == "静岡県東部"
    # 442 静岡県中部 lists 静岡市's wards: the weather table's halves of the city.
    assert {"2210001", "2210002"} <= codes.resolve(["442"], SEISMIC_AREA_CODE_TYPE).municipalities
    assert NUMAZU not in codes.resolve(["442"], SEISMIC_AREA_CODE_TYPE).municipalities
    # Without the code type a 3-digit code is not a seismic area.
    assert codes.resolve(["441"]).unknown == ("441",)


def test_shindo_report_naming_shizuoka_east_reaches_numazu(codes: AreaCodes, shared_data: Path) -> None:
    outcome = parse_telegram((shared_data / "jma/live_noto2024/IntensityReportL.xml").read_bytes(), url="x_VXSE51.xml")
    assert isinstance(outcome, Parsed) and "441" in outcome.alert.area_codes
    res = codes.resolve_areas(outcome.alert.areas)
    assert NUMAZU in res.municipalities and res.unknown == ()


def test_seismic_area_table_is_what_the_telegrams_say(shared_data: Path) -> None:
    """The packaged table is exactly what sources.jma.tables derives from the data set."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tables.main([str(shared_data / "jma")]) == 0
    packaged = (Path(__file__).resolve().parents[2] / "config/jma/seismic_areas.csv").read_text(encoding="utf-8")
    assert out.getvalue() == packaged


# ------------------------------------------------------------ JMA's own seismic tables (issue 11 item 6)


def test_eew_areas_unknown_before_now_resolve(codes: AreaCodes) -> None:
    # 緊急地震速報 names 地震情報／細分区域 codes; 750, 752 and 702 were unknown with the inferred table.
    for code, name, city in (
        ("750", "大分県北部", "4420300"),
        ("752", "大分県南部", "4420500"),
        ("702", "山口県西部", "3520100"),
    ):
        resolution = codes.resolve([code], SEISMIC_AREA_CODE_TYPE)
        assert resolution.unknown == () and city in resolution.municipalities, code
        assert codes.name(code, SEISMIC_AREA_CODE_TYPE) == name


def test_every_seismic_area_has_municipalities(codes: AreaCodes) -> None:
    table = _rows("AreaForecastLocalE.csv")
    assert len(table) == 188
    for row in table:
        assert codes.municipalities_for([row["code"]], SEISMIC_AREA_CODE_TYPE), row
    east = codes.municipalities_for(["441"], SEISMIC_AREA_CODE_TYPE)
    assert {"2220300", "2220600", "2221500", "2234100", "2234200", "2234400"} <= east  # 沼津 三島 御殿場 清水 長泉 小山


def test_jma_table_agrees_with_every_telegram(codes: AreaCodes) -> None:
    # The pairs real telegrams nested (seismic_areas.csv) are all in JMA's table, bar merged-away towns.
    jma = {row["citycode"]: row["areacode"] for row in _rows("AreaInformationCity_quake.csv")}
    assert len(jma) == 1894
    conflicts = [
        (row["code"], row["citycode"])
        for row in _rows("seismic_areas.csv")
        if jma.get(row["citycode"], row["code"]) != row["code"]
    ]
    assert conflicts == []
    for city in jma:
        assert codes.municipality_parts(city), city  # every listed town or ward is in the weather table


def test_eew_prefecture_codes(codes: AreaCodes) -> None:
    assert codes.name("9220", EEW_AREA_CODE_TYPE) == "静岡"
    assert "2220300" in codes.municipalities_for(["9220"], EEW_AREA_CODE_TYPE)
    assert codes.unknown(["9220", "9999"], EEW_AREA_CODE_TYPE) == ("9999",)
    assert len(_rows("AreaForecastLocalEEW.csv")) == 56


def test_no_eew_or_seismic_area_of_the_samples_is_unknown(shared_data: Path, codes: AreaCodes) -> None:
    jma = shared_data / "jma"
    files = [*jma.glob("official_samples/*VXSE4*.xml"), *jma.glob("live_*/*VXSE4*.xml"), *jma.glob("*/*VXSE51*.xml")]
    assert files
    for path in files:
        outcome = parse_telegram(path.read_bytes(), codes=codes)
        if isinstance(outcome, Parsed):
            assert "unknown_area_codes" not in outcome.alert.details, (path.name, outcome.alert.details)
