"""Bench: a provider slower than the lease must cause no duplicate and lose nothing.

The real daemon (:class:`dispatcher.app.Service`, in this process) sends one alert to
100 Telegram chats through the Bot API stand-in, run in its own process and told to
answer every ``sendMessage`` only after ``--latency`` seconds (3 s), while
``[delivery] lease_seconds`` is ``--lease`` (2 s): every send outlives the lease it
was claimed under, and deliveries waiting for a send slot hold their claim longer
still. Only a worker that renews the leases of all its in-flight work, however busy,
and never requeues its own, sends each message once.

The stand-in counts what it accepted per chat (``/_standin/stats``); the database
says what was recorded. Printed: provider requests, messages accepted, deliveries
recorded as delivered, duplicates (acceptances beyond one per chat), lost (chats
that got nothing, or deliveries not delivered) and lease-expiry requeues. Goal: 0
duplicates and 0 lost. Exits 1 otherwise.

Run: ``.venv/bin/python bench/slow_provider.py [--recipients N] [--latency S] [--lease S] [--concurrency N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
from _common import add_subscriptions, make_alert, running_service, scratch_database, table, telegram_standin_process

from dispatcher.standins.telegram_api import STATS_PATH
from dispatcher.store import db


async def stand_in_stats(session: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    async with session.get(base_url.removesuffix("/bot") + STATS_PATH) as resp:
        resp.raise_for_status()
        stats: dict[str, Any] = await resp.json()
    return stats


async def main() -> None:
    ap = argparse.ArgumentParser(description="provider latency above the lease")
    ap.add_argument("--recipients", type=int, default=100)
    ap.add_argument("--latency", type=float, default=3.0, help="seconds the provider takes to answer")
    ap.add_argument("--lease", type=float, default=2.0, help="[delivery] lease_seconds")
    ap.add_argument("--concurrency", type=int, default=32, help="Telegram requests in flight at once")
    args = ap.parse_args()
    chats = [str(820_000 + i) for i in range(args.recipients)]
    async with scratch_database("bench_slow") as dsn:
        conn = await db.connect(dsn)
        try:
            await add_subscriptions(conn, "telegram", chats)
        finally:
            await conn.close()
        async with telegram_standin_process(delay=args.latency) as base_url, aiohttp.ClientSession() as session:
            toml = (
                f"[delivery]\nlease_seconds = {args.lease}\npoll_interval = 0.5\n"
                f'[channels.telegram]\nenabled = true\ntoken_env = "BENCH_TG"\nbase_url = "{base_url}"\n'
                f"concurrency = {args.concurrency}\n"
            )
            async with running_service(dsn, toml, {"BENCH_TG": "42:BENCH"}) as service:
                assert service.pool is not None and service.pipeline is not None
                started = time.monotonic()
                await service.pipeline.ingest(make_alert("slow-provider", headline="slow-provider"))
                deadline = started + 60 + args.recipients * args.latency / max(1, args.concurrency) * 3
                async with service.pool.acquire() as conn:
                    while time.monotonic() < deadline:
                        pending = await conn.fetchval(
                            "SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending')"
                        )
                        if not pending:
                            break
                        await asyncio.sleep(0.2)
                    elapsed = time.monotonic() - started
                    # A requeued lease would be sent again within a lease and a send: wait that long.
                    await asyncio.sleep(args.lease + args.latency + 1.0)
                    delivered = await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
                    requeues = await conn.fetchval(
                        "SELECT count(*) FROM delivery_events WHERE state = 'queued' AND detail LIKE 'lease expired%'"
                    )
            stats = await stand_in_stats(session, base_url)
    per_chat = Counter(str(m["chat_id"]) for m in stats["messages"])
    duplicates = sum(n - 1 for n in per_chat.values() if n > 1)
    lost = max(sum(1 for c in chats if per_chat[c] == 0), args.recipients - int(delivered))
    print()
    print(
        table(
            ["measure", "value", "goal", "ok"],
            [
                ["recipients", args.recipients, "", ""],
                ["provider latency (s)", args.latency, "", ""],
                ["lease_seconds", args.lease, "", ""],
                ["provider requests (with getMe at start)", int(stats["requests"]), "", ""],
                ["sent (messages the provider accepted)", int(stats["message_count"]), "", ""],
                ["delivered (database)", int(delivered), "", ""],
                ["duplicates", duplicates, "0", duplicates == 0],
                ["lost", lost, "0", lost == 0],
                ["lease-expiry requeues", int(requeues), "", ""],
                ["most messages to one chat", max(per_chat.values(), default=0), "1", ""],
                ["wall time to settle (s)", elapsed, "", ""],
            ],
        )
    )
    sys.exit(0 if duplicates == 0 and lost == 0 else 1)


if __name__ == "__main__":
    asyncio.run(main())
