"""The 2026 warning system and the held-out findings of issue 11, on real telegrams.

Item 4 (a tsunami lifting read as an advisory, VTSE52 with no areas, VFVO56
identifier collisions), item 3 (VPNO50, VPBS50, VPTW60) and item 2 (警戒レベル
per area, priority following it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.model import Alert, Priority, Severity, Urgency
from sources.jma import AreaCodes, parse_telegram
from sources.jma.codes import COAST_CODE_TYPE
from sources.jma.severity import kind_level, level_priority
from sources.outcome import Parsed, Unsupported

NUMAZU = "2220300"
FUKUI_L5 = "live_2026/18_00_01_260830_VPWW55_fukui_L5.xml"


@pytest.fixture(scope="module")
def codes() -> AreaCodes:
    return AreaCodes.load()


def _data(shared_data: Path, rel: str) -> bytes:
    return (shared_data / "jma" / rel).read_bytes()


def _alert(shared_data: Path, rel: str, data: bytes | None = None) -> Alert:
    outcome = parse_telegram(data if data is not None else _data(shared_data, rel), url=Path(rel).name)
    assert isinstance(outcome, Parsed), outcome
    return outcome.alert


def _levels(alert: Alert) -> dict[str, str | None]:
    return {a.description: a.details.get("level") for a in alert.areas}


# ------------------------------------------------------------ item 4: tsunami lifting


def test_tsunami_advisory_lifting_code_60_is_a_lifting(shared_data: Path) -> None:
    # Kind 津波注意報解除 (code 60), Head/Title 津波予報: it was read as a new 津波注意報.
    alert = _alert(shared_data, "official_samples/38-39_02_04_250206_VTSE41.xml")
    assert alert.details["head_title"] == "津波予報"
    assert alert.event == "津波注意報解除"
    assert (alert.severity, alert.urgency, alert.priority) == (Severity.MINOR, Urgency.PAST, Priority.NORMAL)
    assert alert.areas and all(a.details["lifted"] == "津波注意報" for a in alert.areas)
    assert all(a.details["category"] == "解除" for a in alert.areas)


@pytest.mark.parametrize(
    "rel", ["live_noto2024/canceledTsunamiAlarm.xml", "live_p2pquake/20231009120003_08446949_VTSE41.xml"]
)
def test_live_tsunami_liftings(shared_data: Path, rel: str) -> None:
    alert = _alert(shared_data, rel)
    assert alert.event == "津波注意報解除"
    assert alert.severity is Severity.MINOR and alert.urgency is Urgency.PAST
    assert any(a.details.get("lifted") == "津波注意報" for a in alert.areas)


def test_tsunami_advisories_in_force_stay_advisories(shared_data: Path) -> None:
    # A telegram that lifts some regions while others stay under 津波注意報 is still an advisory.
    for rel in ("live_p2pquake/20231009064018_06274659_VTSE41.xml", "live_p2pquake/20231009082436_00085500_VTSE41.xml"):
        assert _alert(shared_data, rel).event == "津波注意報"


# ------------------------------------------------------------ item 4: VTSE52 areas


def test_vtse52_estimation_areas_resolve(shared_data: Path, codes: AreaCodes) -> None:
    alert = _alert(shared_data, "official_samples/61_11_02_250206_VTSE52.xml")
    assert {a.codes for a in alert.areas} == {("201",), ("210",)}  # 青森県太平洋沿岸, 岩手県
    iwate = next(a for a in alert.areas if a.codes == ("210",))
    assert iwate.details["code_type"] == COAST_CODE_TYPE
    assert iwate.details["first_arrival"] == "2011-03-11T14:55:00+09:00"
    assert iwate.details["max_height"] == "巨大"
    assert "0320200" in codes.resolve_areas([iwate]).municipalities  # 宮古市
    assert "青森八戸沖 １．０ｍ" in alert.details["observed_offshore"]
    assert all(a.codes for a in alert.areas)  # no area without a code


def test_vtse52_naming_shizuoka_reaches_numazu(shared_data: Path, codes: AreaCodes) -> None:
    # The held-out VTSE52 named 静岡県 (380) in Body/Tsunami/Estimation; same shape, region swapped.
    data = _data(shared_data, "official_samples/61_11_01_250206_VTSE52.xml")
    data = data.replace(
        "<Area><Name>岩手県</Name><Code>210</Code></Area>".encode(),
        "<Area><Name>静岡県</Name><Code>380</Code></Area>".encode(),
    )
    alert = _alert(shared_data, "VTSE52.xml", data)
    assert [a.description for a in alert.areas] == ["静岡県"]
    resolution = codes.resolve_areas(alert.areas)
    assert NUMAZU in resolution.municipalities and resolution.unknown == ()


# ------------------------------------------------------------ item 4: identifiers


def _eruption(shared_data: Path) -> bytes:
    """A 噴火速報 built from a real 噴火警報 (no real VFVO56 is in shared/data): titles swapped only."""
    data = _data(shared_data, "official_samples/45_02_01_200522_VFVO50.xml")
    data = data.replace("<Title>噴火警報・予報</Title>".encode(), "<Title>噴火速報</Title>".encode())
    return data.replace(
        "<Title>火山名  箱根山  噴火警報（居住地域）</Title>".encode(),
        "<Title>火山名  箱根山  噴火速報</Title>".encode(),
    )


def test_two_eruption_flashes_never_share_an_identifier(shared_data: Path) -> None:
    first = _eruption(shared_data)
    # Same Head (title, time, EventID, empty Serial, headline), different Body: one word.
    at = first.index(b"<Body")
    body = first[at:]
    assert "居住地域".encode() in body
    second = first[:at] + body.replace("居住地域".encode(), "火口周辺".encode(), 1)
    # Or a different headline with the same Body.
    third = first.replace("＜箱根山に噴火警報".encode(), "＜箱根山で噴火が発生".encode(), 1)
    a, b, c = (_alert(shared_data, "VFVO56.xml", d) for d in (first, second, third))
    assert a.event == "噴火速報"
    assert a.headline == b.headline and a.sent == b.sent and a.series_key == b.series_key
    assert len({a.identifier, b.identifier, c.identifier}) == 3
    # The same telegram fetched twice is the same alert.
    assert _alert(shared_data, "again.xml", bytes(first)).identifier == a.identifier


# ------------------------------------------------------------ item 2: levels


def test_fukui_levels_per_area(shared_data: Path) -> None:
    alert = _alert(shared_data, FUKUI_L5)
    levels = _levels(alert)
    assert levels["福井市"] == levels["大野市"] == levels["勝山市"] == "5"
    assert levels["坂井市"] == levels["永平寺町"] == "4"
    assert levels["鯖江市"] == levels["越前町"] == "3"
    assert levels["あわら市"] == "3"
    assert levels["越前市"] == "2"  # レベル２大雨注意報
    assert alert.details["level"] == 5
    assert alert.priority is Priority.CRITICAL


def test_fukui_downgrade_and_release(shared_data: Path) -> None:
    down = _alert(shared_data, "live_2026/18_00_01_260830_VPWW55_fukui_downgrade.xml")
    assert down.details["level"] == 4 and down.event == "レベル４大雨危険警報"
    assert down.priority is Priority.CRITICAL
    release = _alert(shared_data, "live_2026/18_00_01_260830_VPWW55_fukui_release.xml")
    assert "level" not in release.details and all("level" not in a.details for a in release.areas)


def test_level_in_body_notice_only(shared_data: Path) -> None:
    # VPWW53/54 name only the hazard (大雨警報); the R06 level is in Body/Notice:
    # ［危険警報・氾濫特別警報の発表状況］〈レベル４氾濫危険警報〉高津川＊〈レベル４大雨危険警報〉松江市
    # (JMA's 2025 sample for the 2026 system; the live 神戸 VPWW53 had the same form).
    data = _data(shared_data, "official_samples/15_17_01_250123_VPWW54.xml")
    alert = _alert(shared_data, "15_17_01_250123_VPWW54.xml", data)
    levels = _levels(alert)
    assert levels["松江市"] == "4"  # 〈レベル４大雨危険警報〉松江市
    assert levels["浜田市"] == "3"  # 大雨警報
    assert levels["奥出雲町"] == "2"  # 大雨注意報
    matsue = next(a for a in alert.areas if a.description == "松江市")
    assert "レベル４大雨危険警報" in matsue.details["warnings"].split(",")
    assert alert.details["level"] == 4
    assert alert.event == "レベル４大雨危険警報"
    assert alert.priority is Priority.CRITICAL
    # The same telegram without its Notice: 松江市 is back to the 大雨警報's level 3.
    start, end = data.index(b"<Notice>"), data.index(b"</Notice>") + len(b"</Notice>")
    plain = _alert(shared_data, "VPWW54.xml", data[:start] + data[end:])
    assert _levels(plain)["松江市"] == "3" and plain.details["level"] == 3
    assert plain.priority is Priority.HIGH


def test_flood_levels(shared_data: Path) -> None:
    lv3 = _alert(shared_data, "live_2026/vxko_flood_lv3.xml")
    akita = next(a for a in lv3.areas if a.codes == ("0520100",))
    assert akita.details["level"] == "3" and akita.details["kind"] == "レベル３氾濫警報"
    assert lv3.details["level"] == 3 and lv3.priority is Priority.HIGH
    lv2 = _alert(shared_data, "live_2026/vxko_flood_lv2.xml")
    assert lv2.details["level"] == 2
    lifted = _alert(shared_data, "live_2026/vxko_flood_cancellation.xml")
    assert "level" not in lifted.details


def test_landslide_alert_is_level_4(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_2026/vxww50_landslide-alert.xml")
    assert alert.event == "レベル４土砂災害危険警報"
    assert alert.details["level"] == 4 and alert.priority is Priority.CRITICAL
    assert {a.details.get("level") for a in alert.areas if a.details["status"] != "解除"} == {"4"}


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("レベル５大雨特別警報", 5),
        ("レベル４大雨危険警報", 4),
        ("レベル３大雨警報", 3),
        ("レベル２高潮注意報", 2),
        ("レベル２氾濫注意報解除", None),
        ("大雨特別警報", 5),
        ("暴風特別警報", 5),
        ("大雨警報", 3),
        ("洪水注意報", 2),
        ("土砂災害警戒情報", 4),
        ("○○川氾濫発生情報", 5),
        ("○○川氾濫危険情報", 4),
        ("○○川氾濫警戒情報", 3),
        ("○○川氾濫注意情報", 2),
        ("暴風警報", None),
        ("雷注意報", None),
        ("津波警報", None),
    ],
)
def test_kind_level(name: str, level: int | None) -> None:
    assert kind_level(name) == level


def test_level_priority_order() -> None:
    assert level_priority(5) is Priority.CRITICAL
    assert level_priority(4) < level_priority(3) < level_priority(2) or level_priority(3) is Priority.HIGH
    assert level_priority(4) is Priority.CRITICAL and level_priority(3) is Priority.HIGH
    assert level_priority(2) is Priority.LOW


# ------------------------------------------------------------ item 3: families


def test_vpno50_special_warning_notice(shared_data: Path) -> None:
    issue = _alert(shared_data, "live_2026/18_00_01_260830_VPNO50_issue.xml")
    assert issue.kind == "VPNO50"
    assert issue.event == "大雨特別警報"
    assert issue.priority is Priority.CRITICAL and issue.severity is Severity.EXTREME
    assert [(a.description, a.codes, a.details["level"]) for a in issue.areas] == [
        ("福井市", ("1820100",), "5"),
        ("大野市", ("1820500",), "5"),
        ("勝山市", ("1820600",), "5"),
    ]
    assert issue.details["level"] == 5
    switch = _alert(shared_data, "live_2026/18_00_01_260830_VPNO50_switch.xml")
    assert switch.event == "特別警報解除"
    assert switch.severity is Severity.MINOR and switch.urgency is Urgency.PAST
    assert switch.area_codes == ("180000",)
    sample = _alert(shared_data, "official_samples/62_01_01_130412_VPNO50.xml")
    assert sample.event.endswith("特別警報") and sample.areas


def test_vpbs50_record_rain(shared_data: Path, codes: AreaCodes) -> None:
    alert = _alert(shared_data, "live_2026/vpbs50_record-rain.xml")
    assert alert.kind == "VPBS50"
    assert alert.event == "記録的短時間大雨"
    assert alert.priority is Priority.HIGH and alert.urgency is Urgency.IMMEDIATE
    assert alert.area_codes == ("200030",)  # 長野県南部
    assert "2020900" in codes.resolve_areas(alert.areas).municipalities  # 伊那市
    assert "約１００ミリ" in alert.details["observations"]
    assert alert.headline.startswith("１９時１０分、長野県伊那で記録的短時間大雨。")


@pytest.mark.parametrize(
    ("rel", "event", "codes_"),
    [
        ("live_2026/vpbs50_linear-rainband_imminent.xml", "線状降水帯直前予測", ("130030",)),
        ("official_samples/82_01_01_241031_VPBS50.xml", "線状降水帯発生", ("120010", "120020", "120030")),
    ],
)
def test_vpbs50_rain_band(shared_data: Path, rel: str, event: str, codes_: tuple[str, ...]) -> None:
    alert = _alert(shared_data, rel)
    assert alert.event == event
    assert alert.area_codes == codes_
    assert alert.priority is Priority.HIGH and alert.severity is Severity.SEVERE


def test_vptw60_typhoon_is_stored_not_pushed(shared_data: Path) -> None:
    alert = _alert(shared_data, "live_2026/vptw60_typhoon.xml")
    assert alert.kind == "VPTW60"
    assert alert.details["push"] is False
    assert alert.details["typhoon_name"] == "ドルフィン"
    assert alert.details["typhoon_number"] == "2613"
    assert alert.priority is Priority.LOW
    for rel in ("official_samples/10_05_02_200826_VPTW60.xml", "official_samples/10_05_05_200826_VPTW61.xml"):
        assert _alert(shared_data, rel).details["push"] is False
    # The retired pre-2018 formats (VPTW40/41/50/51) are stored as Unsupported.
    old = parse_telegram(_data(shared_data, "official_samples/09_01_01_091210_VPTW40.xml"))
    assert isinstance(old, Unsupported)
