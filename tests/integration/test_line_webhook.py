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
from typing import Any

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


def last_reply(api: LineStandIn, user: str) -> list[dict[str, Any]]:
    """The messages of the last reply (or push) ``user`` got."""
    got = [d for d in api.delivered_to(user) if d.endpoint in ("reply", "push")]
    assert got, f"no reply to {user}"
    return list(got[-1].messages)


def buttons(messages: list[dict[str, Any]]) -> dict[str, str]:
    """label → postback data (or the action type) of the last message's quick replies."""
    items = messages[-1].get("quickReply", {}).get("items", [])
    return {i["action"]["label"]: i["action"].get("data", i["action"]["type"]) for i in items}


async def answered(stack: Stack, user: str, before: int) -> list[dict[str, Any]]:
    """Wait for the reply to the event just sent (the outbox sends it), and return its messages."""
    await wait_until(
        lambda: len([d for d in stack.api.delivered_to(user) if d.endpoint in ("reply", "push")]) > before,
        10,
        "the bot's reply",
    )
    return last_reply(stack.api, user)


def replies(stack: Stack, user: str) -> int:
    return len([d for d in stack.api.delivered_to(user) if d.endpoint in ("reply", "push")])


async def test_a_resident_follows_chooses_settings_gets_an_alert_by_multicast_and_leaves(stack: Stack) -> None:
    hook, api = stack.hook, stack.api
    transcript: list[str] = []

    async def say(event: dict[str, Any], what: str) -> list[dict[str, Any]]:
        n = replies(stack, HANAKO)
        result = await hook.send(event)
        assert result.status == 200, result.text
        messages = await answered(stack, HANAKO, n)
        transcript.append(f"> {what}")
        transcript.extend("< " + m["text"].replace("\n", " / ")[:100] for m in messages)
        return messages

    menu = await say(hook.follow(HANAKO), "(adds the account as a friend)")
    assert buttons(menu) == {
        "日本語": "L:ja",
        "やさしい日本語": "L:ja-easy",
        "English": "L:en",
        "Português": "L:pt",
        "Tiếng Việt": "L:vi",
        "中文": "L:zh",
    }
    (first,) = [d for d in api.delivered_to(HANAKO)]
    assert first.endpoint == "reply", "answered with the event's reply token, free"
    welcome = await say(hook.postback(HANAKO, "L:en"), "[English]")
    assert welcome[0]["text"].startswith("Welcome") and len(welcome) <= 5, "one reply request"
    offered = buttons(welcome)
    assert next(iter(offered.values())) == "location", "the location picker comes first"
    assert "P:0" in offered.values() and "M:done" in offered.values()
    await say(hook.postback(HANAKO, "D:numazu-ooka"), "[Ooka]")
    outside = await say(hook.location(HANAKO, 35.6812, 139.7671, title="東京駅"), "(shares a location at 東京駅)")
    assert "outside" in outside[0]["text"] and "P:0" in buttons(outside).values()
    keep = await say(hook.location(HANAKO, 35.0956, 138.8636, title="沼津駅"), "(shares a location at 沼津駅)")
    assert set(buttons(keep).values()) == {"K:1", "K:0"}
    await say(hook.postback(HANAKO, "K:0"), "[don't keep the point]")
    level = await say(hook.postback(HANAKO, "M:done"), "[Done]")
    assert {"V:all", "V:warnings", "V:critical"} <= set(buttons(level).values())
    await say(hook.postback(HANAKO, "V:all"), "[Everything]")
    ready = await say(hook.postback(HANAKO, "Q:off"), "[No quiet hours]")
    assert "Ooka" in ready[-1]["text"] and "Central Numazu" in ready[-1]["text"]
    assert all(d.endpoint == "reply" for d in api.delivered_to(HANAKO)), "every answer was a free reply"
    sub = await stack.fetch(
        "SELECT s.areas, p.language FROM subscriptions s JOIN subscribers p ON p.id = s.subscriber_id"
        " WHERE s.channel = 'line' AND s.address = $1",
        HANAKO,
    )
    assert sub[0]["language"] == "en" and {"numazu-ooka", "numazu-chushin"} <= set(sub[0]["areas"])

    # An alert for Ooka reaches her by multicast, even when LINE's first answer is lost.
    stack.api.fail(500, after_accept=True, endpoint="multicast")
    assert stack.service.pipeline is not None
    await stack.service.pipeline.ingest(alert("E1", codes=("numazu-ooka",)))
    await stack.service.pipeline.ingest(alert("E2", codes=("numazu-nishiura",)))
    await wait_until(lambda: any(r.status == 409 for r in api.refusals), 15, "the retry answered 409")

    async def delivered() -> bool:
        rows = await stack.fetch("SELECT state::text FROM deliveries WHERE alert_id IS NOT NULL")
        return [r["state"] for r in rows] == ["delivered"]

    await wait_until(delivered, 10, "the alert recorded as delivered")
    alerts = [d for d in api.delivered_to(HANAKO) if d.endpoint == "multicast"]
    assert len(alerts) == 1, "once, though sent twice; nothing for Nishiura"
    assert "test E1" in alerts[0].texts[0] and "/alerts/" in alerts[0].texts[0]
    latest = await say(hook.text(HANAKO, "/latest"), "/latest")
    assert "/alerts/" in latest[-1]["text"] and "E2" not in latest[-1]["text"]

    # Operators see the quota the daemon read and counted (replies are free).
    async def counted() -> bool:
        rows = await stack.fetch("SELECT used FROM channel_quotas WHERE channel = 'line'")
        return bool(rows) and rows[0]["used"] == 1

    await wait_until(counted, 10, "the quota counted")
    report = json.loads(await stack.cli("status", "--json"))
    (quota,) = report["quotas"]
    assert (quota["channel"], quota["plan"], quota["quota"], quota["used"], quota["held"]) == (
        "line",
        "light",
        5000,
        1,
        None,
    )
    assert "line: plan light, 1 of 5,000 messages this month (0.0%, 4,999 left)" in await stack.cli("status")

    # A follow LINE delivers again is answered once.
    event = hook.follow(TARO)
    assert (await hook.send(event)).status == 200
    await wait_until(lambda: replies(stack, TARO) == 1, 10, "Taro's language menu")
    assert (await hook.send(event, redelivery=True)).status == 200
    await asyncio.sleep(0.5)
    assert replies(stack, TARO) == 1

    # Hanako blocks the account: she is forgotten, Taro stays.
    assert (await hook.send(hook.unfollow(HANAKO))).status == 200
    assert [r["address"] for r in await stack.fetch("SELECT address FROM subscriptions")] == [TARO]
    assert not await stack.fetch("SELECT 1 FROM deliveries WHERE address = $1", HANAKO)
    assert not await stack.fetch("SELECT 1 FROM resident_places")
    # Taro types 停止 (stop): he is told, then forgotten too.
    assert (await hook.send(hook.text(TARO, "停止"))).status == 200
    await wait_until(lambda: replies(stack, TARO) == 2, 10, "the goodbye")
    assert not await stack.fetch("SELECT 1 FROM subscriptions")
    assert not await stack.fetch("SELECT 1 FROM subscribers")
    print("\n".join(transcript))


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
    assert not [d for d in stack.api.deliveries if d.to == MALLORY], "no answer either"
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


