"""Bench: the public site under a loopback load, and how soon a stored alert is on disk.

1. Throughput. The real daemon (``dispatcher run``, its own process, a scratch database
   with ``--history`` public alerts) serves an alert's page (``/alerts/{id}``) and the
   city's Atom feed (``/feeds/atom``); side by side, in the same run, a bare aiohttp
   server in a process of its own serves the very same bytes from memory: the ceiling.
   One client in this process keeps ``--concurrency`` requests in flight for
   ``--requests`` requests per round; the targets take turns, round after round (a
   shared VM's speed drifts), and each reports its best and median round. Goal: the
   daemon ≥ 50 % of the ceiling.
2. Publication latency. An alert is stored through the pipeline (as a source would:
   one transaction, from this process); the time from the commit to its page existing
   in ``[publication] static_dir`` (the daemon was woken by ``NOTIFY publication``,
   rebuilt the lists, feeds and the alert's pages and renamed the files into place).
   Goal: under 1 s.

Run: ``.venv/bin/python bench/public_site.py [--requests N] [--rounds R] [--concurrency C] [--alerts K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import make_alert, percentile, scratch_database, table
from dispatcher.pipeline import Pipeline
from dispatcher.store import db
from dispatcher.targeting import default_targeter

CEILING = r"""
import sys
from aiohttp import web
bodies = {}
for arg in sys.argv[1:]:
    path, ctype, file = arg.split("|", 2)
    bodies[path] = (open(file, "rb").read(), ctype)
async def handle(request):
    body, ctype = bodies[request.path]
    return web.Response(body=body, headers={"Content-Type": ctype})
app = web.Application()
for path in bodies:
    app.router.add_get(path, handle)
port = int(__import__("os").environ["PORT"])
web.run_app(app, host="127.0.0.1", port=port, print=lambda *a: print("ready", flush=True), access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str], ready: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
            if not line and proc.returncode is not None:
                raise RuntimeError(f"{args[:3]} exited")
            if ready in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[:3]} never said {ready!r}")
        # Keep its pipe drained so it never blocks on a full stdout.
        drain = asyncio.create_task(proc.stdout.read())
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=15)
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(NameError):
            drain.cancel()


async def load(http: aiohttp.ClientSession, url: str, n: int, concurrency: int) -> float:
    """Requests per second for ``n`` GETs of ``url``, ``concurrency`` at a time (every answer read)."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with http.get(url) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: {r.status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=4000, help="requests per target per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--history", type=int, default=200, help="public alerts stored before the daemon starts")
    ap.add_argument("--alerts", type=int, default=20, help="alerts stored for the latency measurement")
    args = ap.parse_args()

    async with scratch_database("pubsite") as dsn:
        pool = await db.create_pool(dsn, min_size=1, max_size=4)
        pipeline = Pipeline(pool, targeter=default_targeter(), channels=[], broadcast_channels=[])
        first = None
        past = datetime.now(UTC) - timedelta(days=1)
        for i in range(args.history):
            # The archive: alerts of the past days, expired (what is in force is a few at most).
            old = replace(make_alert(f"history-{i}", headline=f"過去の情報 {i}"), sent=past, expires=past)
            result = await pipeline.ingest(old)
            first = first or result.public_id
        work = Path(tempfile.mkdtemp(prefix="bench-site-"))
        port = free_port()
        cfg = work / "dispatcher.toml"
        cfg.write_text(
            f'[service]\nstate_dir = "{work}"\npublic_url = "http://127.0.0.1:{port}"\nlog_level = "INFO"\n'
            f'[web]\nport = {port}\n[jma]\nenabled = false\n[publication]\nstatic_dir = "{work}/site"\n'
        )
        env = {**os.environ, "DATABASE_URL": dsn, "PYTHONUNBUFFERED": "1"}
        daemon_cmd = [sys.executable, "-m", "dispatcher", "run"]
        async with process(daemon_cmd, {**env, "DISPATCHER_CONFIG": str(cfg)}, "service started"):
            base = f"http://127.0.0.1:{port}"
            paths = {"alert page": f"/alerts/{first}", "Atom feed": "/feeds/atom"}
            files = []
            async with aiohttp.ClientSession() as http:
                for path in paths.values():
                    async with http.get(base + path) as r:
                        body, ctype = await r.read(), r.headers["Content-Type"]
                    f = work / (path.strip("/").replace("/", "_") + ".bin")
                    f.write_bytes(body)
                    files.append(f"{path}|{ctype}|{f}")
                ceiling_port = free_port()
                ceiling_cmd = [sys.executable, "-c", CEILING, *files]
                async with process(ceiling_cmd, {**env, "PORT": str(ceiling_port)}, "ready"):
                    ceiling = f"http://127.0.0.1:{ceiling_port}"
                    conn = aiohttp.TCPConnector(limit=args.concurrency)
                    async with aiohttp.ClientSession(connector=conn) as client:
                        results: dict[tuple[str, str], list[float]] = {}
                        for path in paths.values():  # warm-up
                            await load(client, base + path, 500, args.concurrency)
                            await load(client, ceiling + path, 500, args.concurrency)
                        for _ in range(args.rounds):
                            for name, path in paths.items():
                                for who, host in (("daemon", base), ("aiohttp from memory", ceiling)):
                                    rate = await load(client, host + path, args.requests, args.concurrency)
                                    results.setdefault((name, who), []).append(rate)
                    rows = []
                    for name in paths:
                        top = results[(name, "aiohttp from memory")]
                        for who in ("daemon", "aiohttp from memory"):
                            rates = results[(name, who)]
                            share = statistics.median(rates) / statistics.median(top)
                            rows.append((name, who, max(rates), statistics.median(rates), f"{share:.0%}",
                                         who != "daemon" or share >= 0.5))  # fmt: skip
                    print(
                        f"\nthroughput: {args.requests} requests a round, {args.concurrency} in flight,"
                        f" {args.rounds} rounds"
                    )
                    print(table(["page", "server", "best req/s", "median req/s", "of ceiling", "goal ≥ 50 %"], rows))

            # 2. stored → static files written
            latencies = []
            for i in range(args.alerts):
                result = await pipeline.ingest(make_alert(f"latency-{i}", headline=f"新しい情報 {i}"))
                stored = time.perf_counter()
                target = work / "site" / "alerts" / str(result.public_id) / "index.html"
                while not target.exists():
                    await asyncio.sleep(0.001)
                    if time.perf_counter() - stored > 10:
                        raise RuntimeError("static page never written")
                latencies.append(time.perf_counter() - stored)
                await asyncio.sleep(0.3)
            ms = [x * 1000 for x in latencies]
            print(f"\nstored → static page written ({args.alerts} alerts, {args.history} in the archive)")
            print(table(["p50 ms", "p90 ms", "max ms", "goal < 1000 ms"],
                        [(percentile(ms, 50), percentile(ms, 90), max(ms), max(ms) < 1000)]))  # fmt: skip
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
