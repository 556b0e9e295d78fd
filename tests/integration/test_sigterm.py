"""SIGTERM with work queued: in-flight sends finish, the rest waits, a restart finishes it.

The daemon runs as a real subprocess (``python -m dispatcher run``) against a
slow Telegram Bot API stand-in, so that sends are in flight when it is told to
stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg

from dispatcher.pipeline import Outcome, Pipeline
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store import db
from dispatcher.store.subscribers import subscribe
from dispatcher.targeting import default_targeter
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed
from tests.samples import telegram_daemon_config

CHATS = [str(700000 + i) for i in range(90)]


def write_config(tmp: Path, base_url: str) -> Path:
    return telegram_daemon_config(
        tmp, base_url, "TEST_TG_TOKEN", delivery="shutdown_grace = 10.0\nlease_seconds = 30.0"
    )


async def start_daemon(config: Path, dsn: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DATABASE_URL": dsn, "TEST_TG_TOKEN": "42:SIGTERM"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        "--config",
        str(config),
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def counts(dsn: str) -> Counter[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return Counter(
            {
                r["state"]: r["n"]
                for r in await conn.fetch("SELECT state::text AS state, count(*) AS n FROM deliveries GROUP BY 1")
            }
        )
    finally:
        await conn.close()


async def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_sigterm_finishes_in_flight_keeps_the_rest_and_restart_completes(
    database: str, tmp_path: Path, shared_data: Path
) -> None:
    telegram = TelegramStandIn()
    telegram.delay = 0.4
    await telegram.start()
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            for chat in CHATS:
                await subscribe(conn, channel="telegram", address=chat, areas=["2220300"])
        outcome = parse_telegram((shared_data / "jma/live_noto2024/WInfoL.xml").read_bytes())
        assert isinstance(outcome, Parsed)
        pipeline = Pipeline(pool, targeter=default_targeter(), channels=["telegram"])
        result = await pipeline.ingest(outcome.alert)
        assert result.outcome is Outcome.QUEUED and result.deliveries == len(CHATS)
    finally:
        await pool.close()

    config = write_config(tmp_path, telegram.base_url)
    proc = await start_daemon(config, database)
    try:

        async def some_sent() -> bool:
            return len(telegram.messages) >= 5

        await wait_for(some_sent, timeout=30)
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert time.monotonic() - stopped_at < 11.0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    after_stop = await counts(database)
    assert after_stop["sending"] == 0, "nothing is left claimed by the stopped daemon"
    assert after_stop["queued"] > 0, "the rest stays queued for the next start"
    assert after_stop["delivered"] == len(telegram.messages), "every accepted message was recorded"
    assert b"stopped" in err

    proc = await start_daemon(config, database)
    try:

        async def all_done() -> bool:
            return (await counts(database))["delivered"] == len(CHATS)

        await wait_for(all_done, timeout=60)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await telegram.stop()
    received = Counter(m.chat_id for m in telegram.messages)
    assert set(received) == set(CHATS), "nothing lost"
    assert max(received.values()) == 1, "nothing sent twice"
