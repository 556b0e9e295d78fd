"""A paused channel is never silent, and operators can pause and resume it (issue 17, item 3).

The daemon (:class:`dispatcher.app.Service`, in this process, web server on) sends
through the Telegram Bot API stand-in, which answers a 429 with a huge
``retry_after`` as Telegram's flood control does. The operator's tools are the real
command line, run as subprocesses against the same database: ``dispatcher status``
and ``dispatcher channel pause|resume``. The database is authoritative: the daemon
follows it within seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from channels.telegram import TelegramConfig
from dispatcher.app import Service
from dispatcher.delivery_config import DeliveryConfig
from dispatcher.model import Priority
from dispatcher.settings import ChannelSettings, load
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store import db, outbox
from dispatcher.worker import OutboxWorker
from tests.integration.test_delivery import alert, telegram, telegram_standin, wait_until
from tests.samples import add_subscribers
from tests.staffing import staff_session

REPO = Path(__file__).resolve().parents[2]
CHATS = [str(840_000 + i) for i in range(5)]
FLOOD_WAIT = 10_000


@dataclass
class Stack:
    dsn: str
    telegram: TelegramStandIn
    service: Service
    cli_config: Path

    @property
    def url(self) -> str:
        assert self.service.web_url is not None
        return self.service.web_url

    def got(self, identifier: str) -> set[str]:
        """Chats that received the alert ``identifier``."""
        return {m.chat_id for m in self.telegram.messages if f"test {identifier}" in m.text}

    async def cli(self, *args: str) -> str:
        """``dispatcher ARGS`` as an operator runs it; its stdout (exit code 0 asserted)."""
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
        assert proc.returncode == 0, f"dispatcher {' '.join(args)}: {err.decode()[-2000:]}"
        return out.decode()

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as resp:
            assert resp.status == 200, "the daemon is alive: /healthz stays 200 while a channel is paused"
            body: dict[str, Any] = await resp.json()
            return body

    async def ingest(self, identifier: str, priority: Priority = Priority.HIGH) -> None:
        assert self.service.pipeline is not None
        await self.service.pipeline.ingest(alert(identifier, priority=priority))


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    await add_subscribers(database, "telegram", CHATS)
    cli_config = tmp_path / "operator.toml"
    cli_config.write_text(
        f'[service]\nstate_dir = "{tmp_path}"\nlog_level = "WARNING"\n[database]\nurl = "{database}"\n'
        "[web]\nenabled = false\n[jma]\nenabled = false\n",
        encoding="utf-8",
    )
    async with telegram_standin() as tg:
        base = load(None, env={})
        settings = dataclasses.replace(
            base,
            service=dataclasses.replace(base.service, state_dir=tmp_path),
            web=dataclasses.replace(base.web, enabled=True, port=0),
            sources={**base.sources, "jma": dataclasses.replace(base.sources["jma"], enabled=False)},
            delivery=dataclasses.replace(base.delivery, poll_interval=0.2, backoff_base=0.2, backoff_max=1.0),
            channels={
                "telegram": ChannelSettings(
                    "telegram", enabled=True, options=TelegramConfig(token="42:PAUSE", base_url=tg.base_url)
                )
            },
        )
        service = Service(settings, dsn=database)
        await service.start()
        try:
            yield Stack(database, tg, service, cli_config)
        finally:
            await service.stop()


def about(when: str | None, seconds: float) -> bool:
    """``when`` (ISO 8601) is about ``seconds`` from now."""
    assert when is not None
    left = (datetime.fromisoformat(when) - datetime.now(UTC)).total_seconds()
    return seconds - 120 < left <= seconds + 5


async def test_a_flood_wait_of_hours_is_visible_and_a_resume_ends_it_without_a_restart(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dispatcher")
    stack.telegram.flood(retry_after=FLOOD_WAIT, count=1)
    await stack.ingest("flood")
    await wait_until(lambda: stack.telegram.rate_limited == 1, 10, "the 429")

    async def degraded() -> bool:
        return (await stack.health())["status"] == "degraded"

    await wait_until(degraded, 5, "/healthz to say degraded")
    health = await stack.health()
    assert health["ok"] is True
    [pause] = health["paused"]
    assert (pause["channel"], pause["why"]) == ("telegram", "provider")
    assert about(pause["until"], FLOOD_WAIT) and "flood control" in pause["reason"].lower()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and getattr(r, "channel", None) == "telegram"]
    assert any("paus" in r.getMessage() for r in warned), [r.getMessage() for r in warned]

    # The operator sees it in `dispatcher status`, as text and as JSON.
    text = await stack.cli("status")
    assert "telegram" in text and "paused by the provider" in text and "flood control" in text.lower(), text
    report = json.loads(await stack.cli("status", "--json"))
    assert report["status"] == "degraded"
    assert [(p["channel"], p["why"]) for p in report["paused"]] == [("telegram", "provider")]
    # And on the dashboard, as a banner.
    async with staff_session(stack.url, stack.dsn) as http, http.get(f"{stack.url}/") as resp:
        page = await resp.text()
    assert 'class="banner"' in page and "telegram" in page and "dispatcher channel resume telegram" in page

    # Paused, a new alert waits, CRITICAL or not.
    await stack.ingest("waits", Priority.CRITICAL)
    await asyncio.sleep(1.0)
    assert not stack.got("waits")
    assert len(stack.got("flood")) < len(CHATS), "the chat answered 429 (and any not sent yet) waits"

    # The operator resumes: the daemon follows the database within seconds, no restart.
    resumed = time.monotonic()
    out = await stack.cli("channel", "resume", "telegram")
    assert "resumed" in out and getpass.getuser() in out, out
    await wait_until(
        lambda: stack.got("flood") == set(CHATS) and stack.got("waits") == set(CHATS),
        5,
        lambda: f"everything sent after the resume: {len(stack.telegram.messages)} messages",
    )
    assert time.monotonic() - resumed < 8
    health = await stack.health()
    assert health["status"] == "ok" and health["paused"] == []
    assert stack.telegram.rate_limited == 1


async def test_an_operator_pause_stops_a_running_daemon_within_seconds(stack: Stack) -> None:
    out = await stack.cli("channel", "pause", "telegram", "--reason", "relay maintenance", "--for", "600")
    assert "paused" in out and "relay maintenance" in out, out
    health = await stack.health()
    assert health["status"] == "degraded"
    [pause] = health["paused"]
    assert (pause["channel"], pause["why"], pause["by"]) == ("telegram", "operator", getpass.getuser())
    assert pause["reason"] == "relay maintenance" and about(pause["until"], 600)

    await asyncio.sleep(2.0)  # the daemon follows the database within seconds
    await stack.ingest("held")
    await asyncio.sleep(2.0)
    assert not stack.got("held"), "a paused channel claims nothing"
    conn = await asyncpg.connect(stack.dsn)
    try:
        claims = await conn.fetch("SELECT state::text AS state, claims FROM deliveries")
    finally:
        await conn.close()
    assert {(r["state"], r["claims"]) for r in claims} == {("queued", 0)}
    text = await stack.cli("status")
    assert "paused by" in text and "relay maintenance" in text, text
    async with staff_session(stack.url, stack.dsn) as http, http.get(f"{stack.url}/") as resp:
        page = await resp.text()
    assert 'class="banner"' in page and "relay maintenance" in page

    await stack.cli("channel", "resume", "telegram")
    await wait_until(lambda: stack.got("held") == set(CHATS), 5, "the held alert, after the resume")
    conn = await asyncpg.connect(stack.dsn)
    try:
        actions = await conn.fetch("SELECT channel, action, by_whom, reason FROM channel_actions ORDER BY id")
    finally:
        await conn.close()
    assert [(a["channel"], a["action"], a["by_whom"]) for a in actions] == [
        ("telegram", "pause", getpass.getuser()),
        ("telegram", "resume", getpass.getuser()),
    ]
    assert actions[0]["reason"] == "relay maintenance"


async def test_a_pause_in_memory_outlives_a_stale_read_but_not_a_newer_resume(database: str) -> None:
    """The database is authoritative, memory the fast path; a generation orders the two.

    A 429 pauses the worker in memory at once and reaches the database a moment
    later: a read of channel_state in between must not clear the pause. An operator's
    resume, newer than the pause, clears it; and the late write of a 429 answered
    before the resume does not pause the channel again.
    """
    async with telegram_standin() as tg:
        pool = await db.create_pool(database, min_size=1, max_size=2)
        try:
            worker = OutboxWorker(
                telegram(tg),
                pool,
                delivery=DeliveryConfig(),
                settings=ChannelSettings("telegram", enabled=True),
            )
            await worker.follow_state()
            assert worker.paused_seconds == 0
            worker.gate.pause_for(FLOOD_WAIT)  # what a 429's answer does, before the recorder writes it
            await worker.follow_state()
            assert worker.paused_seconds > FLOOD_WAIT - 10, "a read that predates the write keeps the pause"
            until = datetime.now(UTC) + timedelta(seconds=FLOOD_WAIT)
            async with pool.acquire() as conn:
                await outbox.pause_channel(conn, "telegram", until, "flood control", generation=0)
                await worker.follow_state()
                assert worker.paused_seconds > FLOOD_WAIT - 10
                await outbox.resume_channel(conn, "telegram", by="operator")
                await outbox.pause_channel(conn, "telegram", until, "answered before the resume", generation=0)
                state = await outbox.channel_state(conn, "telegram")
            assert state.paused_until is None and state.generation == 1
            await worker.follow_state()
            assert worker.paused_seconds == 0, "the newer resume clears the pause in memory"
        finally:
            await pool.close()
