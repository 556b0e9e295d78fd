"""Publication's pure parts: signed links and CSRF, static paths, lengths, views, open data, the X price."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.bluesky import link_facets
from channels.templates import Templates
from channels.x import weighted_length
from dispatcher import cli
from dispatcher.model import Status
from dispatcher.publication import opendata
from dispatcher.publication.site import static_path, write_atomically
from dispatcher.publication.tokens import Links
from dispatcher.publication.view import alert_view, grade
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed
from tests.samples import make_alert, tsunami_warning

SECRET = b"0123456789abcdef0123456789abcdef"


def row(alert: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": 1, "identifier": alert.identifier, "sender": alert.sender, "source": alert.source, "kind": alert.kind,
        "sent": alert.sent, "status": alert.status.value, "msg_type": alert.msg_type.value, "refs": [],
        "event": alert.event, "severity": alert.severity.value, "urgency": alert.urgency.value,
        "certainty": alert.certainty.value, "priority": int(alert.priority), "headline": alert.headline,
        "description": alert.description, "instruction": alert.instruction,
        "areas": [{"description": a.description, "codes": list(a.codes), "details": dict(a.details)}
                  for a in alert.areas],
        "area_codes": list(alert.area_codes), "target_codes": list(alert.area_codes), "expires": alert.expires,
        "series_key": None, "details": {}, "state": "active", "replaced_by": None, "public_id": alert.public_id or "x",
        "received_at": datetime(2026, 11, 29, tzinfo=UTC), **extra,
    }  # fmt: skip


def test_signed_links_verify_and_forgeries_do_not() -> None:
    links = Links("https://bousai.example/", SECRET)
    url = links.unsubscribe_url(42)
    token = url.split("t=", 1)[1]
    assert url.startswith("https://bousai.example/unsubscribe?t=")
    assert links.subscription_of(token, "unsubscribe") == 42
    assert links.subscription_of(token, "manage") is None  # salted per purpose
    assert links.subscription_of(token[:-2] + "xx", "unsubscribe") is None
    assert (
        Links("https://bousai.example", b"another-secret-another-secret-00").subscription_of(token, "unsubscribe")
        is None
    )


def test_csrf_double_submit() -> None:
    links = Links("https://bousai.example", SECRET)
    cookie, field = links.csrf_pair(None)
    assert links.csrf_ok(cookie, field)
    assert not links.csrf_ok("0" * 32, field) and not links.csrf_ok(cookie, None) and not links.csrf_ok(None, field)
    assert links.csrf_pair(cookie)[0] == cookie


def test_static_paths_and_atomic_writes(tmp_path: Path) -> None:
    assert static_path("/public/", "text/html") == "public/index.html"
    assert static_path("/alerts/20261129-abc", "text/html") == "alerts/20261129-abc/index.html"
    assert static_path("/feeds/atom", "application/atom+xml; charset=utf-8") == "feeds/atom/index.atom"
    assert static_path("/feeds/cap/x.xml", "application/cap+xml") == "feeds/cap/x.xml"
    write_atomically(tmp_path, {"a/b/index.html": b"one"})
    write_atomically(tmp_path, {"a/b/index.html": b"two"})
    assert (tmp_path / "a/b/index.html").read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "a/b").iterdir()] == ["index.html"]  # no temporary file left


def test_x_weights_and_bluesky_byte_offsets() -> None:
    assert weighted_length("abc") == 3 and weighted_length("沼津") == 4
    assert weighted_length("見て https://example.com/a/very/long/path/indeed") == 2 * 2 + 1 + 23
    text = "津波警報 詳しくは: https://bousai.example/alerts/1"
    (facet,) = link_facets(text)
    start = facet["index"]["byteStart"]
    assert text.encode()[start : facet["index"]["byteEnd"]].decode() == "https://bousai.example/alerts/1"


def test_a_page_leads_with_the_city_and_marks_exercises() -> None:
    templates = Templates.load()
    v = alert_view(row(tsunami_warning()), "ja", templates)
    assert v["heading"] == "沼津市では" and ("地域", "沼津市") in v["facts"] and v["others"] == ["静岡県"]
    assert grade(tsunami_warning(), None) == "warning"
    drill = alert_view(row(tsunami_warning(status=Status.EXERCISE)), "ja", templates)
    assert drill["exercise"] and "【訓練】" in drill["summary"]
    en = alert_view(row(tsunami_warning()), "en", templates)
    assert en["heading"] == "For Numazu"


def test_open_data_carries_the_licence_and_jma_credit() -> None:
    rows = [row(tsunami_warning()), row(make_alert())]
    csv = opendata.as_csv(rows, "https://bousai.example").decode("utf-8")
    assert csv.startswith("\ufeffpublic_id,") and "出典：気象庁" in csv
    doc = json.loads(opendata.as_json(rows, "https://bousai.example"))
    assert doc["licence"].startswith("CC BY 4.0") and doc["alerts"][0]["credit"] == "出典：気象庁"
    assert doc["alerts"][1]["credit"] is None


def test_x_cost_command(capsys: pytest.CaptureFixture[str]) -> None:
    file = Path(__file__).resolve().parents[2] / "config/demo/telegrams/20231009072652_07314633_VTSE41.xml"
    assert cli.main(["x-cost", str(file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost_with_link_usd"] == "0.200" and out["cost_without_link_usd"] == "0.015"


def test_a_tsunami_page_leads_with_the_readers_own_grade_and_says_the_body_once() -> None:
    # 2023-10-09 07:26: 津波注意報 for 伊豆諸島 and others, only 津波予報 (slight sea-level change) for 静岡県.
    path = Path(__file__).parents[2] / "config" / "demo" / "telegrams" / "20231009072652_07314633_VTSE41.xml"
    outcome = parse_telegram(path.read_bytes(), url=path.name)
    assert isinstance(outcome, Parsed)
    alert = outcome.alert
    assert alert.event == "津波注意報"
    view = alert_view(row(alert), "ja", Templates.load())
    assert view["badge_event"] == "津波予報" and view["grade"] == "info"  # not the advisory's yellow
    assert view["action"] == "海に入っての作業や釣り、海水浴などに際しては十分な注意をしてください。"
    assert view["summary"].startswith("【津波予報】\n静岡県: 津波予報")
    assert alert.description.strip().splitlines()[0] not in view["summary"]  # the body has its own section
    english = alert_view(row(alert), "en", Templates.load())
    assert english["action"] == "Take care when working, fishing or swimming in the sea."


def test_an_intensity_report_says_what_to_do(shared_data: Path) -> None:
    outcome = parse_telegram((shared_data / "jma" / "live_noto2024" / "WInfoL.xml").read_bytes(), url="WInfoL.xml")
    assert isinstance(outcome, Parsed) and outcome.alert.event == "震源・震度情報"
    view = alert_view(row(outcome.alert, details=dict(outcome.alert.details)), "en", Templates.load())
    assert view["action"].startswith("Protect yourself")
