"""The whole path: a real JMA telegram on a feed → PostgreSQL → Telegram and e-mail.

The daemon (:class:`dispatcher.app.Service`) runs in-process against local
stand-ins that speak each provider's wire format: the JMA Atom feed, the
Telegram Bot API (including its 429 ``retry_after`` and 403 answers) and a real
SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from channels.email import EmailConfig
from channels.telegram import TelegramConfig
from dispatcher.app import Service
from dispatcher.model import MsgType
from dispatcher.settings import ChannelSettings, Settings, load
from dispatcher.standins.jma_feed import JmaFeedStandIn
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store.subscribers import subscribe
from tests.samples import tsunami_warning
from tests.staffing import staff_session

NUMAZU = "2220300"
NOTO_VXSE53 = "jma/live_noto2024/WInfoL.xml"  # 震源・震度情報 listing 沼津市 (intensity 3)


@dataclasses.dataclass
class Stack:
    dsn: str
    feed: JmaFeedStandIn
    telegram: TelegramStandIn
    smtp: SmtpStandIn
    service: Service


def settings_for(feed: JmaFeedStandIn, telegram: TelegramStandIn, smtp: SmtpStandIn, tmp: Path) -> Settings:
    base = load(None, env={})
    return dataclasses.replace(
        base,
        service=dataclasses.replace(base.service, state_dir=tmp),
        web=dataclasses.replace(base.web, enabled=True, port=0),
        sources={
            **base.sources,
            "jma": dataclasses.replace(base.sources["jma"], feeds=(feed.feed_url("eqvol"),), poll_seconds=1),
        },
        delivery=dataclasses.replace(base.delivery, poll_interval=0.2, backoff_base=0.2, backoff_max=1.0),
        channels={
            "telegram": ChannelSettings(
                "telegram", enabled=True, options=TelegramConfig(token="42:TEST", base_url=telegram.base_url)
            ),
            "email": ChannelSettings("email", enabled=True, options=EmailConfig(host=smtp.host, port=smtp.port)),
        },
    )


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    feed, telegram, smtp = JmaFeedStandIn(), TelegramStandIn(), SmtpStandIn()
    await feed.start()
    await telegram.start()
    await smtp.start()
    conn = await asyncpg.connect(database)
    try:
        await subscribe(conn, channel="telegram", address="100001", areas=[NUMAZU], language="ja")
        await subscribe(conn, channel="telegram", address="100002", areas=[NUMAZU], language="en")
        await subscribe(conn, channel="email", address="resident@example.jp", areas=[NUMAZU], language="ja-easy")
        # Someone in 那覇市, Okinawa (4720100), where the Noto earthquake was not felt.
        await subscribe(conn, channel="telegram", address="555555", areas=["4720100"], language="ja")
    finally:
        await conn.close()
    service = Service(settings_for(feed, telegram, smtp, tmp_path), dsn=database)
    await service.start()
    try:
        yield Stack(database, feed, telegram, smtp, service)
    finally:
        await service.stop()
        await feed.stop()
        await telegram.stop()
        await smtp.stop()


async def wait_settled(dsn: str, expected: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Wait until ``expected`` deliveries exist and none is queued or sending."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            rows = [dict(r) for r in await conn.fetch("SELECT *, state::text AS state FROM deliveries ORDER BY id")]
            if len(rows) >= expected and all(r["state"] not in ("queued", "sending") for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries did not settle: {[(r['address'], r['state']) for r in rows]}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def publish(stack: Stack, shared_data: Path, rel: str = NOTO_VXSE53) -> None:
    path = shared_data / rel
    stack.feed.publish("eqvol", path.name, path.read_bytes(), title="震源・震度に関する情報")


async def test_real_telegram_reaches_numazu_subscribers_on_telegram_and_email(stack: Stack, shared_data: Path) -> None:
    publish(stack, shared_data)
    rows = await wait_settled(stack.dsn, expected=3)

    assert {(r["channel"], r["address"], r["state"]) for r in rows} == {
        ("telegram", "100001", "delivered"),
        ("telegram", "100002", "delivered"),
        ("email", "resident@example.jp", "delivered"),
    }, "only the three Numazu subscriptions get it; Naha's does not"
    by_chat = {m.chat_id: m for m in stack.telegram.messages}
    assert set(by_chat) == {"100001", "100002"}
    assert "震源・震度情報" in by_chat["100001"].text and "沼津市" in by_chat["100001"].text
    assert "Earthquake" in by_chat["100002"].text
    # The provider's answer is recorded: Telegram's message_id becomes remote_id.
    tg_rows = {r["address"]: r for r in rows if r["channel"] == "telegram"}
    assert tg_rows["100001"]["remote_id"] == str(by_chat["100001"].message_id)
    [mail] = stack.smtp.messages
    assert list(mail.rcpt_tos) == ["resident@example.jp"]
    text = mail.message.get_body(("plain",)).get_content()  # text and HTML parts since [publication]
    assert "じしん" in text or "地震" in text

    conn = await asyncpg.connect(stack.dsn)
    try:
        events = await conn.fetch(
            "SELECT delivery_id, array_agg(state::text ORDER BY id) AS states FROM delivery_events GROUP BY 1"
        )
        doc = await conn.fetchrow("SELECT outcome, kind, size FROM documents")
    finally:
        await conn.close()
    assert all(e["states"] == ["queued", "sending", "delivered"] for e in events)
    assert doc["outcome"] == "parsed" and doc["kind"] == "VXSE53" and doc["size"] > 1000
    # Fetched exactly once even though the feed was polled again meanwhile.
    assert stack.feed.fetches_of(Path(NOTO_VXSE53).name) == 1


async def test_telegram_429_pauses_telegram_for_retry_after_and_loses_nothing(stack: Stack, shared_data: Path) -> None:
    stack.telegram.flood(2, count=1)  # the next sendMessage gets 429 retry_after=2
    started = time.monotonic()
    publish(stack, shared_data)
    rows = await wait_settled(stack.dsn, expected=3, timeout=30)
    assert all(r["state"] == "delivered" for r in rows)
    tg = [m for m in stack.telegram.messages]
    assert {m.chat_id for m in tg} == {"100001", "100002"}
    assert stack.telegram.rate_limited == 1
    # The two chats were sent concurrently; the one answered 429 went again only
    # after the 2 s the provider asked for…
    assert len(tg) == 2, "no duplicate after the 429"
    assert max(m.at for m in tg) - started >= 2.0
    # …while e-mail was not held up by Telegram's pause.
    assert stack.smtp.messages and all(
        r["updated_at"] < max(x["updated_at"] for x in rows if x["channel"] == "telegram")
        for r in rows
        if r["channel"] == "email"
    )
    # A rate-limited attempt does not spend the retry budget.
    assert all(r["attempts"] == 1 for r in rows)
    conn = await asyncpg.connect(stack.dsn)
    try:
        detail = await conn.fetchval(
            "SELECT detail FROM delivery_events WHERE state = 'queued' AND detail LIKE 'rate limited%' LIMIT 1"
        )
        paused = await conn.fetchval("SELECT paused_until FROM channel_state WHERE channel = 'telegram'")
    finally:
        await conn.close()
    assert detail is not None and "retry" in detail.lower()
    assert paused is not None


async def test_blocked_bot_fails_delivery_with_reason_and_unsubscribes(stack: Stack, shared_data: Path) -> None:
    stack.telegram.block("100002")
    publish(stack, shared_data)
    rows = await wait_settled(stack.dsn, expected=3)
    by_addr = {r["address"]: r for r in rows}
    assert by_addr["100001"]["state"] == "delivered"
    assert by_addr["100002"]["state"] == "failed"
    assert "blocked" in by_addr["100002"]["last_error"]
    assert by_addr["100002"]["attempts"] == 1, "a permanent failure is not retried"
    conn = await asyncpg.connect(stack.dsn)
    try:
        sub = await conn.fetchrow("SELECT active, deactivated_reason FROM subscriptions WHERE address = '100002'")
    finally:
        await conn.close()
    assert sub["active"] is False and sub["deactivated_reason"]
    # Operators see why: the reason, counted per channel, and the delivery's transitions.
    base = stack.service.web_url
    assert base is not None
    async with staff_session(base, stack.dsn) as http:
        async with http.get(f"{base}/api/alerts/{by_addr['100002']['alert_id']}/deliveries") as resp:
            listed = await resp.json()
        [reason] = listed["reasons"]
        assert (reason["channel"], reason["state"], reason["n"]) == ("telegram", "failed", 1)
        assert "blocked" in reason["reason"]
        async with http.get(f"{base}/api/deliveries/{by_addr['100002']['id']}") as resp:
            history = await resp.json()
        assert [e["state"] for e in history["events"]] == ["queued", "sending", "failed"]
        assert "blocked" in history["events"][-1]["detail"]


async def test_provider_5xx_is_retried_until_delivered(stack: Stack, shared_data: Path) -> None:
    stack.telegram.fail(502, count=2, chat_id="100001")
    publish(stack, shared_data)
    rows = await wait_settled(stack.dsn, expected=3, timeout=30)
    r = next(r for r in rows if r["address"] == "100001")
    assert r["state"] == "delivered" and r["attempts"] == 3
    assert [m.chat_id for m in stack.telegram.messages].count("100001") == 1


async def test_dashboard_and_alert_page_show_every_delivery(stack: Stack, shared_data: Path) -> None:
    publish(stack, shared_data)
    await wait_settled(stack.dsn, expected=3)
    base = stack.service.web_url
    assert base is not None
    # Operators log in (the staff console); residents' page and /healthz stay public.
    async with staff_session(base, stack.dsn) as http:
        async with http.get(f"{base}/") as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "震源・震度情報" in page and "3 delivered" not in page  # per channel: telegram 2, email 1
        assert "2 delivered" in page and "1 delivered" in page
        async with http.get(f"{base}/api/alerts") as resp:
            data = await resp.json()
        [alert] = data["alerts"]
        assert alert["deliveries"]["telegram"]["delivered"] == 2
        assert alert["deliveries"]["email"]["delivered"] == 1
        # Residents' messages link to the alert by the public id the service minted.
        link = next(line for line in stack.telegram.messages[0].text.splitlines() if "/alerts/" in line)
        path = link[link.index("/alerts/") :].strip()
        assert link.strip().endswith(path) and path == f"/alerts/{alert['public_id']}"
        assert "http://127.0.0.1:8080/alerts/" in link  # service.public_url
        async with http.get(f"{base}{path}") as resp:
            assert resp.status == 200
            public = await resp.text()
        # Residents see the alert, not who else got it nor how.
        assert "震源・震度情報" in public and "JST" in public
        assert "delivered" not in public and "0001" not in public and "Attempts" not in public
        # Operators see every delivery's fate, and each delivery's transitions.
        async with http.get(f"{base}/alerts/{alert['id']}/deliveries") as resp:
            assert resp.status == 200
            ops = await resp.text()
        assert ops.count("<td>delivered</td>") == 3 and "…0001" in ops
        async with http.get(f"{base}/api/alerts/{alert['id']}/deliveries", params={"state": "delivered"}) as resp:
            listed = await resp.json()
        assert [d["state"] for d in listed["deliveries"]] == ["delivered"] * 3
        assert listed["counts"]["telegram"]["delivered"] == 2 and listed["next_after"] is None
        async with http.get(f"{base}/api/alerts/{alert['id']}/deliveries", params={"limit": "2"}) as resp:
            first_page = await resp.json()
        assert len(first_page["deliveries"]) == 2 and first_page["next_after"] == first_page["deliveries"][1]["id"]
        async with http.get(f"{base}/api/alerts/{alert['id']}/deliveries", params={"state": "lost"}) as resp:
            assert resp.status == 400 and "state must be one of" in await resp.text()
        one = listed["deliveries"][0]["id"]
        async with http.get(f"{base}/api/deliveries/{one}") as resp:
            history = await resp.json()
        assert [(e["state"], e["attempt"]) for e in history["events"]] == [
            ("queued", 0),
            ("sending", 1),
            ("delivered", 1),
        ]
        async with http.get(f"{base}/deliveries/{one}") as resp:
            assert resp.status == 200 and "sending" in await resp.text()
        for missing in ("/alerts/999999", "/alerts/999999/deliveries", "/deliveries/999999", "/deliveries/x"):
            async with http.get(f"{base}{missing}") as resp:
                assert resp.status == 404, missing
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()
        assert health["ok"] is True
        assert all(share == {"daemons": 1, "rank": 0} for share in health["daemon"]["channels"].values())
        assert health["daemon"]["channels"], "the daemon serves at least one channel here"


async def test_status_cli_prints_alerts_with_per_channel_counts(stack: Stack, shared_data: Path) -> None:
    import json
    import os
    import sys

    publish(stack, shared_data)
    await wait_settled(stack.dsn, expected=3)
    env = {**os.environ, "DATABASE_URL": stack.dsn}
    for args in (["status", "--json"], ["status"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        if args[-1] == "--json":
            data = json.loads(out)
            [alert] = data["alerts"]
            assert alert["event"] == "震源・震度情報" and alert["kind"] == "VXSE53"
            assert alert["deliveries"]["telegram"]["delivered"] == 2
            assert data["totals"]["email"]["delivered"] == 1
        else:
            text = out.decode()
            assert "震源・震度情報" in text and "telegram: 2 delivered" in text and "email: 1 delivered" in text


async def test_each_channel_keeps_its_own_number_of_requests_in_flight(stack: Stack) -> None:
    # Telegram declares 8 (python-telegram-bot requests are heavy to build); email takes [delivery] concurrency.
    workers = {w.name: w for w in stack.service.workers}
    assert workers["telegram"].concurrency == 8
    assert workers["email"].concurrency == stack.service.settings.delivery.concurrency == 32


async def test_a_cancel_edits_the_district_channels_post(database: str, tmp_path: Path) -> None:
    """A district channel's post of an alert is edited (【取消】 first) when the alert is cancelled."""
    feed, telegram, smtp = JmaFeedStandIn(), TelegramStandIn(), SmtpStandIn()
    for s in (feed, telegram, smtp):
        await s.start()
    base = settings_for(feed, telegram, smtp, tmp_path)
    options = TelegramConfig(token="42:TEST", base_url=telegram.base_url, district_channels={"all": "-100777"})
    settings = dataclasses.replace(
        base, channels={**base.channels, "telegram": ChannelSettings("telegram", enabled=True, options=options)}
    )
    service = Service(settings, dsn=database)
    await service.start()
    try:
        assert service.context is not None
        await service.context.emit(tsunami_warning(public_id=""))
        await wait_settled(database, expected=1)
        [post] = telegram.updates.chats["-100777"]
        assert "津波" in post.text and post.edits == 0
        cancel = dataclasses.replace(
            tsunami_warning(), identifier="cancel-1", msg_type=MsgType.CANCEL,
            references=(tsunami_warning().identifier,), event="津波警報解除",
            headline="津波警報を解除しました。", public_id="",
        )  # fmt: skip
        await service.context.emit(cancel)
        await wait_settled(database, expected=2)
        original, correction = telegram.updates.chats["-100777"]
        assert original.edits == 1 and original.text.startswith("【取消】")
        assert "解除" in correction.text and correction.edits == 0
    finally:
        await service.stop()
        for s in (feed, telegram, smtp):
            await s.stop()
