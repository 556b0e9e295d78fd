"""The pure parts of the broadcast intake: body parsing, group mapping, policy, feed entries, signing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import feedparser
import pytest

from channels.webhook import verify_signature
from dispatcher.model import MsgType, Priority, Severity, Status
from dispatcher.pipeline import Pipeline
from dispatcher.settings import ConfigError, load
from geo import default_index
from sources.broadcast import BodyError, BroadcastPolicy, parse_cap_broadcast, parse_json_broadcast, to_alert
from sources.broadcast.examples import cap_body, json_body, signed_headers
from sources.broadcast.feed import entry_broadcast, entry_key
from sources.broadcast.mapping import CITY_CODE, resolve_groups

JST = timezone(timedelta(hours=9))
AIRED = datetime(2025, 6, 1, 7, 30, tzinfo=JST)
TEXT = "こちらは、防災ぬまづです。戸田地区に避難指示を発令しました。直ちに避難してください。"
DISTRICTS = {d.code: d.name for d in default_index().districts}


def policy(**kw: object) -> BroadcastPolicy:
    base: dict[str, object] = {
        "groups": {"heda": ("numazu-heda",), "coast": ("numazu-heda", "numazu-nishiura")},
        "routes": {"chime_test": ("email",)},
        "districts": DISTRICTS,
    }
    base.update(kw)
    return BroadcastPolicy(**base)  # type: ignore[arg-type]


def test_json_form_parses_with_every_field() -> None:
    b = parse_json_broadcast(
        json_body("B-1", TEXT, ["heda"], aired_at=AIRED, category="evacuation"), default_sender="console"
    )
    assert (b.identifier, b.sender, b.aired_at, b.priority, b.text) == ("B-1", "console", AIRED, "emergency", TEXT)
    assert b.groups == ("heda",) and b.chime == "緊急チャイム" and b.category == "evacuation"
    assert b.status is Status.ACTUAL and b.msg_type is MsgType.ALERT and b.kind == "JSON"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"id": "x"}).encode(), "missing required field(s): aired_at, priority, groups, text"),
        (
            json.dumps({"id": "x", "aired_at": "2025-06-01T07:30:00", "priority": "emergency", "groups": ["a"],
                        "text": "t"}).encode(),
            "no UTC offset",
        ),
        (
            json.dumps({"id": "x", "aired_at": "2025-06-01T07:30:00+09:00", "priority": "urgent", "groups": ["a"],
                        "text": "t"}).encode(),
            "priority must be one of emergency, ordinary",
        ),
        (
            json.dumps({"id": "x", "aired_at": "2025-06-01T07:30:00+09:00", "priority": "ordinary", "groups": [],
                        "text": "t"}).encode(),
            "groups must be a non-empty list",
        ),
        (
            json.dumps({"id": "x", "aired_at": "2025-06-01T07:30:00+09:00", "priority": "ordinary", "groups": ["a"],
                        "text": "  "}).encode(),
            "text must be a non-empty string",
        ),
        ("\udcff".encode("utf-8", "surrogateescape"), "not UTF-8"),
    ],
)  # fmt: skip
def test_json_form_errors_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_json_broadcast(body, default_sender="console")


def test_cap_form_in_the_city_profile() -> None:
    b = parse_cap_broadcast(
        cap_body("CAP-1", TEXT, ["heda", "coast"], sent=AIRED, priority="ordinary", category="missing_person")
    )
    assert b.identifier == "CAP-1" and b.sender == "bousai-musen.city.numazu.shizuoka.jp"
    assert b.groups == ("heda", "coast") and b.text == TEXT and b.aired_at == AIRED
    assert b.priority == "ordinary" and b.category == "missing_person" and b.kind == "CAP1.2"


def test_cap_exercise_update_and_errors() -> None:
    b = parse_cap_broadcast(
        cap_body("CAP-2", TEXT, ["heda"], sent=AIRED, status="Exercise", msg_type="Update",
                 references="bousai-musen.city.numazu.shizuoka.jp,CAP-1,2025-06-01T07:30:00+09:00")
    )  # fmt: skip
    assert b.status is Status.EXERCISE and b.msg_type is MsgType.UPDATE and b.references == ("CAP-1",)
    with pytest.raises(BodyError, match="not a usable CAP alert"):
        parse_cap_broadcast(b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x</identifier>")
    with pytest.raises(BodyError, match="DOCTYPE"):
        parse_cap_broadcast(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><alert/>')
    with pytest.raises(BodyError, match="no area"):
        parse_cap_broadcast(cap_body("CAP-3", TEXT, [], sent=AIRED).replace(b"<areaDesc></areaDesc>", b""))


def test_groups_map_to_districts_and_all_is_the_whole_city() -> None:
    res = resolve_groups(("coast", "numazu-ooka", "門池", "mystery"), policy())
    codes = [a.codes for a in res.areas]
    assert codes == [("numazu-heda",), ("numazu-nishiura",), ("numazu-ooka",), ("numazu-kadoike",)]
    assert [a.description for a in res.areas] == ["戸田", "西浦", "大岡", "門池"]
    assert res.unknown == ("mystery",)
    (city,) = resolve_groups(("all",), policy()).areas
    assert city.description == "沼津市" and city.codes[0] == CITY_CODE and set(city.codes[1:]) == set(DISTRICTS)


def test_emergency_maps_to_critical_and_is_sent_at_once() -> None:
    b = parse_json_broadcast(
        json_body("B-1", TEXT, ["heda", "nowhere"], aired_at=AIRED, category="evacuation"), default_sender="c"
    )
    m = to_alert(b, policy())
    a = m.alert
    assert not m.hold and m.unknown_groups == ("nowhere",)
    assert a.priority is Priority.CRITICAL and a.severity is Severity.EXTREME
    assert a.event == "防災行政無線（避難情報）" and a.source == "broadcast" and a.kind == "broadcast"
    assert a.description == TEXT and a.headline == "戸田への緊急放送" and a.sent == AIRED
    assert a.area_codes == ("numazu-heda",)
    assert a.details["unknown_groups"] == ["nowhere"]
    assert a.details["problems"] == ["unknown loudspeaker group 'nowhere'"]
    assert "channels" not in a.details


def test_ordinary_is_held_by_policy_and_routine_category_is_routed() -> None:
    b = parse_json_broadcast(
        json_body("B-2", "時報です", ["all"], aired_at=AIRED, priority="ordinary", category="chime_test"),
        default_sender="c",
    )
    m = to_alert(b, policy())
    assert m.hold and "hold_ordinary" in m.held_because
    assert m.alert.priority is Priority.LOW and m.alert.severity is Severity.MINOR
    assert m.alert.details["channels"] == ["email"] and m.alert.event == "防災行政無線（試験放送）"
    assert not to_alert(b, policy(hold_ordinary=False)).hold


def test_no_known_group_is_held_and_reported_never_dropped() -> None:
    b = parse_json_broadcast(json_body("B-3", TEXT, ["ghost"], aired_at=AIRED), default_sender="c")
    m = to_alert(b, policy(hold_emergency=False))
    assert m.hold and m.alert.areas == () and "no known loudspeaker group" in m.held_because
    assert m.alert.details["unknown_groups"] == ["ghost"]


def test_exercise_is_fenced() -> None:
    b = parse_json_broadcast(json_body("B-4", TEXT, ["heda"], aired_at=AIRED, exercise=True), default_sender="c")
    assert not to_alert(b, policy()).alert.is_public


def test_pipeline_honours_channel_restriction() -> None:
    pipe = Pipeline(None, targeter=None, channels=["telegram", "email"], broadcast_channels=["webhook"])  # type: ignore[arg-type]
    b = parse_json_broadcast(
        json_body("B-5", "t", ["heda"], aired_at=AIRED, priority="ordinary", category="chime_test"),
        default_sender="c",
    )
    assert pipe.channels_for(to_alert(b, policy()).alert) == (["email"], [])
    b2 = parse_json_broadcast(json_body("B-6", "t", ["heda"], aired_at=AIRED), default_sender="c")
    assert pipe.channels_for(to_alert(b2, policy()).alert) == (["telegram", "email"], ["webhook"])


def test_signed_headers_verify_and_tampering_does_not() -> None:
    body = json_body("B-7", TEXT, ["heda"], aired_at=AIRED)
    h = signed_headers("s3cret", body, "application/json", timestamp=1_700_000_000)
    assert h["X-Timestamp"] == "1700000000" and h["X-Signature-256"].startswith("sha256=")
    assert verify_signature("s3cret", h["X-Timestamp"], body, h["X-Signature-256"])
    assert not verify_signature("s3cret", "1700000001", body, h["X-Signature-256"])
    assert not verify_signature("s3cret", h["X-Timestamp"], body + b" ", h["X-Signature-256"])


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>沼津市 防災行政無線 放送内容</title><id>urn:x</id>
<updated>2025-06-01T08:00:00+09:00</updated>
<entry><id>urn:numazu:bousai:1</id><title>行方不明者のお知らせ</title>
<published>2025-06-01T07:30:00+09:00</published><updated>2025-06-01T07:30:00+09:00</updated>
<category term="heda"/><category term="missing_person"/>
<summary type="html">こちらは防災ぬまづです。&lt;br&gt;行方不明者のお知らせです。</summary></entry>
<entry><title>時報</title><link href="http://127.0.0.1/b/2"/><updated>2025-06-01T08:00:00+09:00</updated></entry>
</feed>"""


