"""Bench: one alert to many LINE residents, by multicast of 500.

The real daemon (:class:`dispatcher.app.Service`, the LINE channel with its defaults:
500 recipients a request, 150 requests a second) sends one alert to ``--residents``
(20,000) LINE users through the LINE stand-in, run in its own process like the real
provider (``python -m dispatcher.standins.line_api``, enforcing LINE's 200 multicasts a
second). The bench reads what the stand-in received from ``/_standin/stats``: how many
requests, how many recipients each, when the first and the last arrived, 429s, and
whether anyone got it twice. Times include storing each batch's retry key before its
request (one UPDATE per 500 recipients). The stand-in's times are its ``time.monotonic()``,
the bench's clock too on Linux.

Run: ``.venv/bin/python bench/line_multicast.py [--residents N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from _common import ROOT, add_subscriptions, make_alert, running_service, scratch_database, table

from dispatcher.store import db


@contextlib.asynccontextmanager
async def line_standin_process() -> AsyncIterator[str]:
    """The LINE stand-in in a child process; yields its ``base_url``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher.standins.line_api", "--port", "0", stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        base_url = line.decode().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"stand-in did not start: {line!r}")
        yield base_url
    finally:
        proc.terminate()
        await proc.wait()


async def stats(session: aiohttp.ClientSession, base_url: str, since: int = 0) -> dict[str, Any]:
    async with session.get(f"{base_url}/_standin/stats", params={"since": str(since)}) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def main() -> None:
    ap = argparse.ArgumentParser(description="LINE multicast bench")
    ap.add_argument("--residents", type=int, default=20_000)
    args = ap.parse_args()
    n = args.residents
    async with scratch_database("bench_line") as dsn:
        conn = await db.connect(dsn)
        try:
            await add_subscriptions(conn, "line", [f"U{i:032x}" for i in range(n)])
        finally:
            await conn.close()
        async with line_standin_process() as base_url, aiohttp.ClientSession() as session:
            toml = (
                f'[channels.line]\nenabled = true\ntoken_env = "BENCH_LINE"\nbase_url = "{base_url}"\n'
                'plan = "municipal"\n'
            )
            async with running_service(dsn, toml, {"BENCH_LINE": "bench-token"}) as service:
                assert service.pipeline is not None
                started = time.monotonic()
                await service.pipeline.ingest(make_alert("line-bench"))
                handed_over = time.monotonic()
                deliveries: list[dict[str, Any]] = []
                while time.monotonic() < started + 120:
                    got = await stats(session, base_url, len(deliveries))
                    deliveries += got["deliveries"]
                    if len(deliveries) >= n:
                        break
                    await asyncio.sleep(0.05)
                seen = time.monotonic()
            got = await stats(session, base_url, len(deliveries))
            deliveries += got["deliveries"]
    per_request = Counter(d["request_id"] for d in deliveries)
    per_user = Counter(d["to"] for d in deliveries)
    times = sorted(float(d["at"]) for d in deliveries)
    first, last = (times[0], times[-1]) if times else (0.0, 0.0)
    print()
    print(
        table(
            ["measure", "value"],
            [
                ["residents", n],
                ["recipients reached", len(per_user)],
                ["anyone twice", sum(1 for c in per_user.values() if c > 1)],
                ["multicast requests", len(per_request)],
                ["most recipients in one request", max(per_request.values(), default=0)],
                ["429 answers", got["rate_limited"]],
                ["ingest (alert stored, deliveries written) (s)", handed_over - started],
                ["ingest → first recipient accepted (s)", first - started if times else None],
                ["first → last accepted (s)", last - first],
                ["ingest → last accepted, seen by the bench (s)", seen - started],
                ["recipients per second, first to last", (len(times) - 1) / (last - first) if last > first else None],
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
