"""The JSON log format: an ``event`` on every line, named or derived from the message's template."""

from __future__ import annotations

import json
import logging

from dispatcher.logs import JsonFormatter, TextFormatter, event_name


def record(name: str, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    r.__dict__.update(extra)
    return r


def test_the_event_is_the_one_given_or_one_per_template() -> None:
    assert event_name(record("dispatcher.worker", "delivered", event="delivery.delivered")) == "delivery.delivered"
    a = record("dispatcher.pipeline", "reference not honoured: %s", "x")
    b = record("dispatcher.pipeline", "reference not honoured: %s", "something else entirely")
    assert event_name(a) == event_name(b) == "pipeline.reference_not_honoured"
    assert event_name(record("sources.jma.feed", "JMA feed unreachable")) == "jma.feed.jma_feed_unreachable"


def test_json_lines_carry_the_fields_and_text_lines_leave_the_event_out() -> None:
    r = record(
        "dispatcher.worker", "delivered", event="delivery.delivered", channel="telegram", alert_id=3, delivery_id=9
    )
    obj = json.loads(JsonFormatter().format(r))
    assert obj["event"] == "delivery.delivered" and obj["msg"] == "delivered"
    assert (obj["channel"], obj["alert_id"], obj["delivery_id"]) == ("telegram", 3, 9)
    text = TextFormatter().format(r)
    assert "delivery.delivered" not in text and "delivery_id=9" in text
    lists = json.loads(JsonFormatter().format(record("x", "m", replaced=[1, 2])))
    assert lists["replaced"] == [1, 2] and lists["event"] == "x.m"
