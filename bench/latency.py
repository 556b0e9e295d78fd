"""Bench: from hand-over to the provider.

200 alerts are handed to the pipeline of the real daemon
(:class:`dispatcher.app.Service`, Telegram channel) one at a time, each for its own
area of 100 subscribers (the same chats one alert after another would measure
Telegram's 1 msg/s per chat instead), against a local :class:`~dispatcher.standins.telegram_api.TelegramStandIn`
in a process of its own, like the real provider (in the bench's process, its
handlers would wait for the daemon's event loop, and their arrival times with them).
For each alert: time from ``Pipeline.ingest`` being called to the first message
the provider accepts, and to the last (the stand-in's ``time.monotonic()``, the
bench's clock). The provider's rate limit is lifted
(``rate_per_second = 5000``) so that the engine's own latency is measured, not
Telegram's 30 msg/s. Goal: first-request p50 ≤ 50 ms, p99 ≤ 250 ms.

Run: ``.venv/bin/python bench/latency.py [--alerts N] [--recipients N]``.
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
    percentile,
    running_service,
    scratch_database,
    table,
    telegram_standin_process,
)

from dispatcher.store import db


async def main() -> None:
    ap = argparse.ArgumentParser(description="hand-over to provider latency")
    ap.add_argument("--alerts", type=int, default=200)
    ap.add_argument("--recipients", type=int, default=100)
    args = ap.parse_args()
    firsts: list[float] = []
    lasts: list[float] = []
    ingests: list[float] = []
    async with scratch_database("bench_latency") as dsn:
        conn = await db.connect(dsn)
        try:
            # Each alert concerns its own area with its own 100 residents: alerts to the same chats
            # one after another would measure Telegram's 1 msg/s per chat, not the engine.
            for n in range(args.alerts):
                chats = [str(1_000_000 + n * args.recipients + i) for i in range(args.recipients)]
                await add_subscriptions(conn, "telegram", chats, areas=[f"area-{n}"])
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        async with telegram_standin_process() as base_url, aiohttp.ClientSession() as session:
            received = StandinLog(session, base_url)
            toml = (
                f'[channels.telegram]\nenabled = true\ntoken_env = "BENCH_TG"\nbase_url = "{base_url}"\n'
                "rate_per_second = 5000.0\n"
            )
            async with running_service(dsn, toml, {"BENCH_TG": "42:BENCH"}) as service:
                assert service.pipeline is not None
                await asyncio.sleep(0.5)  # LISTEN connection up
                for n in range(args.alerts):
                    before = len(received.times)
                    handed = time.monotonic()
                    await service.pipeline.ingest(make_alert(f"lat-{n}", headline=f"lat-{n}", codes=(f"area-{n}",)))
                    ingests.append(time.monotonic() - handed)
                    deadline = handed + 30
                    while len(received.times) < before + args.recipients and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)  # the stand-in's own times are used, not when we look
                        await received.poll()
                    got = received.times[before:]
                    if len(got) < args.recipients:
                        print(f"alert {n}: only {len(got)} of {args.recipients} delivered in 30 s")
                    if got:
                        firsts.append(min(got) - handed)
                        lasts.append(max(got) - handed)
    ms = 1000.0
    print()
    print(f"{len(firsts)} alerts × {args.recipients} recipients, one alert at a time")
    print(
        table(
            ["measure (ms)", "p50", "p99", "max", "goal", "ok"],
            [
                [
                    "hand-over → first provider request",
                    percentile(firsts, 50) * ms,
                    percentile(firsts, 99) * ms,
                    max(firsts) * ms,
                    "p50 <= 50, p99 <= 250",
                    percentile(firsts, 50) <= 0.050 and percentile(firsts, 99) <= 0.250,
                ],
                [
                    "hand-over → last provider request",
                    percentile(lasts, 50) * ms,
                    percentile(lasts, 99) * ms,
                    max(lasts) * ms,
                    "",
                    "",
                ],
                [
                    "Pipeline.ingest itself",
                    percentile(ingests, 50) * ms,
                    percentile(ingests, 99) * ms,
                    max(ingests) * ms,
                    "",
                    "",
                ],
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
