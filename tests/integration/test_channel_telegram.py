"""TelegramChannel against the Bot API stand-in over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from channels import load_channel_class
from channels.base import Channel, ChannelContext, Delivered, Reject, Retry
from channels.telegram import TelegramChannel, TelegramConfig
from channels.templates import Templates
from dispatcher.model import (
    Recipient,
    Status,
)
from dispatcher.standins.telegram_api import TelegramStandIn
from tests.samples import tsunami_warning

TOKEN = "123456:TEST-token-never-printed"

# pytest resets warning filters per test; the channel module silences this one in production.
pytestmark = pytest.mark.filterwarnings("ignore:.*attribute `retry_after`:telegram.warnings.PTBDeprecationWarning")


@pytest.fixture(scope="module")
def context() -> ChannelContext:
    return ChannelContext(templates=Templates.load(), public_url="https://bousai.example")


@pytest.fixture
async def standin() -> AsyncIterator[TelegramStandIn]:
    server = TelegramStandIn(TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def channel(standin: TelegramStandIn, context: ChannelContext) -> AsyncIterator[TelegramChannel]:
    config = TelegramConfig(token=TOKEN, base_url=standin.base_url, read_timeout=2.0)
    channel = TelegramChannel(config, context)
    await channel.open()
    yield channel
    await channel.close()


def to(chat_id: str, delivery_id: int = 1) -> Recipient:
    return Recipient(delivery_id=delivery_id, address=chat_id)


async def test_registry_and_protocol(channel: TelegramChannel) -> None:
    assert load_channel_class("telegram") is TelegramChannel
    assert isinstance(channel, Channel)
    assert TOKEN not in repr(channel.config)
    assert TOKEN not in repr(channel)
    with pytest.raises(KeyError, match=r"unknown channel 'pigeon'.*telegram"):
        load_channel_class("pigeon")


async def test_delivered_with_message_id(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    message = channel.render(tsunami_warning(), "ja")
    results = await channel.send(message, [to("1001", 7), to("1002", 8)])
    assert results == {7: Delivered(remote_id="1"), 8: Delivered(remote_id="2")}
    assert [m.chat_id for m in standin.messages] == ["1001", "1002"]
    assert standin.messages[0].text.startswith("【津波警報】")
    assert standin.messages[0].text.endswith("https://bousai.example/alerts/20261129-tsnm3kei")


async def test_healthcheck(channel: TelegramChannel) -> None:
    health = await channel.healthcheck()
    assert health.ok
    assert health.detail == "@numazu_bousai_bot"


async def test_flood_control_is_rate_limited_retry(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    standin.flood(retry_after=7)
    results = await channel.send(channel.render(tsunami_warning(), "en"), [to("1001")])
    assert results[1] == Retry(reason=results[1].reason, after=7.0, rate_limited=True, bucket=None)
    assert standin.messages == []


async def test_blocked_user_unsubscribes(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    standin.block("1001")
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to("1001")]))[1]
    assert isinstance(result, Reject)
    assert result.unsubscribe
    assert "blocked" in result.reason


async def test_chat_not_found_unsubscribes(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    standin.forget("1001")
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to("1001")]))[1]
    assert isinstance(result, Reject)
    assert result.unsubscribe


async def test_other_bad_request_rejects_without_unsubscribe(channel: TelegramChannel) -> None:
    message = replace(channel.render(tsunami_warning(), "ja"), text="   ")
    result = (await channel.send(message, [to("1001")]))[1]
    assert result == Reject(reason="telegram 400: Message text is empty", unsubscribe=False)


async def test_migrated_group_names_new_chat(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    standin.migrate("-4001", -1009876543210)
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to("-4001")]))[1]
    assert isinstance(result, Reject)
    assert not result.unsubscribe
    assert "new_chat_id=-1009876543210" in result.reason


async def test_server_error_retries(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    standin.fail(500)
    message = channel.render(tsunami_warning(), "ja")
    first = (await channel.send(message, [to("1001")]))[1]
    assert isinstance(first, Retry)
    assert first.after is None
    assert not first.rate_limited
    assert (await channel.send(message, [to("1001")]))[1] == Delivered(remote_id="1")


async def test_unreachable_server_retries(context: ChannelContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: connection refused.
    config = TelegramConfig(token=TOKEN, base_url=f"http://127.0.0.1:{port}/bot")
    channel = TelegramChannel(config, context)
    await channel.open()
    try:
        result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to("1001")]))[1]
        assert isinstance(result, Retry)
        assert result.after is None
        assert TOKEN not in result.reason
        assert not (await channel.healthcheck()).ok
    finally:
        await channel.close()


async def test_exercise_is_marked(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    for language, marker in (("ja", "【訓練】"), ("ja-easy", "【くんれん】"), ("en", "[EXERCISE]")):
        message = channel.render(tsunami_warning(status=Status.EXERCISE), language)
        assert message.exercise
        await channel.send(message, [to("1001")])
        assert standin.messages[-1].text.startswith(marker)


async def test_long_text_truncated_to_4096(channel: TelegramChannel, standin: TelegramStandIn) -> None:
    description = "\n".join(f"{i}: 津波の到達予想時刻は各地で異なります。" for i in range(400))
    message = channel.render(tsunami_warning(description=description), "ja")
    assert len(message.text) <= 4096
    # The description is cut (marked); the instruction, ほかN地域 and the link stay (issue 11 item 5).
    assert "異なります。…\n" in message.text
    assert "ただちに高台や津波避難ビルなど、高い場所へ避難してください。" in message.text
    assert "\n詳しくは: https://bousai.example/alerts/" in message.text and message.text.endswith(message.link or "")
    assert (await channel.send(message, [to("1001")]))[1] == Delivered(remote_id="1")
    assert standin.messages[0].text == message.text


async def test_html_parse_mode(standin: TelegramStandIn, context: ChannelContext) -> None:
    config = TelegramConfig(token=TOKEN, base_url=standin.base_url, parse_mode="HTML")
    channel = TelegramChannel(config, context)
    await channel.open()
    try:
        message = channel.render(tsunami_warning(headline="<高さ> & 3m"), "ja")
        await channel.send(message, [to("1001")])
    finally:
        await channel.close()
    sent = standin.messages[0]
    assert sent.parse_mode == "HTML"
    assert sent.text.startswith("<b>【津波警報】</b>\n")
    assert "\n&lt;高さ&gt; &amp; 3m\n" in sent.text


async def test_enforced_per_chat_limit(context: ChannelContext) -> None:
    server = TelegramStandIn(TOKEN, per_chat_interval=1.0)
    await server.start()
    channel = TelegramChannel(TelegramConfig(token=TOKEN, base_url=server.base_url), context)
    await channel.open()
    try:
        message = channel.render(tsunami_warning(), "ja")
        assert isinstance((await channel.send(message, [to("1001")]))[1], Delivered)
        second = (await channel.send(message, [to("1001")]))[1]
        assert isinstance(second, Retry)
        assert second.rate_limited
        assert second.after == 1.0
        assert isinstance((await channel.send(message, [to("1002")]))[1], Delivered)
    finally:
        await channel.close()
        await server.stop()


async def test_token_never_logged(
    standin: TelegramStandIn, context: ChannelContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # httpx's own level too: a CLI test earlier in the session (logs.setup) turns it down.
    caplog.set_level(logging.DEBUG, logger="httpx")
    channel = TelegramChannel(TelegramConfig(token=TOKEN, base_url=standin.base_url), context)
    await channel.open()
    try:
        standin.fail(502)
        message = channel.render(tsunami_warning(), "ja")
        await channel.send(message, [to("1001")])
        await channel.send(message, [to("1001")])
        await channel.healthcheck()
    finally:
        await channel.close()
    assert "HTTP Request" in caplog.text  # httpx did log the request URLs…
    assert TOKEN not in caplog.text  # …with the token redacted