def test_feed_entries_become_broadcasts() -> None:
    first, second = feedparser.parse(ATOM.encode()).entries
    b = entry_broadcast(first, sender="console", feed_url="http://127.0.0.1/feed")
    assert b is not None
    assert b.identifier == "urn:numazu:bousai:1" and b.groups == ("heda",) and b.category == "missing_person"
    assert b.text == "こちらは防災ぬまづです。\n行方不明者のお知らせです。"
    assert b.aired_at == datetime(2025, 5, 31, 22, 30, tzinfo=UTC) and b.priority == "ordinary"
    b2 = entry_broadcast(second, sender="console", feed_url="http://127.0.0.1/feed")
    assert (
        b2 is not None and b2.groups == ("all",) and b2.text == "時報" and entry_key(second) == "http://127.0.0.1/b/2"
    )


def test_settings_section_types_secrets_and_checks(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[broadcast]\nenabled = true\nsecret_env = "BSECRET"\nhold_ordinary = false\n'
        '[broadcast.groups]\nhara = ["numazu-hara"]\n[broadcast.routes]\nchime_test = ["email"]\n'
    )
    key = "xyz-broadcast-secret-of-32-bytes"
    s = load(cfg, env={"BSECRET": key})
    assert s.broadcast.enabled and s.broadcast.secret == key and key not in repr(s.broadcast)
    # The operator's mapping replaces the packaged example groups.
    assert s.broadcast.groups == {"hara": ("numazu-hara",)}
    assert s.broadcast.routes == {"chime_test": ("email",)}
    cfg.write_text("[broadcast.groups]\nhara = [1]\n")
    with pytest.raises(ConfigError, match=r"groups\.hara"):
        load(cfg, env={})
    cfg.write_text("[broadcast]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"c\.toml.*needs secret_env"):
        load(cfg, env={})
    cfg.write_text("[broadcast]\nhold_ordinery = true\n")
    with pytest.raises(ConfigError, match="did you mean 'hold_ordinary'"):
        load(cfg, env={})
