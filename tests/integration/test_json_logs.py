"""``log_format = "json"``: the log of a real run, line by line, as a log shipper reads it.

``dispatcher run`` (a subprocess) polls the JMA feed stand-in, which publishes a real
震源・震度情報 naming 沼津市, and delivers it through the Telegram Bot API stand-in, whose
flood control answers one 429 first. Every line of its stderr must be a JSON object with
an ``event``; every line about a delivery names its ``alert_id``, ``delivery_id`` and
``channel``; one message, one event name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from dispatcher.standins.jma_feed import JmaFeedStandIn
from tests.integration.test_delivery import telegram_standin, wait_until
from tests.samples import add_subscribers

REPO = Path(__file__).resolve().parents[2]
CHATS = [str(550_000 + i) for i in range(5)]
TELEGRAM = "noto2024_VXSE53_WInfoL.xml"


async def test_json_log_lines_of_a_real_run_carry_event_and_ids(database: str, tmp_path: Path) -> None:
    await add_subscribers(database, "telegram", CHATS)
    feed = JmaFeedStandIn()
    await feed.start()
    lines: list[dict[str, Any]] = []
    raw: list[str] = []
    try:
        async with telegram_standin() as tg:
            tg.flood(retry_after=1, count=1)
            config = tmp_path / "run.toml"
            config.write_text(
                f'[service]\nstate_dir = "{tmp_path}"\nlog_format = "json"\nlog_level = "INFO"\n'
                "[web]\nenabled = false\n"
                f'[jma]\nfeeds = ["{feed.feed_url("eqvol")}"]\npoll_seconds = 1\n'
                f'[channels.telegram]\nenabled = true\ntoken_env = "TELEGRAM_TOKEN"\nbase_url = "{tg.base_url}"\n',
                encoding="utf-8",
            )
            body = (resources.files("config") / "demo" / "telegrams" / TELEGRAM).read_bytes()
            feed.publish("eqvol", TELEGRAM, body, title="震源・震度に関する情報")
            env = os.environ | {"DATABASE_URL": database, "TELEGRAM_TOKEN": "42:JSON"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dispatcher",
                "run",
                "--config",
                str(config),
                cwd=str(REPO),
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            assert proc.stderr is not None

            async def read() -> None:
                assert proc.stderr is not None
                async for line in proc.stderr:
                    text = line.decode().rstrip("\n")
                    if text:
                        raw.append(text)
                        with contextlib.suppress(ValueError):
                            lines.append(json.loads(text))

            reader = asyncio.create_task(read())
            try:
                await wait_until(
                    lambda: sum(1 for x in lines if x.get("event") == "delivery.settled") == 1, 60, "the run"
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=30)
                await asyncio.wait_for(reader, timeout=10)
    finally:
        await feed.stop()

    assert proc.returncode == 0
    assert len(lines) == len(raw), [r for r in raw if not r.startswith("{")][:5]
    by_msg: dict[tuple[str, str], set[str]] = defaultdict(set)
    for x in lines:
        assert {"ts", "level", "logger", "event", "msg"} <= set(x), x
        assert isinstance(x["event"], str) and x["event"]
        by_msg[(x["logger"], x["msg"])].add(x["event"])
        if "delivery_id" in x:
            assert x.get("alert_id") is not None and x.get("channel"), x
    # One kind of line, one event name.
    assert all(len(events) == 1 for events in by_msg.values()), {k: v for k, v in by_msg.items() if len(v) > 1}

    events = [x["event"] for x in lines]
    [queued] = [x for x in lines if x["event"] == "alert.queued"]
    assert queued["alert_id"] and queued["deliveries"] == len(CHATS)
    delivered = [x for x in lines if x["event"] == "delivery.delivered"]
    assert sorted(x["delivery_id"] for x in delivered) == sorted({x["delivery_id"] for x in delivered})
    assert len(delivered) == len(CHATS)
    assert all(x["alert_id"] == queued["alert_id"] and x["channel"] == "telegram" and x["remote_id"] for x in delivered)
    assert events.count("delivery.rate_limited") == 1
    assert "worker.started" in events and "app.service_started" in events
    [settled] = [x for x in lines if x["event"] == "delivery.settled"]
    assert settled["alert_id"] == queued["alert_id"] and settled["delivered"] == len(CHATS)
    # Chat ids are recipients' addresses: never in the log.
    assert not any(chat in line for chat in CHATS for line in raw)
