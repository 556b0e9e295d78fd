"""Bench: 100 live dashboards (Server-Sent Events) while about 1,000 deliveries a second go out.

The real :class:`dispatcher.app.Service` with its web server and the webhook channel
(``rate_per_second = 1000``), ``--n`` per-recipient webhook subscriptions on a local
receiver in its own process (bench/fanout.py's), one alert per round. Three kinds of
round take turns, so that all of them see the same machine (a shared VM drifts):

1. ``no progress NOTIFY``: the delivery triggers as before migration 0012 (what the
   notifications cost the daemon, even with nobody watching);
2. ``no dashboards``: as shipped, nobody connected;
3. ``100 dashboards``: 100 ``GET /api/live`` streams of a logged-in viewer, held by a
   child process (as browsers are other processes), which records when each event
   arrived and the alert's delivered count in it.

Throughput is ``n`` over the time from ingest to every delivery recorded. The freshness
of the dashboards: a poller reads the alert's committed delivered count every 50 ms
(in every kind of round, so that they pay the same); for each count it read, the time
until *every* dashboard had shown at least that count. Goals: each count reaches the
dashboards within 1 s, and throughput with 100 dashboards within 10 % of without.

With ``--screenshot FILE`` an extra round (not counted) opens the dashboard in Chromium
(Playwright, ``/usr/bin/chromium``) beside the 100 dashboards and saves it half-way.

Run: ``.venv/bin/python bench/dashboard_load.py [--n N] [--rounds R] [--dashboards D] [--screenshot FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
from _common import add_subscriptions, make_alert, percentile, scratch_database, table
from fanout import BENCH_SECRET, Receiver

from dispatcher import logs
from dispatcher.app import Service
from dispatcher.console import accounts
from dispatcher.console.accounts import Actor, Role
from dispatcher.pipeline import CodeTargeter, Pipeline
from dispatcher.settings import load
from dispatcher.store import db
from dispatcher.web.live import LIVE

PASSWORD = "bench dashboards password"
PROGRESS_LINE = re.compile(r"\n    -- 0012:.*?WHERE p\.ids IS NOT NULL;", re.S)

WATCHERS = r"""
import asyncio, json, sys, time
import aiohttp
base, cookie, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
records = [[] for _ in range(n)]
ready = 0
async def watch(i, session, started):
    global ready
    async with session.get(base + "/api/live", timeout=aiohttp.ClientTimeout(total=None)) as resp:
        assert resp.status == 200, resp.status
        name, data = None, []
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line and data:
                at = time.monotonic()
                view = json.loads("\n".join(data))
                data = []
                if name == "snapshot":
                    ready += 1
                    if ready == n:
                        started.set()
                for a in view["alerts"]:
                    for ch, c in a.get("channels", {}).items():
                        records[i].append((at, a["id"], c["delivered"]))
async def main():
    started = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, cookies={"session": cookie}) as session:
        tasks = [asyncio.create_task(watch(i, session, started)) for i in range(n)]
        await asyncio.wait_for(started.wait(), 60)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(records), flush=True)
