"""The residents' conversation core: pure rules, real district layer and bot texts."""

from __future__ import annotations

import pytest

from dispatcher.residents import (
    LANGUAGES,
    MAX_BUTTONS,
    MAX_DATA_BYTES,
    Command,
    Level,
    Outcome,
    Press,
    Quiet,
    Request,
    Resident,
    SharedLocation,
    Step,
    Text,
    Unfollow,
    handle,
    latest_reply,
    load_ui_texts,
)
from dispatcher.residents.conversation import LatestItem
from dispatcher.residents.directory import GeoDirectory
from geo import default_index

UI = load_ui_texts()
DIR = GeoDirectory(default_index())


def step(resident: Resident | None, event: object) -> Outcome:
    out = handle(resident, event, channel="telegram", address="42", directory=DIR, ui=UI)  # type: ignore[arg-type]
    for reply in out.replies:
        assert len(reply.buttons) <= MAX_BUTTONS
        for b in reply.buttons:
            assert len(b.data.encode()) <= MAX_DATA_BYTES
    return out


def onboard(lang: str = "en") -> Resident:
    out = step(None, Command("start"))
    assert out.resident is not None and out.changed
    [menu] = out.replies
    assert [b.data for b in menu.buttons] == [f"L:{code}" for code in LANGUAGES]
    assert [b.label for b in menu.buttons] == ["日本語", "やさしい日本語", "English", "Português", "Tiếng Việt", "中文"]
    out = step(out.resident, Press(f"L:{lang}"))
    assert out.resident is not None and out.resident.language == lang and out.resident.step is Step.PLACES
    return out.resident


def test_full_onboarding_in_english() -> None:
    r = onboard()
    out = step(r, Press("P:0"))
    page = out.replies[0]
    assert page.edit and "page 1/2" in page.text
    assert any(b.data == "P:1" for b in page.buttons)
    out = step(out.resident, Press("D:numazu-ooka"))
    assert "Added: Ooka" in out.replies[0].text
    out = step(out.resident, Text("heda"))  # typed name search, English name
    r = out.resident
    assert r is not None and [p.codes for p in r.places] == [("numazu-ooka",), ("numazu-heda",)]
    out = step(r, Press("M:done"))
    assert [b.data for b in out.replies[0].buttons] == ["V:all", "V:warnings", "V:critical"]
    out = step(out.resident, Press("V:warnings"))
    assert any(b.data == "Q:off" for b in out.replies[0].buttons)
    out = step(out.resident, Press("Q:1320-420"))
    r = out.resident
    assert r is not None and r.onboarded and r.step is Step.READY
    assert r.level is Level.WARNINGS and r.quiet == Quiet(1320, 420)
    assert "Ooka, Heda" in out.replies[0].text
    assert r.codes == ("numazu-ooka", "numazu-heda")


def test_japanese_search_and_duplicates_and_limit() -> None:
    r = onboard("ja")
    out = step(r, Text("大岡"))
    assert "追加しました：大岡" in out.replies[0].text
    out = step(out.resident, Text("大岡"))
    assert "すでに" in out.replies[0].text and not out.changed
    out = step(out.resident, Text("存在しない地区"))
    assert "当てはまる地区はありません" in out.replies[0].text
    r = out.resident
    for name in ("門池", "金岡", "愛鷹", "片浜"):
        r = step(r, Text(name)).resident
    assert r is not None and len(r.places) == 5
    out = step(r, Text("原"))
    assert "5か所" in out.replies[0].text and out.resident == r


def test_shared_location_point_dropped_unless_kept() -> None:
    r = onboard()
    out = step(r, SharedLocation(35.098, 138.86))
    assert out.resident is not None and out.resident.places[0].codes[0] == "numazu-chushin"
    assert out.resident.places[0].lat is None
    assert [b.data for b in out.replies[0].buttons] == ["K:1", "K:0"]
    kept = step(out.resident, Press("K:1")).resident
    assert kept is not None and kept.places[0].lat == 35.098 and kept.pending_point is None
    # Anything but the answer drops the pending point.
    other = step(out.resident, Command("settings")).resident
    assert other is not None and other.pending_point is None and other.places[0].lat is None
    outside = step(r, SharedLocation(35.68, 139.76))  # Tokyo
    assert "outside" in outside.replies[0].text and outside.resident == r


def test_commands_and_stop() -> None:
    r = onboard("pt")
    assert step(r, Command("latest")).request is Request.LATEST
    assert "teste" in step(r, Command("test")).replies[0].text
    assert "Idioma" in step(r, Command("settings")).replies[0].text
    stop = step(r, Command("stop"))
    assert stop.resident is None and stop.changed and "apagados" in stop.replies[0].text
    gone = step(r, Unfollow())
    assert gone.resident is None and gone.replies == ()
    assert "/start" in step(None, Text("hello")).replies[0].text


def test_every_language_has_every_text() -> None:
    for lang in LANGUAGES:
        r = onboard(lang)
        assert step(r, Command("settings")).replies[0].text
    reply = latest_reply(r, [LatestItem("12:00", "Tsunami Warning", "http://x/alerts/1")], UI)
    assert "http://x/alerts/1" in reply.text


def test_bad_button_data_is_harmless() -> None:
    r = onboard()
    for data in ("", "X:1", "R:99", "D:nowhere", "Q:abc", "V:loud", "P:-1", "K:1"):
        out = step(r, Press(data))
        assert out.replies
    with pytest.raises(ValueError):
        Quiet(60, 60)
