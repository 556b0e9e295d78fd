"""LineChannel against the LINE Messaging API stand-in over real HTTP on 127.0.0.1.

Multicast with retry keys (a repeat answered 409 counts as delivered), 429s, the monthly
quota (read, warned about, held before it would be exceeded, skipped on the municipal
plan), addresses, lengths in UTF-16 code units, the bot info.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from channels import load_channel_class
from channels.base import ChannelContext, Delivered, Reject, Retry
from channels.line import LineChannel, LineConfig
from channels.quota import Quota
from channels.templates import Templates
from dispatcher.model import Recipient, Status
from dispatcher.standins.line_api import LineStandIn
from tests.samples import tsunami_warning

TOKEN = "line-channel-token-never-printed"


def user(n: int) -> str:
    return f"U{n:032x}"


def to(n: int) -> Recipient:
    return Recipient(delivery_id=n, address=user(n))


class Book:
    """The quotas recorded (the QuotaBook port; the daemon's writes channel_quotas)."""

    def __init__(self) -> None:
        self.readings: list[Quota] = []

    async def record(self, channel: str, quota: Quota) -> None:
        assert channel == "line"
        self.readings.append(quota)


@pytest.fixture
async def standin() -> AsyncIterator[LineStandIn]:
    server = LineStandIn(TOKEN, quota=1000)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def book() -> Book:
    return Book()


async def make(standin: LineStandIn, book: Book, **options: object) -> LineChannel:
    config = LineConfig(token=TOKEN, base_url=standin.base_url, **options)  # type: ignore[arg-type]
    context = ChannelContext(templates=Templates.load(), public_url="https://bousai.example", quotas=book)
    channel = LineChannel(config, context)
    await channel.open()
    return channel


@pytest.fixture
async def channel(standin: LineStandIn, book: Book) -> AsyncIterator[LineChannel]:
    ch = await make(standin, book)
    yield ch
    await ch.close()


def keyed(channel: LineChannel, key: str | None = None):  # type: ignore[no-untyped-def]
    return channel.render(tsunami_warning(), "ja").with_idempotency_key(key or str(uuid.uuid4()))


async def test_registry_and_secrets(channel: LineChannel) -> None:
    assert load_channel_class("line") is LineChannel
    assert TOKEN not in repr(channel) and TOKEN not in repr(channel.config)
    health = await channel.healthcheck()
    assert health.ok and health.detail == "@204numazu"


async def test_multicast_reaches_everyone_in_one_request(channel: LineChannel, standin: LineStandIn) -> None:
    message = keyed(channel)
    before = standin.requests
    results = await channel.send(message, [to(1), to(2), to(3)])
    assert standin.requests == before + 1
    assert {r.delivery_id for r in [to(1), to(2), to(3)]} == set(results)
    ids = {r.remote_id for r in results.values() if isinstance(r, Delivered)}
    assert len(ids) == 1 and None not in ids  # each recipient: the request's x-line-request-id
    for n in (1, 2, 3):
        (got,) = standin.delivered_to(user(n))
        assert got.endpoint == "multicast" and got.retry_key == message.idempotency_key
        assert got.texts == [message.text]
        assert got.texts[0].startswith("【津波警報】") and got.texts[0].endswith("/alerts/20261129-tsnm3kei")


async def test_a_retry_answered_409_counts_as_delivered(channel: LineChannel, standin: LineStandIn) -> None:
    message = keyed(channel)
    # LINE did the work, but its answer was lost: a 500 after acceptance.
    standin.fail(500, after_accept=True, endpoint="multicast")
    first = await channel.send(message, [to(1), to(2)])
    assert all(isinstance(r, Retry) and not r.rate_limited for r in first.values())
    again = await channel.send(message, [to(1), to(2)])
    assert all(isinstance(r, Delivered) and "409" in r.detail for r in again.values())
    assert [len(standin.delivered_to(user(n))) for n in (1, 2)] == [1, 1]
    assert any(r.status == 409 for r in standin.refusals)
    # Counted once, as LINE does.
    assert channel.quota is not None and channel.quota.used == 2


async def test_rate_limit_429_pauses_without_sending(channel: LineChannel, standin: LineStandIn) -> None:
    standin.throttle(endpoint="multicast")
    results = await channel.send(keyed(channel), [to(1), to(2)])
    assert all(r == Retry(r.reason, after=1.0, rate_limited=True) for r in results.values())
    assert "rate limit" in next(iter(results.values())).reason  # type: ignore[union-attr]
    assert not standin.delivered_to(user(1))


async def test_bad_addresses_are_rejected_without_failing_the_batch(channel: LineChannel, standin: LineStandIn) -> None:
    results = await channel.send(keyed(channel), [to(1), Recipient(9, "not-a-line-id"), to(2)])
    assert isinstance(results[9], Reject)
    assert isinstance(results[1], Delivered) and isinstance(results[2], Delivered)


async def test_a_400_rejects_and_a_revoked_token_retries(channel: LineChannel, standin: LineStandIn) -> None:
    empty = keyed(channel)
    empty = type(empty)(" " * 0, empty.language, idempotency_key=empty.idempotency_key)
    rejected = await channel.send(empty, [to(1)])
    assert isinstance(rejected[1], Reject) and "messages[0].text" in rejected[1].reason
    standin.revoke_token()
    retried = await channel.send(keyed(channel), [to(1)])
    assert isinstance(retried[1], Retry) and not retried[1].rate_limited and "401" in retried[1].reason


async def test_quota_read_warned_and_held_before_it_is_exceeded(
    standin: LineStandIn, book: Book, caplog: pytest.LogCaptureFixture
) -> None:
    standin.quota = 10
    ch = await make(standin, book, plan="light")
    try:
        assert book.readings[-1] == Quota("light", 10, 0, book.readings[-1].read_at)
        caplog.set_level(logging.WARNING, logger="channels.line")
        assert all(isinstance(r, Delivered) for r in (await ch.send(keyed(ch), [to(n) for n in range(8)])).values())
        assert "LINE monthly quota nearly spent" in caplog.text
        assert ch.quota is not None and ch.quota.used == 8
        multicasts = len([d for d in standin.deliveries if d.endpoint == "multicast"])
        held = await ch.send(keyed(ch), [to(n) for n in range(10, 13)])
        assert len([d for d in standin.deliveries if d.endpoint == "multicast"]) == multicasts, "nothing sent"
        result = held[10]
        assert isinstance(result, Retry) and result.rate_limited and (result.after or 0) > 3600
        assert "8 of 10 messages used" in result.reason and "needs 3" in result.reason
        assert "dispatcher channel resume line" in result.reason
        assert book.readings[-1].held == result.reason
        assert "LINE quota would be exceeded" in caplog.text
        # Two more still fit.
        assert isinstance((await ch.send(keyed(ch), [to(20), to(21)]))[20], Delivered)
    finally:
        await ch.close()


async def test_lines_own_monthly_limit_429_holds_until_the_month_ends(standin: LineStandIn, book: Book) -> None:
    standin.quota = 3
    # The quota as last read says there is room; LINE's own count says otherwise.
    ch = await make(standin, book, plan="free")
    try:
        standin.quota_used = 3
        result = (await ch.send(keyed(ch), [to(1)]))[1]
        assert isinstance(result, Retry) and result.rate_limited and (result.after or 0) > 3600
        assert "monthly limit" in result.reason
        assert book.readings[-1].held == result.reason
    finally:
        await ch.close()


async def test_municipal_plan_reads_no_quota(standin: LineStandIn, book: Book) -> None:
    standin.quota = 1
    ch = await make(standin, book, plan="municipal")
    try:
        assert not ch.metered and standin.requests == 0, "no quota read"
        assert [(q.plan, q.limit) for q in book.readings] == [("municipal", None)]
        # The stand-in's quota is not ours to check: a request goes out.
        before = standin.requests
        await ch.send(keyed(ch), [to(1), to(2)])
        assert standin.requests == before + 1
    finally:
        await ch.close()


async def test_text_fits_5000_utf16_units_keeping_instruction_and_link(
    channel: LineChannel, standin: LineStandIn
) -> None:
    # Emoji are two UTF-16 units each: counted in code points this would not fit.
    description = "\n".join(f"{i}: 津波🌊の到達予想時刻は各地で異なります。" for i in range(400))
    for status in (Status.ACTUAL, Status.EXERCISE):
        message = channel.render(tsunami_warning(description=description, status=status), "ja")
        assert len(message.text.encode("utf-16-le")) // 2 <= 5000
        assert len(message.text.encode("utf-16-le")) // 2 > 4500, "the body is shortened only as needed"
        assert "異なります。…\n" in message.text
        assert "ただちに高台や津波避難ビルなど、高い場所へ避難してください。" in message.text
        assert message.text.endswith(message.link or "-")
        result = (await channel.send(message.with_idempotency_key(str(uuid.uuid4())), [to(1)]))[1]
        assert isinstance(result, Delivered), result
    assert standin.delivered_to(user(1))[-1].texts[0].startswith("【訓練】")


async def test_a_reply_uses_its_token_once_then_falls_back_to_a_counted_push(
    channel: LineChannel, standin: LineStandIn
) -> None:
    from dispatcher.worker import reply_message

    token = standin.issue_reply_token(user(1))
    payload = {
        "text": "Choose",
        "buttons": [[{"label": "English", "data": "L:en"}]],
        "reply_token": token,
        "more": [{"text": "and more"}],
    }
    message = reply_message(payload, "en").with_idempotency_key(str(uuid.uuid4()))
    first = (await channel.send(message, [to(1)]))[1]
    assert isinstance(first, Delivered) and first.detail == "reply"
    (got,) = standin.delivered_to(user(1))
    assert got.endpoint == "reply" and [m["text"] for m in got.messages] == ["Choose", "and more"]
    assert got.messages[0]["quickReply"]["items"][0]["action"]["data"] == "L:en"
    assert channel.quota is not None and channel.quota.used == 0, "replies are free"
    # The token is spent (or expired): the answer still reaches her, as a push with the retry key.
    again = (await channel.send(message, [to(1)]))[1]
    assert isinstance(again, Delivered)
    push = standin.delivered_to(user(1))[-1]
    assert push.endpoint == "push" and push.retry_key == message.idempotency_key
    assert channel.quota.used == 1
    bad = reply_message({"text": "x", "buttons": [[{"label": "a", "data": f"D:{i}"} for i in range(14)]]}, "en")
    assert isinstance((await channel.send(bad, [to(1)]))[1], Reject)
