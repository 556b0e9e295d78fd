"""The pure parts of the broadcast intake: body parsing, group mapping, policy, feed entries, signing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import feedparser
import pytest

from dispatcher.config import ConfigError
from dispatcher.model import MsgType, Priority, Severity, Status
from dispatcher.pipeline import Pipeline
from dispatcher.settings import load
from dispatcher.signing import verify_signature
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
    assert (
        s.sources["broadcast"].enabled
        and s.sources["broadcast"].secret == key
        and key not in repr(s.sources["broadcast"])
    )
    # The operator's mapping replaces the packaged example groups.
    assert s.sources["broadcast"].groups == {"hara": ("numazu-hara",)}
    assert s.sources["broadcast"].routes == {"chime_test": ("email",)}
    cfg.write_text("[broadcast.groups]\nhara = [1]\n")
    with pytest.raises(ConfigError, match=r"groups\.hara"):
        load(cfg, env={})
    cfg.write_text("[broadcast]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"c\.toml.*needs secret_env"):
        load(cfg, env={})
    cfg.write_text("[broadcast]\nhold_ordinery = true\n")
    with pytest.raises(ConfigError, match="did you mean 'hold_ordinary'"):
        load(cfg, env={})


# -- hostile bodies (issue 17, item 6): a BodyError that says why, before the database --------


def _json(**fields: object) -> bytes:
    doc: dict[str, object] = {
        "id": "H-1",
        "aired_at": AIRED.isoformat(),
        "priority": "emergency",
        "groups": ["heda"],
        "text": TEXT,
    }
    doc.update(fields)
    # ASCII escapes: a lone surrogate (\ud800) travels as JSON does it, not as invalid UTF-8.
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"id": "x", "groups": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"id": ' + b"9" * 5000 + b"}", "not JSON"),
        (_json(sender="s" * 3000), "sender must be at most 200 characters"),
        (_json(sender="s" * 20_000), "sender must be at most 200 characters"),
        (_json(id="x" * 201), "id must be"),
        (_json(id="NMZ\u0000-1"), "id must not contain control or format characters (U+0000)"),
        (_json(id="NMZ\n1"), "id must not contain control"),
        (_json(sender="console\u202e"), "sender must not contain control or format characters (U+202E)"),
        (_json(text="避難\u0000してください"), "text must not contain control characters (U+0000)"),
        (_json(text="\ud800"), "text must not contain control characters (U+D800)"),
        (_json(text="x" * 10_001), "text is longer than 10000 characters"),
        (_json(chime="c" * 201), "chime must be at most 200 characters"),
        (_json(category="\u0000"), "category must not contain control"),
        (_json(groups=["g" * 201]), "groups[0] must be at most 200 characters"),
        (_json(groups=["heda"] * 101), "groups must have at most 100 entries"),
        (_json(groups=["he\u0000da"]), "groups[0] must not contain control"),
        (_json(msg_type="update", references=["r" * 201]), "references[0] must be at most 200"),
        (_json(msg_type="update", references=["r"] * 101), "references must have at most 100"),
        (_json(msg_type="x" * 5000), "msg_type must be alert, update or cancel"),
        (_json(aired_at="0001-01-01T00:00:00+14:00"), "aired_at 0001-01-01T00:00:00+14:00 is out of range"),
        (_json(aired_at="9999-12-31T23:59:59-14:00"), "aired_at 9999-12-31T23:59:59-14:00 is out of range"),
        (_json(aired_at="1999-12-31T23:59:59+09:00"), "out of range"),
        (_json(aired_at=(datetime.now(UTC) + timedelta(days=2)).isoformat()), "out of range"),
    ],
    ids=lambda v: None if isinstance(v, bytes) else v[:50],
)
def test_hostile_json_bodies_are_refused_before_the_database(body: bytes, message: str) -> None:
    with pytest.raises(BodyError) as info:
        parse_json_broadcast(body, default_sender="console")
    assert message in str(info.value)
    assert len(str(info.value)) < 400, "a reason quotes at most a bounded part of what was sent"


def test_time_at_the_edges_of_the_range_is_accepted() -> None:
    soon = (datetime.now(UTC) + timedelta(hours=23)).replace(microsecond=0)
    assert parse_json_broadcast(_json(aired_at=soon.isoformat()), default_sender="c").aired_at == soon
    first = datetime(2000, 1, 1, tzinfo=UTC)
    assert parse_json_broadcast(_json(aired_at=first.isoformat()), default_sender="c").aired_at == first


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (cap_body("I" * 5000, TEXT, ["heda"], sent=AIRED), "identifier must be at most 200"),
        (cap_body("CAP-S", TEXT, ["heda"], sent=AIRED, sender="s" * 3000), "sender must be at most 200"),
        (cap_body("CAP-W", TEXT, ["heda"], sent=AIRED).replace(b">CAP-W<", b">CAP\xc2\x85W<"), "identifier must not"),
        (
            cap_body("CAP-T", TEXT, ["heda"], sent=AIRED).replace(
                AIRED.isoformat(timespec="seconds").encode(), b"0001-01-01T00:00:00+14:00"
            ),
            "sent",
        ),
        (cap_body("CAP-X", "x" * 10_001, ["heda"], sent=AIRED), "longer than 10000 characters"),
        (cap_body("CAP-G", TEXT, ["g" * 201], sent=AIRED), "geocode value must be at most 200"),
        (
            cap_body("CAP-R", TEXT, ["heda"], sent=AIRED, msg_type="Update", references="s,"
                     + "r" * 300 + ",2025-06-01T07:30:00+09:00"),
            "references",
        ),
    ],
    ids=lambda v: None if isinstance(v, bytes) else v[:50],
)  # fmt: skip
def test_hostile_cap_bodies_are_refused_before_the_database(body: bytes, message: str) -> None:
    with pytest.raises(BodyError) as info:
        parse_cap_broadcast(body)
    assert message in str(info.value)
    assert len(str(info.value)) < 400
