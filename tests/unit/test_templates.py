"""Message templates: event lookup, placeholders, exercise marking, truncation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.templates import Templates, render_message
from channels.templates.packs import TemplateError
from channels.templates.text import truncate
from dispatcher.model import (
    Alert,
    Area,
    Certainty,
    MsgType,
    Severity,
    Status,
    Urgency,
)
from tests.samples import JST, tsunami_warning

LINK = "https://bousai.city.numazu.example/alerts/42"


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load()


def intensity_report() -> Alert:
    return Alert(
        identifier="20261129201230_20261129201000_VXSE53_1",
        sender="気象庁",
        # Sent in UTC on purpose: rendering must convert to JST.
        sent=datetime(2026, 11, 29, 11, 12, 30, tzinfo=UTC),
        status=Status.ACTUAL,
        msg_type=MsgType.ALERT,
        event="震源・震度情報",
        severity=Severity.MINOR,
        urgency=Urgency.PAST,
        certainty=Certainty.OBSERVED,
        headline="２９日２０時１０分ころ、地震がありました。",
        source="jma",
        kind="VXSE53",
        details={"max_intensity": "4", "magnitude": "4.8", "epicenter": "駿河湾", "depth": "20km"},
        areas=(
            Area(description="富士市", codes=("2221000",), details={"intensity": "4"}),
            Area(description="沼津市", codes=("2220300",), details={"intensity": "3"}),
        ),
    )


def heavy_rain_warning() -> Alert:
    return Alert(
        identifier="20261129060000_0_VPWW54_220000",
        sender="静岡地方気象台",
        sent=datetime(2026, 11, 29, 6, 0, tzinfo=JST),
        status=Status.ACTUAL,
        msg_type=MsgType.ALERT,
        event="大雨警報",
        severity=Severity.SEVERE,
        urgency=Urgency.EXPECTED,
        certainty=Certainty.LIKELY,
        headline="東部では、２９日夕方まで土砂災害に警戒してください。",
        source="jma",
        kind="VPWW54",
        areas=(Area(description="沼津市", codes=("2220300",)),),
    )


def test_languages_ja_first(templates: Templates) -> None:
    assert templates.languages[0] == "ja"
    assert set(templates.languages) == {"ja", "ja-easy", "en", "pt", "vi", "zh"}


def test_tsunami_ja_uses_jma_text_verbatim(templates: Templates) -> None:
    subject, text = templates.compose(tsunami_warning(), "ja", max_length=4096, link=LINK)
    # The reader's place, not every area of the telegram (issue 11 item 5).
    assert subject == "【津波警報】沼津市 ただちに避難"
    assert text.startswith("【津波警報】\nただちに高台")
    assert "東海地方の沿岸に津波警報を発表しました。" in text
    assert "ほか1地域" in text
    assert "静岡県では、ただちに避難してください。" in text
    assert "発表: 2026年11月29日 20時15分" in text
    assert text.endswith(f"詳しくは: {LINK}")


def test_tsunami_easy_japanese_and_english(templates: Templates) -> None:
    subject, text = templates.compose(tsunami_warning(), "ja-easy", max_length=4096, link=LINK)
    assert "つなみが きます。" in text
    assert "たかい ところへ にげてください。" in text
    assert "ぬまづし" in subject  # place name from the [places] table
    assert "（きしょうちょう: 東海地方の沿岸に津波警報を発表しました。）" in text
    subject, text = templates.compose(tsunami_warning(), "en", max_length=4096, link=LINK)
    assert subject.startswith("TSUNAMI WARNING")
    assert "and 1 other area\n" in text
    assert "Issued: 20:15 JST, 29 Nov 2026" in text
    assert "Original (Japanese): 東海地方の沿岸に津波警報を発表しました。" in text


def test_intensity_report_details_and_jst(templates: Templates) -> None:
    subject, text = templates.compose(intensity_report(), "ja", max_length=4096, link=None)
    assert subject == "【震源・震度情報】最大震度4 駿河湾"
    assert "沼津市の震度: 3" in text  # Numazu's own area wins over the first area
    assert "マグニチュード: 4.8" in text
    assert "発表: 2026年11月29日 20時12分" in text
    assert "詳しくは" not in text
    _, en = templates.compose(intensity_report(), "en", max_length=4096, link=None)
    assert "Intensity in Numazu City: 3" in en
    assert "Epicentre: 駿河湾" in en


def test_missing_details_drop_their_lines(templates: Templates) -> None:
    alert = replace(intensity_report(), details={}, areas=())
    subject, text = templates.compose(alert, "ja", max_length=4096, link=None)
    assert "マグニチュード" not in text
    assert "震源地" not in text
    assert subject == "【震源・震度情報】最大震度"  # renders, never raises


def test_intensity_values_translated(templates: Templates) -> None:
    alert = replace(intensity_report(), details={"max_intensity": "5-"})
    assert "最大震度: 5弱" in templates.compose(alert, "ja", max_length=4096, link=None)[1]
    assert "5 Lower" in templates.compose(alert, "en", max_length=4096, link=None)[1]
    assert "しんど5じゃく" in templates.compose(alert, "ja-easy", max_length=4096, link=None)[1]


def test_heavy_rain_warning_all_languages(templates: Templates) -> None:
    alert = heavy_rain_warning()
    subject, text = templates.compose(alert, "ja", max_length=4096, link=LINK)
    assert subject == "【大雨警報】沼津市"
    assert "土砂災害" in text
    subject, text = templates.compose(alert, "ja-easy", max_length=4096, link=LINK)
    assert subject == "【おおあめけいほう】ぬまづし"
    subject, text = templates.compose(alert, "en", max_length=4096, link=LINK)
    assert subject == "Heavy Rain Warning: Numazu City"
    assert text.startswith("Heavy Rain Warning\n")


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ("大津波警報", "大津波警報"),
        ("震度速報", "震源・震度情報"),
        ("震源に関する情報", "震源・震度情報"),
        ("緊急地震速報（警報）", "緊急地震速報"),
        ("噴火警報（居住地域）", "噴火警報"),
        ("狩野川氾濫危険情報", "指定河川洪水予報"),
        ("波浪警報", "警報"),
        ("暴風雪特別警報", "特別警報"),
        ("雷注意報", "注意報"),
        ("避難指示", "避難指示"),
        ("防災行政無線", "防災行政無線"),
        ("南海トラフ地震臨時情報", "default"),
    ],
)
def test_template_lookup(templates: Templates, event: str, key: str) -> None:
    alert = replace(heavy_rain_warning(), event=event)
    # pt, vi and zh have the main families only; the others fall back to English (see below).
    for language in ("ja", "ja-easy", "en"):
        assert templates.template_key(alert, language) == key


def test_cancel_uses_cancel_template(templates: Templates) -> None:
    alert = replace(tsunami_warning(), msg_type=MsgType.CANCEL)
    subject, text = templates.compose(alert, "ja", max_length=4096, link=None)
    assert subject == "【取消】津波警報"
    assert "次の情報は取り消されました: 津波警報" in text
    english = templates.compose(alert, "en", max_length=500, link=None)[0]
    assert english == "Cancelled: Tsunami Warning"


@pytest.mark.parametrize(
    ("language", "marker"), [("ja", "【訓練】"), ("ja-easy", "【くんれん】"), ("en", "[EXERCISE]")]
)
@pytest.mark.parametrize("status", [Status.EXERCISE, Status.TEST])
def test_exercise_marked(templates: Templates, language: str, marker: str, status: Status) -> None:
    alert = tsunami_warning(status=status)
    subject, text = templates.compose(alert, language, max_length=4096, link=LINK)
    assert subject.startswith(marker)
    assert text.startswith(marker)


def test_actual_alert_not_marked(templates: Templates) -> None:
    subject, text = templates.compose(tsunami_warning(), "ja", max_length=4096, link=None)
    assert "訓練" not in subject + text


def test_unknown_language_falls_back_to_ja(templates: Templates) -> None:
    assert templates.compose(tsunami_warning(), "fr", max_length=4096, link=None) == (
        templates.compose(tsunami_warning(), "ja", max_length=4096, link=None)
    )


def test_truncation_keeps_link_and_cuts_at_line(templates: Templates) -> None:
    long = "\n".join(f"{i}行目の説明文です。" for i in range(500))
    alert = tsunami_warning(description=long)
    _, text = templates.compose(alert, "ja", max_length=300, link=LINK)
    assert len(text) <= 300
    assert text.endswith(f"\n詳しくは: {LINK}")
    # The source's text is cut (whole lines, marked), the instructions and the rest stay.
    lines = text.split("\n")
    cut = next(line for line in lines if line.endswith("…"))
    assert cut.endswith("行目の説明文です。…")
    assert "ただちに高台や津波避難ビルなど、高い場所へ避難してください。" in lines
    assert lines[-3:-1] == ["ほか1地域", "発表: 2026年11月29日 20時15分"]


def test_truncate_single_long_line() -> None:
    text = truncate("あ" * 50, 10, tail="", ellipsis="…")
    assert text == "あ" * 9 + "…"
    assert truncate("short", 10, tail="L") == "short\nL"


def test_many_areas_are_summarised(templates: Templates) -> None:
    areas = tuple(Area(description=f"地域{i}", codes=(str(i),)) for i in range(25))
    subject, text = templates.compose(tsunami_warning(areas=areas), "ja", max_length=4096, link=None)
    # Not a list of every area: the first (no local one here) and how many others.
    assert subject == "【津波警報】地域0 ただちに避難"
    assert "ほか24地域" in text and "地域9" not in text


def test_naive_sent_is_utc(templates: Templates) -> None:
    alert = tsunami_warning(sent=datetime(2026, 11, 29, 11, 15))
    assert "20時15分" in templates.compose(alert, "ja", max_length=4096, link=None)[1]


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "ja.toml").write_text(body, encoding="utf-8")
    return tmp_path


def test_malformed_template_names_file_and_key(tmp_path: Path) -> None:
    write(tmp_path, '[templates.default]\nsubject = "x"\ntext = "{event"\n')
    with pytest.raises(TemplateError, match=r"ja\.toml.*templates\.default\.text"):
        Templates.load(tmp_path)


def test_attribute_placeholder_rejected(tmp_path: Path) -> None:
    write(tmp_path, '[templates.default]\nsubject = "{alert.sender}"\ntext = "x"\n')
    with pytest.raises(TemplateError, match=r"templates\.default\.subject"):
        Templates.load(tmp_path)


def test_unknown_key_and_bad_toml(tmp_path: Path) -> None:
    write(tmp_path, '[meta]\ncolour = "red"\n[templates.default]\nsubject = "x"\ntext = "y"\n')
    with pytest.raises(TemplateError, match=r"meta\.colour"):
        Templates.load(tmp_path)
    write(tmp_path, "[templates.default\n")
    with pytest.raises(TemplateError, match=r"ja\.toml"):
        Templates.load(tmp_path)
    write(tmp_path, '[templates.other]\nsubject = "x"\ntext = "y"\n')
    with pytest.raises(TemplateError, match=r"templates\.default"):
        Templates.load(tmp_path)


def test_unknown_placeholder_renders_empty(tmp_path: Path) -> None:
    write(tmp_path, '[templates.default]\nsubject = "A{nothing}B"\ntext = "x {nothing}\\ny"\n')
    subject, text = Templates.load(tmp_path).compose(heavy_rain_warning(), "ja", max_length=100, link=None)
    assert (subject, text) == ("AB", "y")


# ------------------------------------------------------------ the reader's place (issue 11 item 5)

SAMPLES = [
    "official_samples/32-39_11_06_250206_VTSE41.xml",  # 大津波警報 (静岡県: 津波注意報)
    "live_p2pquake/20231009064018_06274659_VTSE41.xml",  # 津波注意報
    "live_noto2024/TsunamiAlarm.xml",  # 大津波警報, Noto
    "live_noto2024/canceledTsunamiAlarm.xml",  # 津波注意報解除
    "official_samples/38-39_02_04_250206_VTSE41.xml",  # 津波注意報解除 (code 60)
    "official_samples/32-39_11_08_250206_VTSE51.xml",  # 津波観測に関する情報
    "official_samples/61_11_02_250206_VTSE52.xml",  # 沖合の津波観測
    "live_noto2024/WInfoL.xml",  # 震源・震度情報, 沼津市 震度3
    "live_noto2024/IntensityReportL.xml",  # 震度速報
    "live_p2pquake/20210217140847_0_VXSE52_010000.xml",  # 震源に関する情報
    "live_p2pquake/20240116184225_02245216_VXSE43.xml",  # 緊急地震速報（警報）
    "live_2026/18_00_01_260830_VPWW55_fukui_L5.xml",  # レベル５大雨特別警報
    "official_samples/15_17_01_250123_VPWW54.xml",  # Body/Notice レベル４
    "live_2026/vpww55_heavy-rain_lv2.xml",  # レベル２大雨注意報
    "live_2026/vpww58_wind_advisory.xml",  # 強風注意報
    "live_2026/vpww57_storm-surge_cancellation.xml",  # 解除
    "live_2026/18_00_01_260830_VPNO50_issue.xml",  # 気象特別警報報知
    "live_2026/18_00_01_260830_VPNO50_switch.xml",  # 特別警報解除
    "live_2026/vpbs50_record-rain.xml",  # 記録的短時間大雨
    "live_2026/vpbs50_linear-rainband_imminent.xml",  # 線状降水帯直前予測
    "official_samples/82_01_01_241031_VPBS50.xml",  # 線状降水帯発生
    "live_2026/vxko_flood_lv2.xml",
    "live_2026/vxko_flood_lv3.xml",
    "live_2026/vxko_flood_cancellation.xml",
    "live_2026/vxww50_landslide-alert.xml",  # レベル４土砂災害危険警報
    "official_samples/18_01_01_100806_VPOA50.xml",  # 記録的短時間大雨情報
    "live_2026/vphw50_tornado.xml",  # 竜巻注意情報
    "official_samples/45_02_01_200522_VFVO50.xml",  # 噴火警報（居住地域）
    "live_2026/vptw60_typhoon.xml",  # 台風解析・予報情報 (stored, not pushed)
    "official_samples/74_01_04_200512_VYSE50.xml",  # 南海トラフ地震臨時情報
    "official_samples/32-35_06_06_100915_VXSE53.xml",  # 取消
]


def _real(shared_data: Path, rel: str) -> Alert:
    from sources.jma import AreaCodes, parse_telegram
    from sources.outcome import Parsed

    outcome = parse_telegram((shared_data / "jma" / rel).read_bytes(), url=Path(rel).name, codes=AreaCodes.load())
    assert isinstance(outcome, Parsed), outcome
    return outcome.alert


def _written_in(templates: Templates, alert: Alert, language: str) -> str:
    """The language a message is written in: a partial pack's fallback for families it has no template of."""
    fallback = str(templates.pack(language).meta.get("fallback") or "")
    own = templates.template_key(alert, language)
    if fallback and own == "default" and templates.template_key(alert, fallback) != "default":
        return fallback
    return language


