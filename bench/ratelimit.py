"""Bench: staying just under Telegram's limits.

The real daemon (:class:`dispatcher.app.Service`, Telegram channel with its default
30 msg/s and 1 s per chat) sends 3,000 messages (100 chats × 30 alerts) to a
:class:`~dispatcher.standins.telegram_api.TelegramStandIn` that enforces
``global_rate=30`` and ``per_chat_interval=1.0`` itself, answering 429 like
Telegram's flood control. Goal: ≥ 28 msg/s and no 429 in steady state (after
the first 5 s).

The stand-in runs in its own process (``python -m
dispatcher.standins.telegram_api``), like the real provider: sharing the
daemon's event loop, its arrival timestamps would include the daemon's
scheduling delays and bunch up, so that it counted 31 arrivals in one second
that the daemon had not sent in one second. The bench reads what the stand-in
received from its ``/_standin/stats`` endpoint; all times come from the
stand-in's own monotonic clock and only their differences are used.

Run: ``.venv/bin/python bench/ratelimit.py [--chats N] [--alerts N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from _common import (
    StandinLog,
    add_subscriptions,
    make_alert,
    running_service,
    scratch_database,
    table,
    telegram_standin_process,
)

from dispatcher.pipeline import Pipeline
from dispatcher.store import db

GLOBAL_RATE = 30
PER_CHAT_INTERVAL = 1.0
STEADY_AFTER = 5.0


async def main() -> None:
    ap = argparse.ArgumentParser(description="Telegram rate-limit bench")
    ap.add_argument("--chats", type=int, default=100)
    ap.add_argument("--alerts", type=int, default=30)
    args = ap.parse_args()
    total = args.chats * args.alerts
    async with scratch_database("bench_ratelimit") as dsn:
        conn = await db.connect(dsn)
        try:
            await add_subscriptions(conn, "telegram", [str(800_000 + i) for i in range(args.chats)])
        finally:
            await conn.close()
        async with (
            telegram_standin_process(global_rate=GLOBAL_RATE, per_chat_interval=PER_CHAT_INTERVAL) as base_url,
            aiohttp.ClientSession() as session,
        ):
            received = StandinLog(session, base_url)
            toml = f'[channels.telegram]\nenabled = true\ntoken_env = "BENCH_TG"\nbase_url = "{base_url}"\n'
            async with running_service(dsn, toml, {"BENCH_TG": "42:BENCH"}) as service:
                assert service.pool is not None and service.pipeline is not None
                pipeline: Pipeline = service.pipeline
                started = time.monotonic()
                for n in range(args.alerts):
                    await pipeline.ingest(make_alert(f"rl-{n}", headline=f"rl-{n}"))
                deadline = started + total / 20 + 60
                await received.poll()
                while len(received.times) < total and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    await received.poll()
                elapsed = time.monotonic() - started
            await received.poll()  # anything accepted while the daemon stopped
    stats = received.last
    times = sorted(received.times)
    limited_at = sorted(float(r["at"]) for r in stats["rate_limited_answers"])
    starts = times[:1] + limited_at[:1]
    origin = min(starts) if starts else 0.0
    first, last = (times[0], times[-1]) if times else (0.0, 0.0)
    rate = (len(times) - 1) / (last - first) if len(times) > 1 and last > first else 0.0
    steady = [t for t in times if t >= origin + STEADY_AFTER]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    limited_steady = [t for t in limited_at if t >= origin + STEADY_AFTER]
    worst_window = 0
    j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 1.0:
            j += 1
        worst_window = max(worst_window, i - j + 1)
    print()
    print(
        table(
            ["measure", "value", "goal", "ok"],
            [
                ["messages accepted", len(times), f"{total:,}", len(times) == total],
                ["rate, first to last accepted (msg/s)", rate, ">= 28", rate >= 28],
                ["rate after the first 5 s (msg/s)", steady_rate, ">= 28", steady_rate >= 28],
                ["429 answers (whole run)", len(limited_at), "0", not limited_at],
                ["429 answers after the first 5 s", len(limited_steady), "0", not limited_steady],
                ["most accepted in any 1 s window", worst_window, "<= 30", worst_window <= 30],
                ["wall time (s)", elapsed, "", ""],
            ],
        )
    )
    if limited_at:
        print()
        print("429 answers (seconds after the first accepted message or 429, chat, limit):")
        for r in stats["rate_limited_answers"]:
            print(f"  {float(r['at']) - origin:8.3f}  {r['chat_id']}  {r['limit']}")


if __name__ == "__main__":
    asyncio.run(main())
