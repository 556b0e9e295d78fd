"""The LINE official account end to end: the daemon, its webhook and the LINE stand-in, with real signatures.

The daemon (:class:`dispatcher.app.Service` in this process, web server on) sends
through :class:`~dispatcher.standins.line_api.LineStandIn`; residents' actions arrive as
LINE would post them (:class:`~dispatcher.standins.line_webhook.LineWebhookSender`,
signed with the channel secret) at ``POST /hooks/line``. ``dispatcher status`` runs as
a subprocess against the same database, as an operator would run it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from channels.line import LineConfig
from dispatcher.app import Service
from dispatcher.settings import ChannelSettings, load
from dispatcher.standins.line_api import LineStandIn
from dispatcher.standins.line_webhook import LineWebhookSender
from tests.integration.test_delivery import alert, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "line-e2e-channel-access-token"
SECRET = "line-e2e-channel-secret-0123456789abcdef"
HANAKO = "U" + "1" * 32
TARO = "U" + "2" * 32
MALLORY = "U" + "6" * 32


@dataclass
class Stack:
    dsn: str
    api: LineStandIn
    service: Service
    hook: LineWebhookSender
    cli_config: Path

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def cli(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher",
            "--config",
            str(self.cli_config),
            *args,
            cwd=str(REPO),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
        return out.decode()


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    cli_config = tmp_path / "operator.toml"
    cli_config.write_text(
        f'[service]\nstate_dir = "{tmp_path}"\nlog_level = "WARNING"\n[database]\nurl = "{database}"\n'
        "[web]\nenabled = false\n[jma]\nenabled = false\n",
        encoding="utf-8",
    )
    api = LineStandIn(TOKEN, quota=5000)
    await api.start()
    base = load(None, env={})
    line = LineConfig(token=TOKEN, channel_secret=SECRET, base_url=api.base_url, plan="light")
    settings = dataclasses.replace(
        base,
        service=dataclasses.replace(base.service, state_dir=tmp_path),
        web=dataclasses.replace(base.web, enabled=True, port=0),
        sources={**base.sources, "jma": dataclasses.replace(base.sources["jma"], enabled=False)},
        delivery=dataclasses.replace(base.delivery, poll_interval=0.2, backoff_base=0.2, backoff_max=1.0),
        channels={"line": ChannelSettings("line", enabled=True, options=line)},
    )
    service = Service(settings, dsn=database)
    await service.start()
    assert service.web_url is not None
    hook = LineWebhookSender(f"{service.web_url}/hooks/line", SECRET, standin=api)
    try:
        yield Stack(database, api, service, hook, cli_config)
    finally:
        await hook.close()
        await service.stop()
        await api.stop()


async def test_follow_receive_an_alert_by_multicast_then_unfollow_deletes_everything(stack: Stack) -> None:
    answered = await stack.hook.send(stack.hook.follow(HANAKO), stack.hook.follow(TARO))
    assert answered.status == 200 and json.loads(answered.text) == {"status": "ok", "events": 2}
    subs = await stack.fetch(
        "SELECT s.address, s.areas, s.active, p.language FROM subscriptions s JOIN subscribers p"
        " ON p.id = s.subscriber_id WHERE s.channel = 'line' ORDER BY s.address"
    )
    # The city's defaults: 沼津市 as a whole, Japanese.
    assert [(r["address"], r["areas"], r["active"], r["language"]) for r in subs] == [
        (HANAKO, ["2220300"], True, "ja"),
        (TARO, ["2220300"], True, "ja"),
    ]
    # A follow sent again (LINE redelivers) changes nothing.
    assert (await stack.hook.send(stack.hook.follow(HANAKO), redelivery=True)).status == 200
    assert len(await stack.fetch("SELECT 1 FROM subscriptions")) == 2

    assert stack.service.pipeline is not None
    await stack.service.pipeline.ingest(alert("E1"))
    await wait_until(lambda: bool(stack.api.delivered_to(HANAKO) and stack.api.delivered_to(TARO)), 15, "the multicast")
    (got,) = stack.api.delivered_to(HANAKO)
    assert got.endpoint == "multicast" and got.retry_key is not None
    assert got.request_id == stack.api.delivered_to(TARO)[0].request_id, "one request for both"
    assert "test E1" in got.texts[0]

    # Operators see the quota the daemon read and counted.
    async def counted() -> bool:
        rows = await stack.fetch("SELECT used FROM channel_quotas WHERE channel = 'line'")
        return bool(rows) and rows[0]["used"] == 2

    await wait_until(counted, 10, "the quota counted")
    report = json.loads(await stack.cli("status", "--json"))
    (quota,) = report["quotas"]
    assert (quota["channel"], quota["plan"], quota["quota"], quota["used"], quota["held"]) == (
        "line",
        "light",
        5000,
        2,
        None,
    )
    text = await stack.cli("status")
    assert "line: plan light, 2 of 5,000 messages this month (0.0%, 4,998 left)" in text

    # Hanako blocks the account: she is forgotten, Taro stays.
    assert (await stack.hook.send(stack.hook.unfollow(HANAKO))).status == 200
    left = await stack.fetch("SELECT address FROM subscriptions")
    assert [r["address"] for r in left] == [TARO]
    assert len(await stack.fetch("SELECT 1 FROM subscribers")) == 1
    assert not await stack.fetch("SELECT 1 FROM deliveries WHERE address = $1", HANAKO)
    assert len(await stack.fetch("SELECT 1 FROM deliveries WHERE address LIKE 'forgotten-%'")) == 1


async def test_a_bad_signature_is_refused_and_nothing_is_done(stack: Stack) -> None:
    event = stack.hook.follow(MALLORY)
    forged = await stack.hook.send(event, signature_override="c2lnbmF0dXJlIG9mIHNvbWVvbmUgZWxzZQ==")
    assert forged.status == 401 and json.loads(forged.text)["error"] == "bad_signature"
    other_secret = LineWebhookSender(stack.hook.url, "not-the-channel-secret", standin=stack.api)
    try:
        assert (await other_secret.send(other_secret.follow(MALLORY))).status == 401
    finally:
        await other_secret.close()
    assert not await stack.fetch("SELECT 1 FROM subscriptions")
    # Signed with the right secret, the same request is taken.
    assert (await stack.hook.send(event)).status == 200
    assert len(await stack.fetch("SELECT 1 FROM subscriptions")) == 1


async def test_url_check_and_malformed_bodies(stack: Stack) -> None:
    check = await stack.hook.send()
    assert check.status == 200 and json.loads(check.text) == {"status": "ok", "events": 0}
    import aiohttp

    from channels.line_events import signature

    body = b'{"destination": "x", "events": "nope"}'
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.hook.url, data=body, headers={"X-Line-Signature": signature(SECRET, body)}) as r,
    ):
        assert r.status == 400 and (await r.json())["error"] == "malformed"
    async with aiohttp.ClientSession() as http, http.post(stack.hook.url, data=body) as r:
        assert r.status == 401, "no signature: refused before the body is read"