def _fixed_lines(templates: Templates, alert: Alert, language: str, place: Area | None = None) -> list[str]:
    """The template's lines without placeholders: the instructions, which must always survive."""
    language = _written_in(templates, alert, language)
    key = templates.template_key(alert, language)
    grade = (place or templates.place_for(alert) or Area("")).details.get("category", "")
    if key in ("大津波警報", "津波警報", "津波注意報", "津波予報") and grade in templates.pack(language).templates:
        key = grade
    text = templates.pack(language).templates[key].text
    return [line for line in text.split("\n") if line and "{" not in line]


@pytest.mark.parametrize("rel", SAMPLES)
@pytest.mark.parametrize("language", ["ja", "ja-easy", "en", "pt", "vi", "zh"])
@pytest.mark.parametrize("limit", [4096, 500])
def test_every_family_fits_with_instruction_and_link(
    templates: Templates, shared_data: Path, rel: str, language: str, limit: int
) -> None:
    alert = _real(shared_data, rel)
    message = render_message(templates, alert, language, max_length=limit, public_url="https://bousai.example")
    assert len(message.text) <= limit
    assert message.link and message.text.endswith(message.link)
    lines = message.text.split("\n")
    for fixed in _fixed_lines(templates, alert, language):
        assert fixed in lines, (fixed, message.text)
    assert "{" not in message.text and message.subject
    written = _written_in(templates, alert, language)
    if written != language:
        # Not machine-translated: English, and the reader is told so in their language.
        assert (
            lines[0] == templates.pack(language).meta["fallback_note"]
            or lines[1] == (templates.pack(language).meta["fallback_note"])
        ), message.text