async def test_the_demo_chat_tool_talks_to_the_bot(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    from dispatcher.standins.line_webhook import chat

    await chat(stack.hook.url, SECRET, stack.api.base_url, TARO, lines=["!follow", "3", "/latest", "!quit"])
    out = capsys.readouterr().out
    assert "Please choose your language." in out
    assert "[3] English" in out and "< Welcome to Numazu City" in out
    assert "[1] 📍Share location (location)" in out
    assert all(d.endpoint == "reply" for d in stack.api.delivered_to(TARO)), "tokens minted by the stand-in"


async def test_quiet_hours_hold_an_advisory_but_not_a_tsunami_warning(stack: Stack) -> None:
    from datetime import UTC, datetime

    from dispatcher.model import JST, Priority

    hook = stack.hook
    for event in (
        hook.follow(HANAKO),
        hook.postback(HANAKO, "L:en"),
        hook.postback(HANAKO, "D:numazu-ooka"),
        hook.postback(HANAKO, "M:done"),
        hook.postback(HANAKO, "V:all"),
        hook.postback(HANAKO, "Q:off"),
    ):
        assert (await hook.send(event)).status == 200
    # Her quiet hours: from half an hour ago to an hour from now (Japan time).
    now = datetime.now(UTC).astimezone(JST)
    minute = now.hour * 60 + now.minute
    conn = await asyncpg.connect(stack.dsn)
    try:
        await conn.execute(
            "UPDATE subscriptions SET quiet_start = $1, quiet_end = $2 WHERE address = $3",
            (minute - 30) % 1440,
            (minute + 60) % 1440,
            HANAKO,
        )
    finally:
        await conn.close()
    assert stack.service.pipeline is not None
    await stack.service.pipeline.ingest(alert("ADV", priority=Priority.LOW, codes=("numazu-ooka",)))
    await stack.service.pipeline.ingest(alert("TSUNAMI", priority=Priority.CRITICAL, codes=("numazu-ooka",)))
    await wait_until(
        lambda: any(d.endpoint == "multicast" for d in stack.api.delivered_to(HANAKO)), 15, "the tsunami warning"
    )
    await asyncio.sleep(1.0)
    got = [d.texts[0] for d in stack.api.delivered_to(HANAKO) if d.endpoint == "multicast"]
    assert len(got) == 1 and "test TSUNAMI" in got[0]
    held = await stack.fetch(
        "SELECT d.state::text AS state, d.not_before FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        " WHERE a.identifier = 'ADV'"
    )
    assert held[0]["state"] == "queued" and (held[0]["not_before"] - datetime.now(UTC)).total_seconds() > 3000


async def test_the_replies_of_one_event_are_bundled_with_its_reply_token(database: str) -> None:
    from dispatcher.store import replies
    from dispatcher.store import residents as store

    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            before = await replies.last_delivery_id(conn)
            payloads = [{"text": f"reply {i}", "buttons": [], "edit": False} for i in range(7)]
            await store.queue_replies(
                conn, channel="line", address=HANAKO, subscription_id=None, language="en", priority=9, replies=payloads
            )
            assert await replies.bundle_replies(conn, "line", HANAKO, before, "token-1") == 5
        rows = await conn.fetch("SELECT reply FROM deliveries ORDER BY id")
    finally:
        await conn.close()
    first = json.loads(rows[0]["reply"])
    assert first["reply_token"] == "token-1" and first["text"] == "reply 0"
    assert [m["text"] for m in first["more"]] == ["reply 1", "reply 2", "reply 3", "reply 4"]
    # Beyond LINE's five messages a request, the rest stay as they were (sent as pushes).
    assert [json.loads(r["reply"])["text"] for r in rows[1:]] == ["reply 5", "reply 6"]
