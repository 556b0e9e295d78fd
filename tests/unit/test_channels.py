"""The Channel base class (defaults, rendering, the send loop, the shared HTTP session) and the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import aiohttp
import pytest

import channels
from channels import REGISTRY, load_channel_class
from channels.base import Channel, ChannelContext, Delivered, Reject, SendResult, http_session
from channels.templates import LOCAL_AREA_CODES, Templates, local_codes_for
from dispatcher.model import Area, Message, Recipient
from tests.samples import make_alert, tsunami_warning


class PigeonChannel(Channel):
    """The smallest channel: a name, a config class and one attempt per recipient."""

    name: ClassVar[str] = "pigeon"
    config_class: ClassVar[type[object]] = object
    max_text_length: ClassVar[int] = 60

    def __init__(self, config: object, context: ChannelContext) -> None:
        super().__init__(config, context)
        self.sent: list[str] = []

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        self.sent.append(recipient.address)
        return Delivered(remote_id=recipient.address) if recipient.address != "lost" else Reject(reason="no roost")


@pytest.fixture(scope="module")
def context() -> ChannelContext:
    return ChannelContext(templates=Templates.load(), public_url="https://bousai.example")


def test_the_base_class_declares_every_limit(context: ChannelContext) -> None:
    pigeon = PigeonChannel(None, context)
    assert (pigeon.batch_size, pigeon.per_recipient_interval, pigeon.rate_window) == (1, None, None)
    assert pigeon.rate_per_second > 0 and pigeon.concurrency is None and pigeon.broadcast is False
    assert isinstance(pigeon, Channel) and pigeon.config is None and pigeon.context is context


def test_render_goes_through_the_templates_within_the_channel_length(context: ChannelContext) -> None:
    message = PigeonChannel(None, context).render(tsunami_warning(), "ja")
    assert len(message.text) <= PigeonChannel.max_text_length
    assert message.link == "https://bousai.example/alerts/20261129-tsnm3kei" and message.text.endswith(message.link)
    assert message.language == "ja" and message.extra["alert_identifier"] == tsunami_warning().identifier


async def test_send_makes_one_attempt_per_recipient_in_turn(context: ChannelContext) -> None:
    pigeon = PigeonChannel(None, context)
    message = pigeon.render(make_alert(), "ja")
    results = await pigeon.send(message, [Recipient(7, "a"), Recipient(8, "lost"), Recipient(9, "b")])
    assert pigeon.sent == ["a", "lost", "b"]
    assert results == {7: Delivered(remote_id="a"), 8: Reject(reason="no roost"), 9: Delivered(remote_id="b")}


async def test_a_channel_without_send_one_says_so(context: ChannelContext) -> None:
    class Mute(Channel):
        name: ClassVar[str] = "mute"
        config_class: ClassVar[type[object]] = object

    with pytest.raises(NotImplementedError, match="Mute implements neither"):
        await Mute(None, context).send(Message(text="x", language="ja"), [Recipient(1, "a")])


async def test_the_shared_session_is_used_and_left_open(context: ChannelContext) -> None:
    shared = http_session()
    try:
        pigeon = PigeonChannel(None, ChannelContext(templates=context.templates, session=shared))
        assert pigeon.http is shared
        await pigeon.close()
        assert not shared.closed, "the service closes its session, not a channel"
        assert isinstance(shared.cookie_jar, aiohttp.DummyCookieJar)
    finally:
        await shared.close()


async def test_without_a_service_a_channel_has_its_own_session_until_closed(context: ChannelContext) -> None:
    pigeon = PigeonChannel(None, context)
    own = pigeon.http
    assert pigeon.http is own and not own.closed
    await pigeon.close()
    assert own.closed


def test_every_registry_key_is_its_class_name() -> None:
    for name in REGISTRY:
        cls = load_channel_class(name)
        assert issubclass(cls, Channel) and cls.name == name, name


def test_a_registry_key_that_disagrees_with_the_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong() -> type[Channel]:
        return PigeonChannel

    def not_a_channel() -> type[Channel]:
        return object  # type: ignore[return-value]

    loaders: dict[str, Callable[[], type[Channel]]] = {**REGISTRY, "carrier": wrong, "rock": not_a_channel}
    monkeypatch.setattr(channels, "REGISTRY", loaders)
    with pytest.raises(TypeError, match=r"'carrier' loads PigeonChannel, whose name is 'pigeon'"):
        load_channel_class("carrier")
    with pytest.raises(TypeError, match="'rock' is not a Channel class"):
        load_channel_class("rock")


def test_local_codes_come_from_the_service_area_codes() -> None:
    assert local_codes_for(("2220300",)) == LOCAL_AREA_CODES
    # Another municipality lists its own codes, parents included, in the order they should win.
    assert local_codes_for(("2221000", "220031")) == ("2221000", "220031")
    assert local_codes_for(()) == ()
    alert = make_alert(areas=(Area("三島市", ("2220600",)), Area("富士山南東", ("220031",))))
    assert Templates.load().place_for(alert) == alert.areas[1]
    elsewhere = Templates.load(local_area_codes=local_codes_for(("2220600",)))
    assert elsewhere.place_for(alert) == alert.areas[0]