asyncio.run(main())
"""


class Watchers:
    """``n`` SSE dashboards in a child process."""

    def __init__(self, base: str, cookie: str, n: int) -> None:
        self.base, self.cookie, self.n = base, cookie, n
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Watchers:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WATCHERS,
            self.base,
            self.cookie,
            str(self.n),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**30,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 90)
        if line.strip() != b"ready":
            raise RuntimeError(f"dashboards did not connect: {line!r}")
        return self

    async def stop(self) -> list[list[tuple[float, int, int]]]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        out = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        await self.proc.wait()
        return [[(float(t), int(a), int(d)) for t, a, d in rec] for rec in json.loads(out)]

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def running_daemon(dsn: str, toml: str) -> Service:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, encoding="utf-8") as fh:
        fh.write(toml)
        path = fh.name
    try:
        settings = load(path, env={**os.environ, "BENCH_SECRET": BENCH_SECRET})
    finally:
        os.unlink(path)
    logs.setup(settings.service.log_level, settings.service.log_format)
    service = Service(settings, dsn=dsn)
    await service.start()
    return service


async def session_cookie(base: str) -> str:
    """Log in as the bench's viewer through the real form; the session cookie's value."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/login") as r:
            found = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
            assert found is not None
        form = {"username": "bench-viewer", "password": PASSWORD, "csrf_token": found.group(1), "next": "/"}
        async with http.post(f"{base}/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, r.status
            return r.cookies["session"].value


class Bench:
    def __init__(self, receiver: Receiver, n: int, dashboards: int) -> None:
        self.receiver, self.n, self.dashboards = receiver, n, dashboards
        self.rounds = 0
        self._stack = contextlib.AsyncExitStack()
        self.service: Service | None = None
        self.pipeline: Pipeline | None = None
        self.cookie = ""
        self.triggers: dict[str, str] = {}

    async def __aenter__(self) -> Bench:
        dsn = await self._stack.enter_async_context(scratch_database("bench_dashboards"))
        conn = await db.connect(dsn)
        try:
            await add_subscriptions(conn, "webhook", [f"{self.receiver.base}/r/{i}" for i in range(self.n)])
            await accounts.add_user(conn, Actor("bench", "cli", "bench"), "bench-viewer", Role.VIEWER, PASSWORD)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        schema = db.schema_sql()
        for name in ("deliveries_log_insert", "deliveries_log_update"):
            start = schema.index(f"CREATE FUNCTION {name}()")
            body = schema[start : schema.index("END $$;", start) + len("END $$;")]
            body = body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
            self.triggers[name] = body
        toml = (
            '[jma]\nenabled = false\n[service]\nlog_level = "WARNING"\n[web]\nport = 0\n'
            f'[channels.webhook]\nenabled = true\nurl = "{self.receiver.base}/default"\nsecret_env = "BENCH_SECRET"\n'
            "rate_per_second = 1000.0\n"
        )
        self.service = await running_daemon(dsn, toml)
        self._stack.push_async_callback(self.service.stop)
        assert self.service.pool is not None and self.service.web_url is not None
        self.pipeline = Pipeline(self.service.pool, targeter=CodeTargeter(), channels=["webhook"])
        self.cookie = await session_cookie(self.service.web_url)
        await asyncio.sleep(0.5)  # LISTEN connections up
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def progress_notify(self, on: bool) -> None:
        """The delivery triggers with (0012) or without the live dashboard's notification."""
        assert self.service is not None and self.service.pool is not None
        async with self.service.pool.acquire() as conn:
            for body in self.triggers.values():
                await conn.execute(body if on else PROGRESS_LINE.sub("", body))

    async def round(self, kind: str) -> dict[str, Any]:
        assert self.service is not None and self.service.pool is not None and self.pipeline is not None
        assert self.service.web_url is not None
        await self.progress_notify(kind != "no progress NOTIFY")
        watchers = Watchers(self.service.web_url, self.cookie, self.dashboards) if kind == "100 dashboards" else None
        async with contextlib.AsyncExitStack() as stack:
            if watchers is not None:
                await stack.enter_async_context(watchers)
            samples: list[tuple[float, int]] = []
            t0 = time.perf_counter()
            m0 = time.monotonic()
            result = await self.pipeline.ingest(make_alert(f"dash-{self.rounds}"))
            assert result.deliveries == self.n, result
            async with self.service.pool.acquire() as c:
                alert_id = int(await c.fetchval("SELECT max(id) FROM alerts"))
                while True:
                    at = time.monotonic()
                    done = int(
                        await c.fetchval(
                            "SELECT count(*) FROM deliveries WHERE alert_id = $1 AND state = 'delivered'", alert_id
                        )
                    )
                    samples.append((at, done))
                    if done >= self.n:
                        break
                    await asyncio.sleep(0.05)
            seconds = time.perf_counter() - t0
            records = None
            if watchers is not None:
                await asyncio.sleep(1.5)  # the last counts on their way
                records = await watchers.stop()
        self.rounds += 1
        out: dict[str, Any] = {"kind": kind, "seconds": seconds, "rate": self.n / seconds}
        if records is not None:
            out["lags"], out["events"] = freshness(samples, records, alert_id, m0)
        return out


def freshness(
    samples: list[tuple[float, int]], records: list[list[tuple[float, int, int]]], alert_id: int, since: float
) -> tuple[list[float], int]:
    """For each committed count read, the seconds until every dashboard showed at least it."""
    lags: list[float] = []
    events = 0
    mine = [[(t, d) for t, a, d in rec if a == alert_id and t >= since] for rec in records]
    for rec in mine:
        events += len(rec)
    for at, count in samples:
        if count == 0:
            continue
        worst = 0.0
        for rec in mine:
            shown = next((t for t, d in rec if d >= count), None)
            worst = max(worst, float("inf") if shown is None else max(0.0, shown - at))
        lags.append(worst)
    return lags, events


async def screenshot_round(b: Bench, path: str) -> str:
    """One more round with 100 dashboards and a real browser on ``/``, saved when half is delivered."""
    from playwright.async_api import async_playwright

    assert b.service is not None and b.service.web_url is not None and b.pipeline is not None
    assert b.service.pool is not None
    base = b.service.web_url
    async with async_playwright() as p, Watchers(base, b.cookie, b.dashboards):
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        await ctx.add_cookies([{"name": "session", "value": b.cookie, "url": base}])
        page = await ctx.new_page()
        await page.goto(f"{base}/")
        await page.wait_for_selector("body[data-live=on]")
        await b.pipeline.ingest(make_alert(f"dash-shot-{b.rounds}", headline="bench: 100 dashboards watching"))
        b.rounds += 1
        async with b.service.pool.acquire() as c:
            alert_id = int(await c.fetchval("SELECT max(id) FROM alerts"))
            while True:
                done = await c.fetchval(
                    "SELECT count(*) FROM deliveries WHERE alert_id = $1 AND state = 'delivered'", alert_id
                )
                if done >= b.n // 2:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.4)
        await page.screenshot(path=path, full_page=True)
        shown = await page.locator(f'tr[data-alert="{alert_id}"] .chead [data-k="delivered"]').inner_text()
        async with b.service.pool.acquire() as c:
            while True:  # the round's end, before the next one
                if not await c.fetchval("SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending')"):
                    break
                await asyncio.sleep(0.1)
        await browser.close()
    return f"{path} (the browser showed {shown} delivered when the database held {done:,})"


async def main() -> None:
    ap = argparse.ArgumentParser(description="100 SSE dashboards while 1,000 deliveries/s go out")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dashboards", type=int, default=100)
    ap.add_argument("--screenshot", help="also save the dashboard, half-way through an extra round, here (PNG)")
    args = ap.parse_args()
    receiver = Receiver()
    await receiver.start()
    kinds = ("no progress NOTIFY", "no dashboards", "100 dashboards")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    hub_stats = ""
    try:
        async with Bench(receiver, args.n, args.dashboards) as b:
            for _ in range(args.rounds):
                for kind in kinds:
                    results[kind].append(await b.round(kind))
                    print(f"  {kind}: {results[kind][-1]['rate']:.0f}/s", flush=True)
            if args.screenshot:
                print(f"  screenshot: {await screenshot_round(b, args.screenshot)}", flush=True)
            assert b.service is not None and b.service.runner is not None
            hub = b.service.runner.app[LIVE]
            hub_stats = f"{hub.notifications:,} notifications read in {hub.reads:,} count reads"
    finally:
        await receiver.stop()
    med = statistics.median
    rows: list[list[object]] = []
    for kind in kinds:
        rates = [r["rate"] for r in results[kind]]
        rows.append([kind, args.n, max(rates), med(rates), min(rates)])
    print()
    print(table(["round", "deliveries", "best /s", "median /s", "worst /s"], rows))
    lags = [lag for r in results["100 dashboards"] for lag in r["lags"]]
    events = sum(r["events"] for r in results["100 dashboards"])
    without = med([r["rate"] for r in results["no dashboards"]])
    with_d = med([r["rate"] for r in results["100 dashboards"]])
    bare = med([r["rate"] for r in results["no progress NOTIFY"]])
    print()
    print(
        table(
            ["measure", "value", "goal", "ok"],
            [
                [f"committed count → all {args.dashboards} dashboards, p50 (s)", percentile(lags, 50), "", ""],
                [f"committed count → all {args.dashboards} dashboards, p95 (s)", percentile(lags, 95), "", ""],
                [f"committed count → all {args.dashboards} dashboards, max (s)", max(lags), "<= 1 s", max(lags) <= 1.0],
                ["counts checked × dashboards", f"{len(lags):,} × {args.dashboards}", "", ""],
                ["SSE events received for the alert", f"{events:,}", "", ""],
                [
                    "throughput with / without dashboards (medians)",
                    f"{with_d / without:.1%}",
                    ">= 90%",
                    with_d / without >= 0.9,
                ],
                ["throughput with / without progress NOTIFY (medians)", f"{without / bare:.1%}", "", ""],
                ["the hub, over the whole run", hub_stats, "", ""],
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
