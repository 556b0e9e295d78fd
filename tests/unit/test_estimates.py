"""The dashboard's estimates: time until the last recipient, the advice it earns, channel health, X's cost."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dispatcher.store.progress import PROGRESS_KEYS, AlertHead
from dispatcher.store.reports import Pause
from dispatcher.web.context import ChannelInfo
from dispatcher.web.estimates import alert_estimates, channel_health, duration

TELEGRAM = ChannelInfo(rate=30.0)
X = ChannelInfo(rate=95 / 900, broadcast=True, price=Decimal("0.015"))


def counts(**n: int) -> dict[str, int]:
    return {**dict.fromkeys(PROGRESS_KEYS, 0), **n}


def head(alert_id: int, priority: int) -> AlertHead:
    return {"id": alert_id, "event": "e", "headline": "", "source": "jma", "kind": "", "status": "actual",
            "state": "active", "priority": priority, "received_at": "2026-12-04T00:00:00+00:00"}  # fmt: skip


def pause(channel: str, seconds_left: int | None, why: Any = "provider") -> Pause:
    return {"channel": channel, "why": why, "until": None, "seconds_left": seconds_left, "reason": "429",
            "by": None, "since": None, "failures": 0, "degraded": False}  # fmt: skip


def test_forty_thousand_telegram_recipients_at_30_per_second_take_22_minutes_and_say_what_would_help() -> None:
    view = alert_estimates({"telegram": TELEGRAM}, {1: {"telegram": counts(queued=40_000)}}, {1: head(1, 1)}, [])
    tg = view[1]["channels"]["telegram"]
    assert tg["eta_seconds"] == round(40_000 / 30, 1) and tg["eta"] == "22 minutes"
    assert tg["advice"].startswith("40,000 Telegram recipients at 30 msg/s take 22 minutes")
    assert "district channel" in tg["advice"]
    assert view[1]["pending"] == 40_000


def test_the_queue_ahead_is_the_more_urgent_and_older_alerts_and_a_pause_adds_its_rest() -> None:
    progress = {
        1: {"telegram": counts(queued=300)},  # an advisory (priority 2), older
        2: {"telegram": counts(queued=60, sending=30)},  # a warning (1), newer: claimed first
        3: {"telegram": counts(queued=90)},  # another advisory, newest
    }
    heads = {1: head(1, 2), 2: head(2, 1), 3: head(3, 2)}
    view = alert_estimates({"telegram": TELEGRAM}, progress, heads, [pause("telegram", 20)])
    assert view[2]["channels"]["telegram"]["ahead"] == 0
    assert view[2]["channels"]["telegram"]["eta_seconds"] == 20 + 90 / 30
    assert view[1]["channels"]["telegram"]["ahead"] == 90
    assert view[3]["channels"]["telegram"]["ahead"] == 390
    assert view[3]["channels"]["telegram"]["eta_seconds"] == 20 + 480 / 30
    assert view[3]["channels"]["telegram"]["advice"] is None, "16 s is no reason for advice"
    held = alert_estimates({"telegram": TELEGRAM}, progress, heads, [pause("telegram", None, "operator")])
    assert held[2]["channels"]["telegram"]["eta_seconds"] is None
    assert held[2]["channels"]["telegram"]["eta"] == "unknown (held until resumed)"


def test_finished_and_unknown_channels() -> None:
    view = alert_estimates({}, {1: {"line": counts(delivered=5), "mail": counts(queued=2)}}, {1: head(1, 1)}, [])
    assert view[1]["channels"]["line"]["eta"] == "done" and view[1]["channels"]["line"]["total"] == 5
    assert view[1]["channels"]["mail"]["eta"] == "unknown (channel not enabled here)"


def test_health_gives_rate_against_limit_errors_waiting_cost_of_x_and_the_quota_hook() -> None:
    progress = {1: {"x": counts(queued=3), "telegram": counts(queued=10, retrying=4, delivered=5)}}
    info = {"telegram": ChannelInfo(rate=30.0, quota=lambda: 1234), "x": X}
    rates = {"telegram": (28.5, 0.02)}
    health = channel_health(info, progress, {1: head(1, 1)}, [pause("telegram", 5)], rates, {"telegram": 28.5})
    tg, x = health["telegram"], health["x"]
    assert tg["rate_now"] == 28.5 and tg["limit"] == 30.0 and tg["error_rate"] == 0.02
    assert tg["paused"] and tg["pending"] == 10 and tg["retrying"] == 4
    assert tg["clear_seconds"] == round(5 + 10 / 28.5, 1), "at the pace measured now"
    assert tg["quota_remaining"] == 1234 and tg["queued_cost"] is None
    assert x["queued_cost"] == "0.045" and x["price"] == "0.015" and x["quota_remaining"] is None
    assert x["clear"] == duration(3 / (95 / 900))


def test_durations_read_as_people_say_them() -> None:
    assert duration(12.2) == "13 s"
    assert duration(1333) == "22 minutes"
    assert duration(3900) == "65 minutes"
    assert duration(7500) == "2 h 05 min"


def test_the_estimate_follows_the_steady_measured_pace_when_it_is_below_the_limit() -> None:
    progress = {1: {"telegram": counts(queued=300)}}
    slow = alert_estimates({"telegram": TELEGRAM}, progress, {1: head(1, 1)}, [], {"telegram": 10.0})
    assert slow[1]["channels"]["telegram"]["eta_seconds"] == 30.0
    idle = alert_estimates({"telegram": TELEGRAM}, progress, {1: head(1, 1)}, [], {"telegram": 0.0})
    assert idle[1]["channels"]["telegram"]["eta_seconds"] == 10.0, "nothing measured: the limit"
