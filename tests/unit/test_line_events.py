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
