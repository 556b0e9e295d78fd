"""LINE webhook bodies: the signature rule and the events as the service reads them (no I/O)."""

from __future__ import annotations

import json

import pytest

from channels.line_events import BadWebhook, parse, signature, signed
from dispatcher.standins.line_webhook import LineWebhookSender
from dispatcher.standins.line_webhook import signature as standin_signature

SECRET = "channel-secret"
USER = "U" + "a" * 32


def body(*events: dict[str, object]) -> bytes:
    return json.dumps({"destination": "U" + "0" * 32, "events": list(events)}).encode()


def test_signature_is_lines_and_checked_exactly() -> None:
    raw = body()
    assert signature(SECRET, raw) == standin_signature(SECRET, raw)
    assert signed(SECRET, raw, signature(SECRET, raw))
    assert not signed(SECRET, raw + b" ", signature(SECRET, raw))
    assert not signed("other", raw, signature(SECRET, raw))
    assert not signed(SECRET, raw, None) and not signed(SECRET, raw, "")


def test_events_become_inbound() -> None:
    make = LineWebhookSender("http://unused", SECRET)
    events = parse(
        body(
            make.follow(USER),
            make.text(USER, "/latest"),
            make.location(USER, 35.0956, 138.8636, title="沼津駅"),
            make.postback(USER, "lang:en"),
            make.unfollow(USER),
        )
    )
    assert [e.kind for e in events] == ["follow", "text", "location", "press", "unfollow"]
    assert all(e.address == USER and e.channel == "line" for e in events)
    assert events[0].reply_token and events[4].reply_token is None
    assert events[1].text == "/latest"
    assert (events[2].latitude, events[2].longitude, events[2].title) == (35.0956, 138.8636, "沼津駅")
    assert events[3].data == "lang:en"
    assert len(events[0].event_id) == 26


def test_only_active_one_to_one_events_are_read() -> None:
    make = LineWebhookSender("http://unused", SECRET)
    standby = {**make.text(USER, "hi"), "mode": "standby"}
    group = {**make.text(USER, "hi"), "source": {"type": "group", "groupId": "C" + "1" * 32, "userId": USER}}
    sticker = {**make.text(USER, "x"), "message": {"type": "sticker", "id": "1", "packageId": "1", "stickerId": "1"}}
    far = make.location(USER, 135.0, 0.0)
    assert [e.kind for e in parse(body(standby, group, sticker, far))] == ["other", "other"]


def test_not_a_webhook_body() -> None:
    for raw in (b"", b"[]", b'{"events": 3}', b"\xff"):
        with pytest.raises(BadWebhook):
            parse(raw)


def test_events_map_to_the_conversation() -> None:
    from channels.line_events import Inbound
    from dispatcher.residents.conversation import Command, Follow, Press, SharedLocation, Text, Unfollow
    from dispatcher.web.line_hook import to_event

    def ev(kind: str, **kw: object) -> Inbound:
        return Inbound(kind, "line", USER, **kw)  # type: ignore[arg-type]

    assert to_event(ev("follow")) == Follow() and to_event(ev("unfollow")) == Unfollow()
    assert to_event(ev("text", text="/latest")) == Command("latest")
    assert to_event(ev("text", text="最新")) == Command("latest")
    assert to_event(ev("text", text="ＳＴＯＰ")) == Command("stop")
    assert to_event(ev("text", text="大岡")) == Text("大岡")
    assert to_event(ev("location", latitude=35.1, longitude=138.9)) == SharedLocation(35.1, 138.9)
    assert to_event(ev("press", data="L:en")) == Press("L:en")
    assert to_event(ev("press", data="/settings")) == Command("settings")
    assert to_event(ev("other")) is None


def test_reply_as_quick_replies_within_lines_limits() -> None:
    from channels.line_reply import reply_message

    reply = {
        "text": "Your places",
        "buttons": [[{"label": "Pick a district from the list", "data": "P:0"}], [{"label": "Done", "data": "M:done"}]],
    }
    message = reply_message(reply, "ja")
    items = message["quickReply"]["items"]
    assert items[0]["action"] == {"type": "location", "label": "📍現在地を送る"}
    assert items[1]["action"] == {
        "type": "postback",
        "label": "Pick a district fro…",
        "data": "P:0",
        "displayText": "Pick a district fro…",
    }
    assert all(len(i["action"]["label"]) <= 20 for i in items)
    full = {"text": "x", "buttons": [[{"label": str(i), "data": f"P:{i}"} for i in range(13)]]}
    assert len(reply_message(full, "en")["quickReply"]["items"]) == 13, "no room for the picker: not added"
    assert "quickReply" not in reply_message({"text": "hi"}, "en")
    with pytest.raises(ValueError, match="at most 13"):
        reply_message({"text": "x", "buttons": [[{"label": "a", "data": f"D:{i}"} for i in range(14)]]}, "en")
    with pytest.raises(ValueError, match="postback data"):
        reply_message({"text": "x", "buttons": [[{"label": "a", "data": "D" * 301}]]}, "en")
    long = reply_message({"text": "🌊" * 3000}, "en")["text"]
    assert len(long.encode("utf-16-le")) // 2 <= 5000 and long.endswith("…")