def test_place_defaults_to_the_city(templates: Templates, shared_data: Path) -> None:
    quake = _real(shared_data, "live_noto2024/WInfoL.xml")
    assert templates.place_for(quake) is not None and templates.place_for(quake).codes == ("2220300",)  # type: ignore[union-attr]
    _, text = templates.compose(quake, "ja", max_length=4096, link=LINK)
    assert text.split("\n")[1] == "沼津市の震度: 3"
    tsunami = _real(shared_data, "official_samples/32-39_11_06_250206_VTSE41.xml")
    place = templates.place_for(tsunami)
    assert place is not None and place.codes == ("380",) and place.description == "静岡県"
    subject, text = templates.compose(tsunami, "ja", max_length=4096, link=LINK)
    # Shizuoka's own grade leads, with its expected time; the 大津波警報 elsewhere is said once.
    assert subject == "【津波注意報】静岡県 海から離れて"
    assert text.split("\n")[1:5] == [
        "静岡県: 津波注意報",
        "予想される津波の高さ: 不明",
        "到達予想: 15時30分ごろ",
        "ほかの地域には大津波警報が出ています。",
    ]


def test_place_given_by_the_delivery(templates: Templates, shared_data: Path) -> None:
    alert = _real(shared_data, "live_2026/18_00_01_260830_VPWW55_fukui_L5.xml")
    sakai = next(a for a in alert.areas if a.description == "坂井市")
    subject, text = templates.compose(alert, "ja", max_length=4096, link=LINK, place=sakai)
    lines = text.split("\n")
    assert subject == "【レベル５大雨特別警報】坂井市"
    assert lines[1] == "坂井市: レベル４大雨危険警報"
    assert "ほか8地域" in lines
    values = templates.values(alert, "en", place=sakai)
    assert values["place_level"] == "Alert Level 4"
    assert values["place_summary"] == "Alert Level 4 Heavy Rain Danger Warning"
    assert values["others"] == "and 8 other areas"
    # A legacy name gets its level said beside it.
    legacy = _real(shared_data, "official_samples/15_17_01_250123_VPWW54.xml")
    hamada = next(a for a in legacy.areas if a.description == "浜田市")
    assert templates.values(legacy, "ja", place=hamada)["place_summary"].startswith("警戒レベル3 大雨警報")


