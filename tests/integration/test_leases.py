"""Leases of live work: a provider slower than the lease causes no duplicate (issue 17, item 4).

Two workers of the Telegram channel (as two daemons run them: each with its own pool
and LISTEN connection) share one database and one slow Telegram Bot API stand-in:
every ``sendMessage`` is answered after longer than ``lease_seconds``, and each
worker holds more deliveries than it has send slots, so most claims wait for a slot
before their send even starts. Leases must be renewed whatever the worker's load,
and no worker may requeue live work, its own or the other's: every chat gets the
alert once, and no lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg

from dispatcher.delivery_config import DeliveryConfig
from dispatcher.pipeline import CodeTargeter, Pipeline
from dispatcher.settings import ChannelSettings
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store import db
from dispatcher.store.wakeups import Wakeups
from dispatcher.worker import OutboxWorker
from tests.integration.test_delivery import alert, states, telegram, telegram_standin, wait_until
from tests.samples import add_subscribers

CHATS = [str(830_000 + i) for i in range(48)]
LEASE = 1.0
LATENCY = 1.2
# Four send slots and up to twenty claimed deliveries per worker (rate 10/s: claims of ten),
# so both workers are full: twenty claimed, four sending, sixteen waiting for a slot.
SETTINGS = ChannelSettings("telegram", enabled=True, rate_per_second=10.0, concurrency=4)
DELIVERY = DeliveryConfig(poll_interval=0.5, backoff_base=0.2, backoff_max=1.0, lease_seconds=LEASE)


@contextlib.asynccontextmanager
async def daemon_worker(dsn: str, tg: TelegramStandIn) -> AsyncIterator[OutboxWorker]:
    """One Telegram worker with its own pool and LISTEN connection, as a daemon runs it."""
    pool = await db.create_pool(dsn, min_size=1, max_size=4)
    wakeups = Wakeups(dsn)
    wakeups.start()
    channel = telegram(tg)
    await channel.open()
    worker = OutboxWorker(channel, pool, delivery=DELIVERY, settings=SETTINGS, wakeup=wakeups.event("telegram"))
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=15)
        await channel.close()
        await wakeups.stop()
        await pool.close()


async def test_sends_slower_than_the_lease_are_neither_requeued_nor_sent_twice(database: str) -> None:
    await add_subscribers(database, "telegram", CHATS)
    async with telegram_standin() as tg:
        tg.delay = LATENCY
        async with daemon_worker(database, tg) as first, daemon_worker(database, tg) as second:
            pool = await db.create_pool(database, min_size=1, max_size=2)
            try:
                await Pipeline(pool, targeter=CodeTargeter(), channels=["telegram"]).ingest(alert("slow-1"))
            finally:
                await pool.close()

            async def settled() -> bool:
                s = await states(database)
                return s["delivered"] == len(CHATS)

            await wait_until(settled, 30, lambda: f"{len(tg.messages)} messages for {len(CHATS)} chats")
            # A requeued lease would be claimed and sent again within a lease and a send.
            await asyncio.sleep(LEASE + LATENCY + 0.5)
            assert first.sent + second.sent == len(CHATS)
    got = Counter(m.chat_id for m in tg.messages)
    assert got == Counter(dict.fromkeys(CHATS, 1)), f"duplicates: {[c for c, n in got.items() if n > 1]}"
    conn = await asyncpg.connect(database)
    try:
        expired = await conn.fetchval(
            "SELECT count(*) FROM delivery_events WHERE state = 'queued' AND detail LIKE 'lease expired%'"
        )
        rows = await conn.fetch("SELECT state::text AS state, attempts FROM deliveries")
    finally:
        await conn.close()
    assert expired == 0, "no live lease may expire"
    assert {(r["state"], r["attempts"]) for r in rows} == {("delivered", 1)}
