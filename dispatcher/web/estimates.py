"""Channel health and the time until an alert's last recipient is reached: pure arithmetic, no I/O.

The estimate for an alert on a channel is the queue ahead of its deliveries (what is
pending for alerts the worker claims first: a more urgent priority, or the same one
and older) plus its own pending deliveries, divided by the channel's rate, plus
what is left of any pause. A per-subscriber channel whose estimate runs past
:data:`HINT_AFTER` says what would reach people sooner: a district channel (one post
per district) for Telegram, LINE's multicast, a broadcast channel otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dispatcher.store.progress import AlertHead, Progress
from dispatcher.store.reports import Pause
from dispatcher.web.context import ChannelInfo

# An estimate beyond this many seconds is worth a suggestion.
HINT_AFTER = 300.0
NAMES = {"telegram": "Telegram", "line": "LINE", "email": "e-mail", "x": "X", "mastodon": "Mastodon"}
REMEDIES = {
    "telegram": "a Telegram district channel (one post per district) would reach them within seconds",
    "line": "LINE multicast (500 recipients a request) or a broadcast to the official account's friends would"
    " reach them within a minute",
}
GENERIC_REMEDY = "a broadcast channel (one post per district) would reach them within seconds"


def _pending(c: Mapping[str, int]) -> int:
    return c.get("queued", 0) + c.get("sending", 0)


def duration(seconds: float) -> str:
    """``45 s``, ``22 minutes``, ``1 h 05 min``."""
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def pause_left(pauses: Sequence[Pause], channel: str) -> float | None:
    """Seconds until every pause of ``channel`` ends (0: none; None: held until resumed)."""
    left = 0.0
    for p in pauses:
        if p["channel"] != channel:
            continue
        if p["seconds_left"] is None:
            return None
        left = max(left, float(p["seconds_left"]))
    return left


def _pace(info: ChannelInfo, steady: float | None) -> float:
    """Recipients a second to expect: the limit, or the pace measured over a steady stretch of
    sending (see ``paces``) when lower and not nothing."""
    return min(info.rate, steady) if steady is not None and steady >= 0.01 * info.rate else info.rate


def advice(channel: str, pending: int, ahead: int, seconds: float, info: ChannelInfo) -> str | None:
    """The sentence a slow per-subscriber channel earns, e.g. "40,000 Telegram recipients at 30 msg/s take
    22 minutes: a Telegram district channel … would reach them within seconds"."""
    if info.broadcast or seconds <= HINT_AFTER or info.rate <= 0:
        return None
    remedy = REMEDIES.get(channel, GENERIC_REMEDY)
    name = NAMES.get(channel, channel)
    queue = f" after {ahead:,} queued ahead" if ahead else ""
    return f"{pending:,} {name} recipients at {info.rate:g} msg/s take {duration(seconds)}{queue}: {remedy}"


def alert_estimates(
    info: Mapping[str, ChannelInfo],
    counts: Progress,
    heads: Mapping[int, AlertHead],
    pauses: Sequence[Pause],
    paces: Mapping[str, float] | None = None,
) -> dict[int, dict[str, Any]]:
    """Per alert: its channels' counts with ``total``, ``pending``, ``eta_seconds`` (None: not
    known, e.g. held until resumed), ``eta`` (words), ``advice`` and ``cost`` (billed channels).

    The pace is the channel's limit, or the rate it has sent at while it was busy the
    whole time measured, when that is lower (a slow provider, a share of the budget
    among several daemons): ``paces``, by channel."""
    paces = paces or {}
    order = sorted(counts, key=lambda i: (heads[i]["priority"] if i in heads else 99, i))
    ahead: dict[str, int] = {}
    out: dict[int, dict[str, Any]] = {}
    for alert_id in order:
        channels: dict[str, Any] = {}
        for channel, c in sorted(counts[alert_id].items()):
            pending = _pending(c)
            before = ahead.get(channel, 0)
            ahead[channel] = before + pending
            ch = info.get(channel)
            eta: float | None = None
            if pending and ch is not None and ch.rate > 0:
                left = pause_left(pauses, channel)
                eta = None if left is None else left + (before + pending) / _pace(ch, paces.get(channel))
            elif not pending:
                eta = 0.0
            row: dict[str, Any] = {**c, "total": sum(v for k, v in c.items() if k != "retrying"), "pending": pending}
            row["ahead"] = before
            row["eta_seconds"] = None if eta is None else round(eta, 1)
            row["eta"] = (
                "done"
                if not pending
                else "unknown (held until resumed)"
                if eta is None and ch is not None
                else "unknown (channel not enabled here)"
                if eta is None
                else duration(eta)
            )
            row["advice"] = advice(channel, pending, before, eta, ch) if ch is not None and eta else None
            row["cost"] = str(ch.price * pending) if ch is not None and ch.price is not None else None
            channels[channel] = row
        out[alert_id] = {"channels": channels, "pending": sum(r["pending"] for r in channels.values())}
    return out


def channel_health(
    info: Mapping[str, ChannelInfo],
    counts: Progress,
    heads: Mapping[int, AlertHead],
    pauses: Sequence[Pause],
    rates: Mapping[str, tuple[float, float | None]],
    paces: Mapping[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per enabled channel: its send rate now against its limit, its pauses, its error share,
    what waits (queued, retrying) and the time to clear it, the cost of what is queued where
    billed and the remaining quota where known (``quota_remaining``, None: not known)."""
    out: dict[str, dict[str, Any]] = {}
    for channel in sorted(set(info) | {p["channel"] for p in pauses}):
        ch = info.get(channel)
        pending = sum(_pending(per.get(channel, {})) for per in counts.values())
        retrying = sum(per.get(channel, {}).get("retrying", 0) for per in counts.values())
        rate, errors = rates.get(channel, (0.0, None))
        mine = [p for p in pauses if p["channel"] == channel]
        left = pause_left(pauses, channel)
        clear = (
            None
            if ch is None or ch.rate <= 0 or left is None
            else left + pending / _pace(ch, (paces or {}).get(channel))
        )
        quota = ch.quota() if ch is not None and ch.quota is not None else None
        out[channel] = {
            "channel": channel,
            "enabled": ch is not None,
            "rate_now": round(rate, 1),
            "limit": None if ch is None else round(ch.rate, 2),
            "batch_size": None if ch is None else ch.batch_size,
            "paused": bool(mine),
            "pauses": mine,
            "error_rate": None if errors is None else round(errors, 4),
            "pending": pending,
            "retrying": retrying,
            "clear_seconds": None if clear is None else round(clear, 1),
            "clear": "—" if not pending else "unknown" if clear is None else duration(clear),
            "queued_cost": str(ch.price * pending) if ch is not None and ch.price is not None else None,
            "price": str(ch.price) if ch is not None and ch.price is not None else None,
            "quota_remaining": quota,
        }
    return out
