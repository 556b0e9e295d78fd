"""Message templates: event lookup, placeholders, exercise marking, truncation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.templates import TemplateError, Templates, truncate
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
    assert set(templates.languages) == {"ja", "ja-easy", "en"}


def test_tsunami_ja_uses_jma_text_verbatim(templates: Templates) -> None:
    subject, text = templates.compose(tsunami_warning(), "ja", max_length=4096, link=LINK)
    assert subject == "【津波警報】静岡県、沼津市"
    assert text.startswith("【津波警報】\n東海地方の沿岸に津波警報を発表しました。")
    assert "静岡県では、ただちに避難してください。" in text
    assert "発表: 2026年11月29日 20時15分" in text
    assert text.endswith(f"詳しくは: {LINK}")


def test_tsunami_easy_japanese_and_english(templates: Templates) -> None:
    subject, text = templates.compose(tsunami_warning(), "ja-easy", max_length=4096, link=LINK)
    assert "つなみが きます。" in text
    assert "たかい ところへ にげてください。" in text
    assert "ぬまづし" in text  # place name from the [places] table
    assert "（きしょうちょう: 東海地方の沿岸に津波警報を発表しました。）" in text
    subject, text = templates.compose(tsunami_warning(), "en", max_length=4096, link=LINK)
    assert subject.startswith("TSUNAMI WARNING")
    assert "Areas: Shizuoka Prefecture, Numazu City" in text
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
    assert "Intensity in Numazu: 3" in en
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
    for language in templates.languages:
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
    assert text.endswith(f"…\n詳しくは: {LINK}")
    body = text.split("\n")
    assert body[-2].endswith("行目の説明文です。…")  # whole lines only


def test_truncate_single_long_line() -> None:
    text = truncate("あ" * 50, 10, tail="", ellipsis="…")
    assert text == "あ" * 9 + "…"
    assert truncate("short", 10, tail="L") == "short\nL"


def test_many_areas_are_summarised(templates: Templates) -> None:
    areas = tuple(Area(description=f"地域{i}", codes=(str(i),)) for i in range(25))
    subject, _ = templates.compose(tsunami_warning(areas=areas), "ja", max_length=4096, link=None)
    assert subject.endswith("地域9、ほか15地域")


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
