"""Rate limiting: pure timing logic, measured on the event loop's clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from dispatcher.ratelimit import (
    JITTER_MARGIN,
    RateLimiter,
    RecipientSpacing,
    SlidingWindow,
)


def assert_at_most_per_window(stamps: list[float], limit: int) -> None:
    """No more than ``limit`` of ``stamps`` within any window (one second plus the margin)."""
    span = 1.0 + JITTER_MARGIN
    for i, t in enumerate(stamps):
        assert sum(1 for u in stamps[i:] if u - t < span - 0.005) <= limit


async def test_window_never_admits_more_than_the_limit_in_any_span() -> None:
    limiter = RateLimiter(20)
    stamps: list[float] = []
    for _ in range(45):
        await limiter.acquire()
        stamps.append(time.monotonic())
    assert_at_most_per_window(stamps, 20)
    # …and it does not crawl: 45 at 20/s take a bit over 2 s, not 4.
    assert stamps[-1] - stamps[0] < 3.0


async def test_fast_path_keeps_waiters_in_order() -> None:
    window = SlidingWindow(3, 0.3)
    for _ in range(3):
        await window.acquire()
    waiter = asyncio.create_task(window.acquire())
    await asyncio.sleep(0.01)
    # Someone is waiting for the window: a newcomer may not jump the queue.
    assert window._lock.locked()
    assert not window.try_acquire()
    await asyncio.wait_for(waiter, timeout=2.0)


def test_recipient_spacing_reserves_consecutive_slots() -> None:
    spacing = RecipientSpacing(1.0)
    assert spacing.reserve("chat") == 0.0
    second = spacing.reserve("chat")
    assert 1.0 <= second <= 1.0 + JITTER_MARGIN + 0.01
    assert spacing.reserve("other") == 0.0
    # Too far away: not reserved, so later slots are not pushed back.
    assert spacing.reserve("chat", max_wait=0.5) > 0.5
    assert 2.0 <= spacing.reserve("chat") <= 2.1


def test_recipient_spacing_counts_from_when_a_late_request_left() -> None:
    now = [0.0]
    spacing = RecipientSpacing(1.0, margin=0.0, clock=lambda: now[0])
    assert spacing.reserve("chat") == 0.0  # A's slot: now
    assert spacing.reserve("chat") == 1.0  # B's slot: one interval on
    now[0] = 0.9  # A leaves only now: it queued 0.9 s for the channel's global budget
    assert spacing.sending("chat") == 0.0
    now[0] = 1.0  # B's slot has come, but it would follow A by 0.1 s
    assert spacing.sending("chat") == pytest.approx(0.9)
    assert spacing.sending("other") == 0.0
    # A request later than every slot reserved: the next reservations count from it.
    now[0] = 3.5
    assert spacing.sending("chat") == 0.0
    now[0] = 3.6
    assert spacing.reserve("chat") == pytest.approx(0.9)


async def test_share_halves_the_pace_when_a_second_daemon_joins() -> None:
    limiter = RateLimiter(20)
    limiter.set_share(2)  # two daemons share the budget
    stamps: list[float] = []
    for _ in range(25):
        await limiter.acquire()
        stamps.append(time.monotonic())
    assert_at_most_per_window(stamps, 10)
    limiter.set_share(1)  # alone again: the whole budget
    assert (limiter.bucket.rate, limiter.window.limit) == (20, 20)
    slow = RateLimiter(1)
    slow.set_share(2)  # below one per second: one request every two seconds
    assert (slow.window.limit, round(slow.window.span, 3)) == (1, round(2.0 + JITTER_MARGIN, 3))


async def test_a_longer_window_allows_a_burst_then_waits_for_the_window() -> None:
    # "At most 5 in any 0.6 s", at up to 50/s: five go at once-ish, the sixth waits.
    limiter = RateLimiter(50, window=(5, 0.6))
    t0 = time.monotonic()
    stamps = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(time.monotonic() - t0)
    assert stamps[4] < 0.3, "the first five are a burst at the per-second pace"
    assert stamps[5] >= 0.6, "the sixth waits until the first leaves the window"
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.6
    limiter.set_share(2)
    assert limiter.long is not None and limiter.long.limit == 2


async def test_window_wait_says_when_a_slot_frees_without_taking_it() -> None:
    window = SlidingWindow(2, 0.5, margin=0.0)
    assert window.wait() == 0.0
    for _ in range(2):
        await window.acquire()
    wait = window.wait()
    assert 0.4 < wait <= 0.5
    assert window.wait() <= wait, "asking takes nothing"
    await asyncio.sleep(wait + 0.02)
    assert window.wait() == 0.0
    assert RateLimiter(10).window_wait() == 0.0, "no longer window, no wait"
