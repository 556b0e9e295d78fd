"""Tests of the JMA telegram parser (sources/jma/parser.py) on real JMA telegrams.

Every assertion is on a field a resident would read or the dispatcher routes by:
event, severity/priority, headline, the areas (沼津市 2220300 where present).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.model import Alert, MsgType, Priority, Severity, Status, Urgency
from sources.jma import (
    TSUNAMI_CODE_TYPE,
    AreaCodes,
    kind_from_name,
    parse_telegram,
)
from sources.jma.cli import parse_files
from sources.outcome import Failed, Parsed, Unsupported

NUMAZU = "2220300"


@pytest.fixture(scope="module")
def codes() -> AreaCodes:
    return AreaCodes.load()


def _read(shared_data: Path, rel: str) -> bytes:
    return (shared_data / "jma" / rel).read_bytes()


def _alert(shared_data: Path, rel: str) -> Alert:
    outcome = parse_telegram(_read(shared_data, rel), url=Path(rel).name)
    assert isinstance(outcome, Parsed), outcome
    return outcome.alert


def _area(alert: Alert, code: str) -> dict[str, str]:
    for area in alert.areas:
        if code in area.codes:
            return dict(area.details)
    raise AssertionError(f"{code} not in {alert.area_codes}")


def _telegrams(shared_data: Path) -> list[Path]:
    jma = shared_data / "jma"
    return sorted(
        p for sub in ("official_samples", "live_p2pquake", "live_noto2024") for p in (jma / sub).glob("*.xml")
    )


# ------------------------------------------------------------ every file


def test_every_telegram_parses_or_is_unsupported(shared_data: Path, codes: AreaCodes) -> None:
    files = _telegrams(shared_data)
    assert len(files) > 390
    counts = {"Parsed": 0, "Unsupported": 0, "Failed": 0}
    for path in files:
        outcome = parse_telegram(path.read_bytes(), url=path.name, codes=codes)
        counts[type(outcome).__name__] += 1
        if path.name.startswith("eqvol_feed_"):
            assert isinstance(outcome, Unsupported | Failed), path
            continue
        assert not isinstance(outcome, Failed), (path, outcome)
        if isinstance(outcome, Parsed):
            alert = outcome.alert
            assert alert.source == "jma"
            assert alert.sent.tzinfo is not None
            assert alert.identifier.startswith("jma-")
            assert alert.series_key and alert.event and alert.headline
            assert alert.original_url == path.name
        else:
            assert outcome.title and outcome.series_key
    assert counts["Parsed"] > 200


def test_feed_is_not_a_telegram(shared_data: Path) -> None:
    (feed,) = (shared_data / "jma/live_noto2024").glob("eqvol_feed_*.xml")
    outcome = parse_telegram(feed.read_bytes(), url=feed.name)
    assert isinstance(outcome, Unsupported)
    assert outcome.kind == "feed"
    assert "not a JMA Report" in outcome.reason


def test_identifiers_are_stable_and_distinct(shared_data: Path) -> None:
    data = _read(shared_data, "live_noto2024/WInfoL.xml")
    first = parse_telegram(data)
    again = parse_telegram(data, url="elsewhere.xml")
    assert isinstance(first, Parsed) and isinstance(again, Parsed)
    assert first.alert.identifier == again.alert.identifier
    # 33 緊急地震速報（予報） of one quake: one series, 33 distinct alerts.
    eew = [_alert(shared_data, f"official_samples/36_01_{n:02d}_240613_VXSE44.xml") for n in range(1, 34)]
    assert len({a.identifier for a in eew}) == 33
    assert len({a.series_key for a in eew}) == 1


# ------------------------------------------------------------ warnings


def test_vpww54_special_warning(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/15_13_01_161226_VPWW54.xml")
    assert alert.kind == "VPWW54"
    assert alert.event == "大雨特別警報"
    assert alert.severity is Severity.EXTREME
    assert alert.priority is Priority.CRITICAL
    assert alert.status is Status.ACTUAL
    assert alert.msg_type is MsgType.ALERT
    assert alert.sender == "気象庁本庁"
    assert alert.sent == datetime.fromisoformat("2016-12-13T20:45:00+09:00")
    assert alert.headline.startswith("【特別警報（大雨、暴風、波浪、高潮）】小笠原諸島に特別警報")
    assert alert.series_key == "気象警報・注意報（Ｈ２７）|気象庁本庁|通常"
    assert alert.references == ()
    chiyoda = _area(alert, "1310100")
    assert chiyoda["warnings"] == "暴風警報"
    ogasawara = next(a for a in alert.areas if a.description == "小笠原村")
    assert "大雨特別警報" in ogasawara.details["warnings"]
    assert "大雨特別警報" in alert.details["warnings_in_force"]


def test_vpww53_lifting(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/15_08_05_130412_VPWW53.xml")
    assert alert.headline.startswith("【特別警報解除】奈良県の特別警報を解除しました。")
    assert alert.event == "警報・注意報解除"
    assert alert.priority is Priority.NORMAL
    assert "lifted" in _area(alert, "2920100")


def test_2026_level4_danger_warning(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/15_16_03_241226_VPWW55.xml")
    assert alert.event == "レベル４大雨危険警報"
    assert alert.severity is Severity.SEVERE
    # 警戒レベル４ (evacuate) sorts before レベル３ (issue 11 item 2): was HIGH like any 警報.
    assert alert.details["level"] == 4
    assert alert.priority is Priority.CRITICAL


def test_unknown_new_title_is_unsupported_but_rated(shared_data: Path) -> None:
    data = _read(shared_data, "official_samples/15_16_03_241226_VPWW55.xml")
    data = data.replace(
        "<Title>気象警報・注意報（Ｒ０６）（大雨）</Title>".encode(),
        "<Title>レベル４大雨危険警報（Ｒ０８）</Title>".encode(),
    )
    data = data.replace(
        "<Title>宗谷地方大雨警報・注意報</Title>".encode(), "<Title>宗谷地方レベル４大雨危険警報</Title>".encode()
    )
    outcome = parse_telegram(data)
    assert isinstance(outcome, Unsupported)
    assert outcome.title == "レベル４大雨危険警報（Ｒ０８）"
    assert outcome.rating.priority is Priority.CRITICAL  # its 警戒レベル４, as for a known type


def test_warning_with_codes_reports_unknown_municipalities(shared_data: Path, codes: AreaCodes) -> None:
    # 4030500 (筑穂町) merged into 飯塚市 in 2006: reported, not raised.
    outcome = parse_telegram(_read(shared_data, "official_samples/15_01_02_160628_VPWW50.xml"), codes=codes)
    assert isinstance(outcome, Parsed)
    assert outcome.alert.details["unknown_area_codes"] == ["4030500"]
    assert outcome.alert.details["area_codes_version"] == codes.version


# ------------------------------------------------------------ seismic


def test_vxse53_noto_names_numazu(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_noto2024/WInfoL.xml")
    assert alert.kind == "VXSE53"
    assert alert.event == "震源・震度情報"
    assert alert.headline == "１日１６時１０分ころ、地震がありました。"
    assert alert.severity is Severity.EXTREME
    assert alert.priority is Priority.HIGH
    assert alert.series_key == "震源・震度に関する情報|気象庁本庁|通常|20240101161010"
    numazu = _area(alert, NUMAZU)
    assert numazu["intensity"] == "3"
    assert numazu["area"] == "静岡県東部"
    assert _area(alert, "1738400")["intensity"] == "7"  # 志賀町
    d = alert.details
    assert d["max_intensity"] == "7"
    assert d["magnitude"] == "7.6"
    assert d["hypocenter"] == "石川県能登地方"
    assert (d["latitude"], d["longitude"], d["depth_km"]) == (37.5, 137.2, 0.0)
    assert "津波警報等" in alert.description


def test_vxse53_official_sample_names_numazu(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/32-35_06_05_240613_VXSE53.xml")
    assert _area(alert, NUMAZU)["intensity"] == "2"
    assert alert.priority is Priority.HIGH  # max intensity 6強


def test_small_quake_is_normal_priority(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_p2pquake/20210216071046_0_VXSE53_270000.xml")
    assert alert.priority is Priority.NORMAL
    assert alert.severity is Severity.MINOR


def test_vxse51_intensity_report(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_noto2024/IntensityReportL.xml")
    assert alert.kind == "VXSE51"
    assert alert.event == "震度速報"
    assert alert.priority is Priority.HIGH
    east = _area(alert, "441")
    assert east == {"code_type": "地震情報／細分区域", "intensity": "3", "pref": "静岡県"}


def test_vxse52_hypocentre(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_p2pquake/20210217140847_0_VXSE52_010000.xml")
    assert alert.event == "震源に関する情報"
    assert alert.details["magnitude"] == "4.5"
    assert alert.details["hypocenter"] == "福島県沖"
    assert alert.details["depth_km"] == 50.0
    assert "津波の心配はありません" in alert.description
    assert alert.areas == ()


def test_cancel_chain_keeps_the_series(shared_data: Path) -> None:
    chain = [
        _alert(shared_data, f"official_samples/32-35_06_0{n}_{v}_VXSE53.xml")
        for n, v in ((3, "240613"), (4, "240613"), (5, "240613"), (6, "100915"))
    ]
    assert len({a.series_key for a in chain}) == 1
    assert [a.msg_type for a in chain] == [MsgType.ALERT] * 3 + [MsgType.CANCEL]
    cancel = chain[-1]
    assert cancel.references == (cancel.series_key,)
    assert cancel.sent > chain[-2].sent
    assert cancel.areas == ()
    assert "取り消します" in cancel.headline


def test_correction_references_the_series(shared_data: Path) -> None:
    data = _read(shared_data, "live_noto2024/WInfoL.xml")
    corrected = parse_telegram(data.replace("<InfoType>発表</InfoType>".encode(), "<InfoType>訂正</InfoType>".encode()))
    original = parse_telegram(data)
    assert isinstance(corrected, Parsed) and isinstance(original, Parsed)
    assert corrected.alert.msg_type is MsgType.UPDATE
    assert corrected.alert.series_key == original.alert.series_key
    assert corrected.alert.references == (original.alert.series_key,)
    assert corrected.alert.identifier != original.alert.identifier


@pytest.mark.parametrize(
    ("jma", "status"),
    [("訓練", Status.EXERCISE), ("試験", Status.TEST), ("謎", Status.TEST)],
)
def test_exercise_and_test_are_fenced(shared_data: Path, jma: str, status: Status) -> None:
    data = _read(shared_data, "live_noto2024/WInfoL.xml")
    data = data.replace("<Status>通常</Status>".encode(), f"<Status>{jma}</Status>".encode())
    outcome = parse_telegram(data)
    assert isinstance(outcome, Parsed)
    assert outcome.alert.status is status
    assert not outcome.alert.is_public
    assert outcome.alert.series_key.endswith(f"|{jma}|20240101161010")


def test_eew_warning(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_p2pquake/20240116184225_02245216_VXSE43.xml")
    assert alert.event == "緊急地震速報（警報）"
    assert alert.priority is Priority.CRITICAL
    assert alert.headline == "能登半島沖で地震　北陸で強い揺れ"
    noto = _area(alert, "390")
    assert noto["category"] == "緊急地震速報（警報）"
    assert (noto["intensity_from"], noto["intensity_to"]) == ("4", "5-")


# ------------------------------------------------------------ tsunami


def test_noto_major_tsunami_warning_then_lifting(shared_data: Path, codes: AreaCodes) -> None:
    warning = _alert(shared_data, "live_noto2024/TsunamiAlarm.xml")
    lifting = _alert(shared_data, "live_noto2024/canceledTsunamiAlarm.xml")
    assert warning.kind == lifting.kind == "VTSE41"
    assert warning.event == "大津波警報"
    assert warning.severity is Severity.EXTREME
    assert warning.priority is Priority.CRITICAL
    assert "ただちに避難してください" in warning.headline
    noto = _area(warning, "360")
    assert noto["category"] == "大津波警報"
    assert noto["max_height"] == "５ｍ"
    assert _area(warning, "240")["first_arrival"] == "2024-01-01T16:40:00+09:00"
    assert warning.details["max_category"] == "大津波警報"
    assert warning.details["tsunami_categories"]["大津波警報"] == ["石川県能登"]

    # The lifting is an ordinary 発表 whose Head/Title is 津波予報, same series.
    assert lifting.details["head_title"] == "津波予報"
    assert lifting.msg_type is MsgType.ALERT
    assert lifting.series_key == warning.series_key
    assert lifting.sent > warning.sent
    # A lifting says it is one (issue 11 item 4): was the event 津波予報.
    assert lifting.event == "津波注意報解除"
    assert lifting.priority is Priority.NORMAL
    assert lifting.severity is Severity.MINOR
    assert lifting.urgency is Urgency.PAST
    assert lifting.details["lifted"] == ["津波注意報"]
    assert lifting.headline == "津波注意報を解除しました。"
    assert _area(lifting, "360")["lifted"] == "津波注意報"
    assert lifting.expires == datetime.fromisoformat("2024-01-02T17:00:00+09:00")
    # Tsunami regions resolve to municipalities through their code type.
    assert "1720400" in codes.resolve_areas(warning.areas).municipalities  # 輪島市


def test_tsunami_advisory_2023_and_shizuoka(shared_data: Path, codes: AreaCodes) -> None:
    advisory = _alert(shared_data, "live_p2pquake/20231009064018_06274659_VTSE41.xml")
    assert advisory.event == "津波注意報"
    assert _area(advisory, "320")["max_height"] == "１ｍ"
    lifting = _alert(shared_data, "live_p2pquake/20231009120003_08446949_VTSE41.xml")
    assert lifting.event == "津波注意報解除"  # was 津波予報 (issue 11 item 4)
    shizuoka = next(a for a in lifting.areas if a.codes == ("380",))
    assert shizuoka.details["code_type"] == TSUNAMI_CODE_TYPE
    assert NUMAZU in codes.resolve_areas([shizuoka]).municipalities


def test_tsunami_2011_shizuoka_warning(shared_data: Path, codes: AreaCodes) -> None:
    alert = _alert(shared_data, "official_samples/32-39_11_06_250206_VTSE41.xml")
    assert alert.event == "大津波警報"
    assert alert.priority is Priority.CRITICAL
    shizuoka = _area(alert, "380")
    assert shizuoka["category"] in ("大津波警報", "津波警報", "津波注意報")
    assert NUMAZU in codes.resolve_areas(alert.areas).municipalities


def test_tsunami_information_names_numazu_station(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/32-39_11_08_250206_VTSE51.xml")
    assert alert.kind == "VTSE51"
    assert alert.event == "津波観測に関する情報"
    assert alert.priority is Priority.CRITICAL  # a 大津波警報 is in force
    assert "沼津市内浦 2011-03-11T16:00:00+09:00" in _area(alert, "380")["stations"]


def test_tsunami_cancellation(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/38-39_03_01_210805_VTSE41.xml")
    assert alert.msg_type is MsgType.CANCEL
    assert alert.references == (alert.series_key,)


# ------------------------------------------------------------ other families


def test_sediment_disaster_alert(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/17_01_01_190529_VXWW50.xml")
    assert alert.event == "土砂災害警戒情報"
    # 土砂災害警戒情報 is 警戒レベル４: before レベル３ warnings (was HIGH, issue 11 item 2).
    assert alert.priority is Priority.CRITICAL
    assert alert.details["level"] == 4 and _area(alert, "4010000")["level"] == "4"
    assert _area(alert, "4010000")["kind"] == "警戒"  # 北九州市
    new = _alert(shared_data, "official_samples/17_04_01_250630_VXWW50.xml")
    assert new.event == "レベル４土砂災害危険警報"
    assert new.priority is Priority.CRITICAL
    lifted = _alert(shared_data, "official_samples/17_02_03_190529_VXWW50.xml")
    assert lifted.event == "土砂災害警戒情報解除"
    assert lifted.priority is Priority.NORMAL


def test_river_flood_forecast(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/16_07_01_220728_VXKOii.xml")
    assert alert.kind == "VXKOii"
    assert alert.event == "○○川上流氾濫危険情報"
    assert alert.details["level"] == 4
    assert alert.priority is Priority.CRITICAL  # 氾濫危険情報 = 警戒レベル４ (was HIGH)
    assert "【警戒レベル４相当】" in alert.description
    assert any(a.details.get("districts") for a in alert.areas)


def test_record_rain_and_tornado(shared_data: Path) -> None:
    rain = _alert(shared_data, "official_samples/18_01_01_100806_VPOA50.xml")
    assert rain.event == "記録的短時間大雨情報"
    assert rain.priority is Priority.HIGH
    assert rain.area_codes == ("270000",)
    tornado = _alert(shared_data, "official_samples/19_04_01_140425_VPHW51.xml")
    assert tornado.event == "竜巻注意情報"
    assert tornado.priority is Priority.NORMAL


def test_volcano_warning(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/45_02_01_200522_VFVO50.xml")
    assert alert.event == "噴火警報（居住地域）"
    assert alert.priority is Priority.CRITICAL
    assert alert.details["volcano"] == "箱根山"
    # 噴火警戒レベル is its own scale: details["level"] is the int 警戒レベル of weather alerts.
    assert alert.details["volcano_level"] == "レベル５（避難）"
    assert "level" not in alert.details
    assert _area(alert, "1438200")["kind"] == "噴火警報"  # 箱根町
    assert alert.instruction
    crater = _alert(shared_data, "official_samples/45_01_01_200522_VFVO50.xml")
    assert crater.event == "噴火警報（火口周辺）"
    assert crater.priority is Priority.HIGH


def test_nankai_trough(shared_data: Path) -> None:
    alert = _alert(shared_data, "official_samples/74_01_04_200512_VYSE50.xml")
    assert alert.event == "南海トラフ地震臨時情報（巨大地震警戒）"
    assert alert.priority is Priority.HIGH
    assert alert.details["info_serial"] == "巨大地震警戒"
    assert alert.description


def test_unsupported_family(shared_data: Path) -> None:
    outcome = parse_telegram(
        _read(shared_data, "official_samples/24_07_01_100806_VPFD50.xml"),
        url="24_07_01_100806_VPFD50.xml",
    )
    assert isinstance(outcome, Unsupported)
    assert outcome.kind == "VPFD50"
    assert outcome.title == "府県天気予報"
    assert outcome.series_key and outcome.sent is not None


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"<Report><Control/></Report>",
        b"<Report><Control/><Head/></Report>",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        "not bytes",
    ],
)
def test_bad_input_fails_without_raising(data: bytes) -> None:
    outcome = parse_telegram(data)
    assert isinstance(outcome, Failed)
    assert outcome.error
    assert "root:" not in outcome.error


def test_bomb_in_telegram_rejected_fast() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE Report [<!ENTITY a "'
        + b"A" * 100_000
        + b'">]><Report>'
        + b"&a;" * 100_000
        + b"</Report>"
    )
    start = time.perf_counter()
    assert isinstance(parse_telegram(bomb), Failed)
    assert time.perf_counter() - start < 1.0


def test_kind_from_name() -> None:
    url = "https://www.data.jma.go.jp/developer/xml/data/20240101072429_0_VXSE53_010000.xml"
    assert kind_from_name(url) == "VXSE53"
    assert kind_from_name("16_01_01_220728_VXKOii.xml") == "VXKOii"
    assert kind_from_name("20231009064018_06274659_VTSE41.xml") == "VTSE41"
    assert kind_from_name("TsunamiAlarm.xml") == ""
    assert kind_from_name(None) == ""


def test_parsing_is_fast(shared_data: Path) -> None:
    data = _read(shared_data, "live_noto2024/WInfoL.xml")  # the largest live telegram
    start = time.perf_counter()
    for _ in range(20):
        parse_telegram(data)
    assert (time.perf_counter() - start) / 20 < timedelta(milliseconds=200).total_seconds()


# ------------------------------------------------------------ cli


def test_cli_parse_files(shared_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bomb.xml"
    bad.write_bytes(b'<!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>')
    missing = tmp_path / "missing.xml"
    paths = [shared_data / "jma/live_noto2024/WInfoL.xml", bad, missing]
    rows = list(parse_files(paths))
    assert len(rows) == 3
    ok = rows[0]
    assert ok["supported"] is True
    assert ok["event"] == "震源・震度情報"
    assert ok["severity"] == "extreme"
    assert ok["msg_type"] == "alert" and ok["status"] == "actual"
    assert NUMAZU in [a["code"] for a in ok["areas"]]
    assert ok["references"] == []
    assert set(rows[1]) >= {"file", "error"} and "DOCTYPE" in rows[1]["error"]
    assert set(rows[2]) >= {"file", "error"}
    import json

    json.dumps(rows, ensure_ascii=False)
