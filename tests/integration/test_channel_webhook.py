"""WebhookChannel against a local aiohttp receiver that fails twice, then succeeds."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from aiohttp import web

from channels import load_channel_class
from channels.base import Channel, ChannelContext, Delivered, Reject, Retry
from channels.templates import Templates
from channels.webhook import WebhookChannel, WebhookConfig, retry_after_seconds
from dispatcher.model import Recipient
from dispatcher.signing import verify_signature
from tests.samples import tsunami_warning

SECRET = "whsec-numazu-test-secret-0123456789"


@dataclass
class Receiver:
    """A partner system: scripted answers, then 200; records what it got."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.Response(status=status, headers=headers, text="scripted")
        return web.json_response({"ok": True})


async def head_not_allowed(request: web.Request) -> web.Response:
    return web.Response(status=405)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    app.router.add_post("/partner/{name}", recv.handle)
    app.router.add_route("HEAD", "/hook", head_not_allowed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield recv
    await runner.cleanup()


@pytest.fixture
async def channel(receiver: Receiver) -> AsyncIterator[WebhookChannel]:
    context = ChannelContext(templates=Templates.load(), public_url="https://bousai.example")
    channel = WebhookChannel(WebhookConfig(url=f"{receiver.url}/hook", secret=SECRET, timeout=3.0), context)
    await channel.open()
    yield channel
    await channel.close()


def to(address: str = "default", delivery_id: int = 1) -> Recipient:
    return Recipient(delivery_id=delivery_id, address=address)


async def test_registry_protocol_and_secret(channel: WebhookChannel) -> None:
    assert load_channel_class("webhook") is WebhookChannel
    assert isinstance(channel, Channel)
    assert channel.broadcast
    assert SECRET not in repr(channel.config)


async def test_fails_twice_then_delivers(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.answers = [(503, {}), (503, {})]
    message = replace(channel.render(tsunami_warning(), "en"), idempotency_key="alert-1-webhook-1")
    outcomes = [(await channel.send(message, [to()]))[1] for _ in range(3)]
    assert [type(o) for o in outcomes] == [Retry, Retry, Delivered]
    first = outcomes[0]
    assert isinstance(first, Retry)
    assert first.after is None
    assert not first.rate_limited
    # Every attempt carries the same idempotency key, so the receiver can drop duplicates.
    assert {h["Idempotency-Key"] for h, _ in receiver.received} == {"alert-1-webhook-1"}


async def test_body_and_signature(channel: WebhookChannel, receiver: Receiver) -> None:
    await channel.send(channel.render(tsunami_warning(), "ja"), [to()])
    headers, body = receiver.received[0]
    assert verify_signature(SECRET, headers["X-Timestamp"], body, headers["X-Signature-256"])
    assert not verify_signature("other", headers["X-Timestamp"], body, headers["X-Signature-256"])
    assert not verify_signature(SECRET, headers["X-Timestamp"], body + b" ", headers["X-Signature-256"])
    assert not verify_signature(SECRET, "1", body, headers["X-Signature-256"])
    assert abs(int(headers["X-Timestamp"]) - datetime.now(UTC).timestamp()) < 60
    doc = json.loads(body)
    assert doc["identifier"] == "20261129201500_0_VTSE41_270000"
    assert doc["event"] == "津波警報"
    assert doc["status"] == "actual"
    assert doc["msg_type"] == "alert"
    assert doc["severity"] == "severe"
    assert doc["sent"] == "2026-11-29T20:15:00+09:00"
    assert doc["areas"] == [
        {"description": "静岡県", "codes": ["440"]},
        {"description": "沼津市", "codes": ["2220300"]},
    ]
    assert doc["expires"] is None
    assert doc["language"] == "ja"
    assert doc["text"].startswith("【津波警報】")
    assert doc["link"] == "https://bousai.example/alerts/20261129-tsnm3kei"


async def test_recipient_url_overrides_default(channel: WebhookChannel, receiver: Receiver) -> None:
    partner = f"{receiver.url}/partner/fire-department"
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to(partner)]))[1]
    assert isinstance(result, Delivered)
    receiver.answers = [(429, {"Retry-After": "30"})]
    limited = (await channel.send(channel.render(tsunami_warning(), "ja"), [to(partner)]))[1]
    assert limited == Retry(reason="webhook HTTP 429", after=30.0, rate_limited=True, bucket=partner)


async def test_429_retry_after_honoured(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.answers = [(429, {"Retry-After": "12"})]
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to()]))[1]
    assert result == Retry(reason="webhook HTTP 429", after=12.0, rate_limited=True, bucket=None)


async def test_503_retry_after_honoured(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.answers = [(503, {"Retry-After": "5"})]
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to()]))[1]
    assert result == Retry(reason="webhook HTTP 503", after=5.0)


@pytest.mark.parametrize(("status", "unsubscribe"), [(400, False), (404, False), (410, True), (301, False)])
async def test_client_errors_reject(
    channel: WebhookChannel, receiver: Receiver, status: int, unsubscribe: bool
) -> None:
    receiver.answers = [(status, {"Location": "http://127.0.0.1:9/elsewhere"} if status == 301 else {})]
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to()]))[1]
    assert result == Reject(reason=f"webhook HTTP {status}", unsubscribe=unsubscribe)
    assert len(receiver.received) == 1  # the redirect was not followed


async def test_unreachable_endpoint_retries(channel: WebhookChannel) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = (await channel.send(channel.render(tsunami_warning(), "ja"), [to(f"http://127.0.0.1:{port}/x")]))[1]
    assert isinstance(result, Retry)
    assert not result.rate_limited


async def test_healthcheck(channel: WebhookChannel) -> None:
    health = await channel.healthcheck()
    assert health.ok
    assert health.detail == "HTTP 405"


def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 29, 11, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Sun, 29 Nov 2026 11:00:42 GMT", now=now) == 42.0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds(None) is None


async def test_cookies_are_never_kept(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.answers = [(200, {"Set-Cookie": "session=partner-a; Path=/"})]
    # By name: aiohttp's default cookie jar would keep cookies of a host name, not of an IP.
    base = receiver.url.replace("127.0.0.1", "localhost")
    for n in range(2):
        await channel.send(channel.render(tsunami_warning(), "ja"), [to(f"{base}/partner/{n}", n)])
    assert [h.get("Cookie") for h, _ in receiver.received] == [None, None]