def test_depth_line_from_depth_km(templates: Templates, shared_data: Path) -> None:
    # The template asks for {depth}; the parser stores depth_km (issue 11 item 5).
    alert = _real(shared_data, "live_p2pquake/20210217140847_0_VXSE52_010000.xml")
    assert alert.details["depth_km"] == 50.0
    assert "深さ: 約50km" in templates.compose(alert, "ja", max_length=4096, link=None)[1]
    assert "Depth: about 50 km" in templates.compose(alert, "en", max_length=4096, link=None)[1]
    assert "ふかさ: 50km ぐらい" in templates.compose(alert, "ja-easy", max_length=4096, link=None)[1]
    shallow = _real(shared_data, "live_noto2024/WInfoL.xml")
    assert "深さ: ごく浅い" in templates.compose(shallow, "ja", max_length=4096, link=None)[1]


def test_local_codes_are_jma_parents_of_numazu() -> None:
    from channels.templates import LOCAL_AREA_CODES
    from sources.jma import AreaCodes
    from sources.jma.codes import EEW_AREA_CODE_TYPE, SEISMIC_AREA_CODE_TYPE, TSUNAMI_CODE_TYPE

    codes = AreaCodes.load()
    for entry in LOCAL_AREA_CODES:
        code_type, _, code = entry.rpartition(":")
        if code == "22203":
            continue  # the 5-digit local-government code of geo layers
        assert "2220300" in codes.municipalities_for([code], code_type or None), entry
    assert {e for e in LOCAL_AREA_CODES if ":" not in e} >= {"2220300", "220031", "220030", "220000"}
    for code_type in (SEISMIC_AREA_CODE_TYPE, EEW_AREA_CODE_TYPE, TSUNAMI_CODE_TYPE):
        assert any(e.startswith(code_type + ":") for e in LOCAL_AREA_CODES)


@pytest.mark.parametrize("language", ["pt", "vi", "zh"])
def test_new_language_packs_speak_their_language(templates: Templates, shared_data: Path, language: str) -> None:
    tsunami = _real(shared_data, "official_samples/32-39_11_06_250206_VTSE41.xml")
    quake = _real(shared_data, "live_noto2024/WInfoL.xml")
    volcano = _real(shared_data, "official_samples/45_02_01_200522_VFVO50.xml")
    words = {"pt": ("Emitido", "Terremoto"), "vi": ("Phát hành", "Động đất"), "zh": ("发布", "地震")}[language]
    _subject, text = templates.compose(tsunami, language, max_length=4096, link="https://x/a")
    assert words[0] in text
    subject, text = templates.compose(quake, language, max_length=4096, link="https://x/a")
    assert words[1] in subject and words[0] in text
    # A family without a template of its own: English, after the note in the reader's language.
    _subject, text = templates.compose(volcano, language, max_length=4096, link="https://x/a")
    assert text.startswith(templates.pack(language).meta["fallback_note"]) and "Issued:" in text
