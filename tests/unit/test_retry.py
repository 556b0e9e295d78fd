"""Retry decisions: an answer, the claim, the clock and the policy in; the delivery's next state out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from channels.base import Delivered, Reject, Retry
from dispatcher.model import DeliveryState
from dispatcher.retry import (
    MAX_GIVE_BACK,
    Held,
    Pause,
    RetryPolicy,
    Said,
    backoff_delay,
    decide,
    unsendable,
)
from dispatcher.store.outbox import Claimed

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
POLICY = RetryPolicy(backoff_base=2.0, backoff_max=60.0, max_age=3600.0, rng=random.Random(7))


def claim(
    *,
    attempts: int = 0,
    expires: datetime | None = None,
    received: datetime | None = NOW,
    state: str = "active",
    subscription_id: int | None = 7,
) -> Claimed:
    return Claimed(
        id=1,
        alert_id=2,
        address="100001",
        language="ja",
        subscription_id=subscription_id,
        priority=1,
        attempts=attempts,
        alert_state=state,
        alert_expires=expires,
        claim=3,
        alert_received=received,
    )


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        d = backoff_delay(attempt, 2.0, 600.0, rng)
        assert 2.0 <= d <= min(600.0, 2.0 * 2 ** (attempt - 1))
    assert max(backoff_delay(30, 2.0, 600.0, rng) for _ in range(100)) <= 600.0


def test_delivered_is_done_and_spends_the_attempt() -> None:
    d = decide(Delivered("m-1"), claim(), NOW, POLICY)
    assert (d.state, d.remote_id, d.spent, d.said, d.pause) == (
        DeliveryState.DELIVERED,
        "m-1",
        True,
        Said.DELIVERED,
        None,
    )


def test_reject_fails_for_good_and_unsubscribes_only_a_subscription() -> None:
    d = decide(Reject("bot was blocked", unsubscribe=True), claim(), NOW, POLICY)
    assert (d.state, d.error, d.spent, d.unsubscribe) == (DeliveryState.FAILED, "bot was blocked", True, True)
    broadcast = decide(Reject("gone", unsubscribe=True), claim(subscription_id=None), NOW, POLICY)
    assert not broadcast.unsubscribe
    assert not decide(Reject("bad request"), claim(), NOW, POLICY).unsubscribe


def test_a_transient_failure_is_retried_with_capped_backoff_and_spends_the_attempt() -> None:
    for attempts in range(8):
        d = decide(Retry("HTTP 503"), claim(attempts=attempts), NOW, POLICY)
        assert d.state is DeliveryState.QUEUED and d.spent and d.said is Said.FAILED and d.error == "HTTP 503"
        assert d.not_before is not None
        wait = (d.not_before - NOW).total_seconds()
        assert 2.0 <= wait <= min(60.0, 2.0 * 2**attempts)


def test_the_providers_retry_after_wins_over_the_backoff() -> None:
    d = decide(Retry("HTTP 503", after=17.0), claim(attempts=5), NOW, POLICY)
    assert d.not_before == NOW + timedelta(seconds=17)


def test_a_rate_limit_pauses_its_bucket_refunds_the_attempt_and_waits_exactly_as_asked() -> None:
    chat = decide(Retry("Too Many Requests", after=3.0, rate_limited=True, bucket="100001"), claim(), NOW, POLICY)
    assert (chat.state, chat.spent, chat.said) == (DeliveryState.QUEUED, False, Said.RATE_LIMITED)
    assert chat.error == "rate limited: Too Many Requests"
    assert chat.pause == Pause(3.0, "Too Many Requests", "100001")
    assert chat.not_before == NOW + timedelta(seconds=3)
    bare = decide(Retry("slow down", rate_limited=True), claim(), NOW, POLICY)
    assert bare.pause == Pause(1.0, "slow down", None) and bare.not_before == NOW + timedelta(seconds=1)


def test_a_long_channel_wide_rate_limit_holds_the_delivery_no_longer_than_a_give_back() -> None:
    # The channel's pause holds it; a resume must find it due.
    d = decide(Retry("flood", after=600.0, rate_limited=True), claim(), NOW, POLICY)
    assert d.pause == Pause(600.0, "flood", None)
    assert d.not_before == NOW + timedelta(seconds=MAX_GIVE_BACK)
    chat = decide(Retry("flood", after=600.0, rate_limited=True, bucket="100001"), claim(), NOW, POLICY)
    assert chat.not_before == NOW + timedelta(seconds=600)


def test_held_back_by_the_gate_goes_back_unsent_without_spending_an_attempt() -> None:
    d = decide(Held(5.0, "bucket paused"), claim(attempts=2), NOW, POLICY)
    assert (d.state, d.error, d.spent, d.said) == (DeliveryState.QUEUED, "bucket paused", False, None)
    assert d.not_before == NOW + timedelta(seconds=5)
    assert decide(Held(3600.0, "window budget spent"), claim(), NOW, POLICY).not_before == NOW + timedelta(
        seconds=MAX_GIVE_BACK
    )
    assert decide(Held(-1.0, "per-recipient pacing"), claim(), NOW, POLICY).not_before == NOW


def test_a_retry_after_the_alert_expires_ends_the_delivery_as_expired() -> None:
    expires = NOW + timedelta(seconds=10)
    d = decide(Retry("HTTP 503", after=30.0), claim(expires=expires), NOW, POLICY)
    assert (d.state, d.spent, d.late, d.not_before) == (DeliveryState.EXPIRED, True, True, None)
    assert d.error == f"alert expires at {expires.isoformat()} before the next try: HTTP 503"
    assert decide(Retry("HTTP 503", after=5.0), claim(expires=expires), NOW, POLICY).state is DeliveryState.QUEUED


def test_without_expiry_max_age_from_reception_bounds_the_retries() -> None:
    received = NOW - timedelta(seconds=3590)
    d = decide(Retry("HTTP 503", after=30.0), claim(received=received), NOW, POLICY)
    assert (d.state, d.late) == (DeliveryState.FAILED, True)
    assert d.error == "gave up: the next try would come after [delivery] max_age (3600 s): HTTP 503"
    assert decide(Retry("HTTP 503", after=5.0), claim(received=received), NOW, POLICY).state is DeliveryState.QUEUED


def test_a_rate_limit_past_the_deadline_still_pauses_the_bucket() -> None:
    d = decide(Retry("flood", after=30.0, rate_limited=True), claim(expires=NOW + timedelta(seconds=10)), NOW, POLICY)
    assert (d.state, d.spent) == (DeliveryState.EXPIRED, False)
    assert d.pause == Pause(30.0, "flood", None)
    assert d.error is not None and d.error.endswith(": rate limited: flood")


@pytest.mark.parametrize(
    ("state", "expires", "known", "expected", "error"),
    [
        ("cancelled", None, True, DeliveryState.SUPERSEDED, "alert cancelled before sending"),
        ("superseded", None, True, DeliveryState.SUPERSEDED, "alert superseded before sending"),
        ("active", NOW, True, DeliveryState.EXPIRED, f"alert expired at {NOW.isoformat()}"),
        ("active", None, False, DeliveryState.FAILED, "alert row not found"),
    ],
)
def test_what_need_not_be_sent(
    state: str, expires: datetime | None, known: bool, expected: DeliveryState, error: str
) -> None:
    d = unsendable(claim(state=state, expires=expires), NOW, alert_known=known)
    assert d is not None and (d.state, d.error, d.spent) == (expected, error, False)


def test_a_live_delivery_must_be_sent() -> None:
    assert unsendable(claim(expires=NOW + timedelta(seconds=1)), NOW, alert_known=True) is None
