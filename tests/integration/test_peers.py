"""Two daemons on one database share a provider's limits (dispatcher.peers).

Both run the real :class:`~dispatcher.app.Service` (here in one process, each with
its own pool, LISTEN connection and workers) against one Telegram stand-in that
enforces the limits for the bot as a whole. Each daemon alone is configured with
the whole budget; together they must not exceed it, nor pace one chat from two
places.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from dispatcher.app import Service
from dispatcher.peers import Peers
from dispatcher.settings import Settings, load
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store import db
from tests.samples import add_subscribers, make_alert, telegram_daemon_config

CHATS = [str(910_000 + i) for i in range(60)]
NUMAZU = "2220300"
# The bot's limits as the stand-in enforces them, and as each daemon is configured:
# a tenth under them, as an operator would, so that event-loop stalls of a loaded CI
# machine (both daemons and the stand-in share this process) do not bunch requests
# over them. Two daemons that did not share would still send at twice the limit.
LIMIT, RATE = 40, 36
INTERVAL, SPACING = 1.0, 1.1


def settings(tmp: Path, base_url: str) -> Settings:
    path = telegram_daemon_config(
        tmp,
        base_url,
        "PEERS_TG_TOKEN",
        telegram=f"rate_per_second = {RATE}\nper_recipient_interval = {SPACING}",
    )
    return load(path, env={"PEERS_TG_TOKEN": "42:PEERS"})


@contextlib.asynccontextmanager
async def daemon(tmp: Path, base_url: str, dsn: str) -> AsyncIterator[Service]:
    service = Service(settings(tmp, base_url), dsn=dsn)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_two_daemons_share_the_bots_limits_and_each_delivery_goes_once(database: str, tmp_path: Path) -> None:
    await add_subscribers(database, "telegram", CHATS)
    standin = TelegramStandIn(global_rate=LIMIT, per_chat_interval=INTERVAL)
    await standin.start()
    try:
        async with (
            daemon(tmp_path / "a", standin.base_url, database) as a,
            daemon(tmp_path / "b", standin.base_url, database) as b,
        ):
            assert a.peers is not None and b.peers is not None and a.pipeline is not None
            ta, tb = a.peers.share_for("telegram"), b.peers.share_for("telegram")
            await wait_until(lambda: ta.live == 2 and tb.live == 2, 10, "both daemons to count 2")
            assert {ta.rank, tb.rank} == {0, 1}
            for n in range(3):
                await a.pipeline.ingest(make_alert(f"peers-{n}", sent=datetime.now(UTC), headline=f"peers-{n}"))
            await wait_until(lambda: len(standin.messages) >= 3 * len(CHATS), 30, "180 messages")
            sent = {"a": sum(w.sent for w in a.workers), "b": sum(w.sent for w in b.workers)}
            assert sent["a"] > 0 and sent["b"] > 0, f"both daemons must work: {sent}"
            # Alone again: b leaves, a takes the whole budget and every chat back.
            await b.stop()
            await wait_until(lambda: ta.live == 1, 10, "a to be alone")
            await a.pipeline.ingest(make_alert("peers-alone", sent=datetime.now(UTC), headline="peers-alone"))
            await wait_until(lambda: len(standin.messages) >= 4 * len(CHATS), 30, "240 messages")
    finally:
        await standin.stop()
    assert standin.rate_limited == 0, f"over the bot's limits: {standin.rate_limited_answers}"
    # Each alert's headline is its name ("peers-0"); the templates put the place and action first.
    got = Counter((m.chat_id, next(x for x in m.text.split("\n") if x.startswith("peers-"))) for m in standin.messages)
    assert len(got) == 4 * len(CHATS) and max(got.values()) == 1, "each chat got each alert exactly once"
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0
        assert await conn.fetchval("SELECT count(*) FROM daemons") == 0, "both daemons left the table"
    finally:
        await conn.close()


async def test_a_restarted_daemon_forgets_its_dead_predecessor_at_once(database: str) -> None:
    # A process that existed and is gone: its pid is free (for now) on this host.
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO daemons (host, pid, channels)"
                " VALUES ($1, $2, '{telegram}'), ('elsewhere', $2, '{telegram}')",
                socket.gethostname(),
                proc.pid,
            )
        peers = Peers(pool, ["telegram"])
        await peers.start()
        try:
            # The dead local one is gone; the one on another host (unknowable from
            # here) still counts until its heartbeat goes stale.
            share = peers.share_for("telegram")
            assert (share.live, share.rank) == (2, 1)
            async with pool.acquire() as conn:
                hosts = sorted(r["host"] for r in await conn.fetch("SELECT host FROM daemons"))
            assert hosts == sorted([socket.gethostname(), "elsewhere"])
        finally:
            await peers.stop()
    finally:
        await pool.close()


async def test_a_channels_budget_is_split_only_among_the_daemons_serving_it(database: str) -> None:
    pool = await db.create_pool(database, min_size=1, max_size=3)
    both, telegram_only = Peers(pool, ["telegram", "email"]), Peers(pool, ["telegram"])
    try:
        await both.start()
        await telegram_only.start()
        await both.beat()
        telegram, email = both.share_for("telegram"), both.share_for("email")
        assert (telegram.live, telegram.rank) == (2, 0)
        assert (email.live, email.rank) == (1, 0), "the Telegram-only daemon takes nothing of email's budget"
        assert telegram_only.share_for("telegram").rank == 1
        assert telegram_only.share_for("email").live == 1, "a channel a daemon does not serve is not shared"
    finally:
        await telegram_only.stop()
        await both.stop()
        await pool.close()
