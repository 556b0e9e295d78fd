"""EmailChannel against the aiosmtpd stand-in over real SMTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from channels import load_channel_class
from channels.base import Channel, ChannelContext, Delivered, Reject, Retry
from channels.email import EmailChannel, EmailConfig, classify_refusal
from channels.templates import Templates
from dispatcher.model import Alert, Recipient, Status, Urgency
from dispatcher.standins.smtp import SmtpStandIn
from tests.samples import make_alert

JST = timezone(timedelta(hours=9))


def heavy_rain_warning(status: Status = Status.ACTUAL) -> Alert:
    return make_alert(
        "20261129060000_0_VPWW54_220000",
        sender="静岡地方気象台",
        sent=datetime(2026, 11, 29, 6, 0, tzinfo=JST),
        status=status,
        urgency=Urgency.EXPECTED,
        headline="東部では、２９日夕方まで土砂災害に警戒してください。",
        source="jma",
        public_id="20261129-hvyra1n2",
    )


@pytest.fixture(scope="module")
def context() -> ChannelContext:
    return ChannelContext(templates=Templates.load(), public_url="https://bousai.example")


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpStandIn]:
    server = SmtpStandIn()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def channel(smtp: SmtpStandIn, context: ChannelContext) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel(EmailConfig(host=smtp.host, port=smtp.port, timeout=5.0), context)
    await channel.open()
    yield channel
    await channel.close()


def to(address: str, delivery_id: int = 1) -> Recipient:
    return Recipient(delivery_id=delivery_id, address=address)


async def test_registry_protocol_and_secret(channel: EmailChannel) -> None:
    assert load_channel_class("email") is EmailChannel
    assert isinstance(channel, Channel)
    config = EmailConfig(username="bousai", password="hunter2-secret")
    assert "hunter2-secret" not in repr(config)
    with pytest.raises(ValueError, match="mutually exclusive"):
        EmailConfig(use_tls=True, starttls=True)


async def test_delivered_utf8_and_headers(channel: EmailChannel, smtp: SmtpStandIn) -> None:
    message = channel.render(heavy_rain_warning(), "ja")
    results = await channel.send(message, [to("taro@example.jp", 11), to("hanako@example.jp", 12)])
    assert set(results) == {11, 12}
    assert all(isinstance(r, Delivered) for r in results.values())
    assert len(smtp.messages) == 2  # two transactions on one reused connection
    mail = smtp.messages[0]
    assert mail.mail_from == "bousai@city.numazu.example"
    assert mail.rcpt_tos == ("taro@example.jp",)
    parsed = mail.message
    assert parsed["Subject"] == "【大雨警報】沼津市"
    assert parsed["From"].addresses[0].display_name == "沼津市 防災情報"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Alert-Identifier"] == "20261129060000_0_VPWW54_220000"
    assert parsed["Message-ID"] == results[11].remote_id  # type: ignore[union-attr]
    assert parsed["Date"] is not None
    body = parsed.get_body(("plain",)).get_content()
    assert "東部では、２９日夕方まで土砂災害に警戒してください。" in body
    assert "発表: 2026年11月29日 6時00分" in body
    assert "https://bousai.example/alerts/20261129-hvyra1n2" in body
    assert b"\xe6\xb2\xbc" not in mail.raw.split(b"\r\n\r\n")[0]  # headers stay 7-bit encoded


async def test_idempotency_key_gives_stable_message_id(channel: EmailChannel, smtp: SmtpStandIn) -> None:
    message = channel.render(heavy_rain_warning(), "en")
    keyed = replace(message, idempotency_key="d-42")
    first = (await channel.send(keyed, [to("taro@example.jp", 42)]))[42]
    second = (await channel.send(keyed, [to("taro@example.jp", 42)]))[42]
    assert first == second == Delivered(remote_id="<42.d-42@city.numazu.example>")


async def test_exercise_subject_marked(channel: EmailChannel, smtp: SmtpStandIn) -> None:
    message = channel.render(heavy_rain_warning(Status.EXERCISE), "ja-easy")
    await channel.send(message, [to("taro@example.jp")])
    parsed = smtp.messages[0].message
    assert parsed["Subject"].startswith("【くんれん】")
    assert parsed.get_body(("plain",)).get_content().startswith("【くんれん】")


async def test_user_unknown_rejects_and_unsubscribes(channel: EmailChannel, smtp: SmtpStandIn) -> None:
    smtp.refuse("gone@example.jp")
    message = channel.render(heavy_rain_warning(), "ja")
    results = await channel.send(message, [to("gone@example.jp", 1), to("taro@example.jp", 2)])
    assert isinstance(results[1], Reject)
    assert results[1].unsubscribe
    assert "550" in results[1].reason
    # The connection survives a refused recipient.
    assert isinstance(results[2], Delivered)
    assert [m.rcpt_tos for m in smtp.messages] == [("taro@example.jp",)]


async def test_policy_refusal_keeps_subscription(channel: EmailChannel, smtp: SmtpStandIn) -> None:
    smtp.refuse("strict@example.jp", 550, "5.7.1 Message rejected as spam")
    result = (await channel.send(channel.render(heavy_rain_warning(), "ja"), [to("strict@example.jp")]))[1]
    assert result == Reject(reason="smtp 550 5.7.1 Message rejected as spam", unsubscribe=False)


async def test_temporary_failure_retries(channel: EmailChannel, smtp: SmtpStandIn) -> None:
    smtp.defer("busy@example.jp", count=1)
    message = channel.render(heavy_rain_warning(), "ja")
    first = (await channel.send(message, [to("busy@example.jp")]))[1]
    assert isinstance(first, Retry)
    assert "451" in first.reason
    assert not first.rate_limited
    assert isinstance((await channel.send(message, [to("busy@example.jp")]))[1], Delivered)


async def test_server_down_retries_then_reconnects(context: ChannelContext) -> None:
    server = SmtpStandIn()
    host, port = await server.start()
    channel = EmailChannel(EmailConfig(host=host, port=port, timeout=2.0), context)
    message = channel.render(heavy_rain_warning(), "ja")
    try:
        assert (await channel.healthcheck()).ok
        await server.stop()
        down = (await channel.send(message, [to("taro@example.jp")]))[1]
        assert isinstance(down, Retry)
        assert not (await channel.healthcheck()).ok
        # Same port again: the channel reconnects by itself.
        server = SmtpStandIn()
        await server.start(port=port)
        assert isinstance((await channel.send(message, [to("taro@example.jp")]))[1], Delivered)
    finally:
        await channel.close()
        await server.stop()


async def test_nothing_listening_retries(context: ChannelContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = EmailChannel(EmailConfig(host="127.0.0.1", port=port, timeout=2.0), context)
    result = (await channel.send(channel.render(heavy_rain_warning(), "ja"), [to("taro@example.jp")]))[1]
    assert isinstance(result, Retry)
    await channel.close()


@pytest.mark.parametrize(
    ("code", "text", "unsubscribe"),
    [
        (550, "5.1.1 User unknown", True),
        (551, "User not local", True),
        (553, "5.1.3 Bad recipient address syntax", True),
        (552, "5.2.2 Mailbox full", False),
        (550, "5.2.1 Mailbox disabled", False),
        (554, "Transaction failed", False),
    ],
)
def test_classify_refusal(code: int, text: str, unsubscribe: bool) -> None:
    result = classify_refusal(code, text)
    assert isinstance(result, Reject)
    assert result.unsubscribe is unsubscribe
    assert isinstance(classify_refusal(452, "4.2.2 Over quota"), Retry)


async def test_starttls_and_auth_against_a_submission_relay(tmp_path: Path) -> None:
    """The relay requires STARTTLS before MAIL and AUTH over TLS; the channel does both and verifies the certificate."""
    import ssl
    import subprocess

    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    relay = SmtpStandIn(tls_context=tls, credentials=("bousai", "relay-password"))
    host, port = await relay.start()
    try:
        plain = EmailChannel(EmailConfig(host=host, port=port), ChannelContext(templates=Templates.load()))
        refused = (await plain.send(plain.render(heavy_rain_warning(), "ja"), [to("taro@example.jp")]))[1]
        assert isinstance(refused, Retry)  # no STARTTLS: the relay will not take MAIL
        await plain.close()
        cfg = EmailConfig(
            host=host, port=port, starttls=True, username="bousai", password="relay-password", cert_bundle=str(cert)
        )
        channel = EmailChannel(cfg, ChannelContext(templates=Templates.load()))
        result = (await channel.send(channel.render(heavy_rain_warning(), "ja"), [to("taro@example.jp")]))[1]
        assert isinstance(result, Delivered), result
        assert relay.authenticator is not None and relay.authenticator.logins == 1
        assert [m.rcpt_tos for m in relay.messages] == [("taro@example.jp",)]
        await channel.close()
    finally:
        await relay.stop()
