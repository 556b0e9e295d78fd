"""Bench: 5,000 webhook deliveries to one local aiohttp server, three senders side by side.

1. bare aiohttp client: 5,000 POSTs with ``asyncio.gather`` (aiohttp's default
   100-connection pool), and again 32 at a time; the faster is the ceiling.
2. Apprise (https://github.com/caronc/apprise): one ``Apprise`` object with 5,000
   ``json://`` URLs, ``notify()`` once. Not a project dependency: install it into the
   venv (``.venv/bin/pip install apprise``) or the row says it is missing.
3. this daemon: the real :class:`dispatcher.app.Service` with only the webhook channel
   (``rate_per_second`` lifted: a partner endpoint has no provider quota), 5,000
   per-recipient webhook subscriptions whose address is the URL, one alert handed to a
   :class:`~dispatcher.pipeline.Pipeline` that treats ``webhook`` as a per-subscriber
   channel (the Service itself wires the webhook as a broadcast channel, one post per
   alert). Measured from ``ingest`` to the 5,000th request received; every delivery
   is durable, signed (HMAC) and recorded in PostgreSQL.

The receiver runs in its own process so it does not compete with the senders for
the event loop. Goal: the daemon ≥ 5× Apprise and ≥ 60 % of the bare client.

Run: ``.venv/bin/python bench/fanout.py [--n N] [--rounds R]`` (best of R runs for the bare client and the daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
from _common import add_subscriptions, make_alert, running_service, scratch_database, table

from dispatcher.pipeline import CodeTargeter, Pipeline
from dispatcher.store import db

RECEIVER = r"""
import asyncio, sys
from aiohttp import web
count = 0
waiters = []
async def hit(request):
    global count
    await request.read()
    count += 1
    for n, fut in list(waiters):
        if count >= n and not fut.done():
            fut.set_result(None)
    return web.Response(text="ok")
async def get_count(request):
    return web.Response(text=str(count))
async def wait(request):
    n = int(request.query["n"])
    if count < n:
        fut = asyncio.get_running_loop().create_future()
        waiters.append((n, fut))
        await asyncio.wait_for(fut, timeout=float(request.query.get("timeout", "120")))
    return web.Response(text=str(count))
async def main():
    app = web.Application()
    app.router.add_get("/count", get_count)
    app.router.add_get("/wait", wait)
    app.router.add_route("*", "/{tail:.*}", hit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class Receiver:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.base = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-c", RECEIVER, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        port = int((await self.proc.stdout.readline()).decode())
        self.base = f"http://127.0.0.1:{port}"

    async def count(self, session: aiohttp.ClientSession) -> int:
        async with session.get(f"{self.base}/count") as r:
            return int(await r.text())

    async def wait(self, session: aiohttp.ClientSession, n: int) -> int:
        async with session.get(f"{self.base}/wait", params={"n": str(n)}) as r:
            return int(await r.text())

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()


def payload() -> bytes:
    return json.dumps(
        {"identifier": "fanout-bench", "headline": "大雨警報", "text": "沼津市に大雨警報が発表されました。" * 4},
        ensure_ascii=False,
    ).encode()


async def bare(receiver: Receiver, control: aiohttp.ClientSession, n: int, limit: int | None = None) -> float:
    body = payload()
    start_count = await receiver.count(control)
    sem = asyncio.Semaphore(limit or n)
    async with aiohttp.ClientSession() as session:

        async def post(i: int) -> None:
            async with (
                sem,
                session.post(f"{receiver.base}/r/{i}", data=body, headers={"Content-Type": "application/json"}) as r,
            ):
                await r.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    assert await receiver.count(control) == start_count + n
    return elapsed


async def with_apprise(receiver: Receiver, control: aiohttp.ClientSession, n: int) -> float | None:
    try:
        import apprise
    except ImportError:
        return None
    port = receiver.base.rsplit(":", 1)[1]
    ap: Any = apprise.Apprise()
    for i in range(n):
        ap.add(f"json://127.0.0.1:{port}/r/{i}")
    start_count = await receiver.count(control)
    t0 = time.perf_counter()
    ok = await asyncio.to_thread(ap.notify, body="沼津市に大雨警報が発表されました。" * 4, title="大雨警報")
    elapsed = time.perf_counter() - t0
    got = await receiver.count(control) - start_count
    if not ok or got != n:
        print(f"note: Apprise reported ok={ok}, receiver got {got} of {n}")
    return elapsed


async def daemon(receiver: Receiver, control: aiohttp.ClientSession, n: int, rounds: int) -> tuple[float, int]:
    """Best of ``rounds`` alerts, each to the same ``n`` subscriptions, in one running daemon."""
    async with scratch_database("bench_fanout") as dsn:
        conn = await db.connect(dsn)
        try:
            await add_subscriptions(conn, "webhook", [f"{receiver.base}/r/{i}" for i in range(n)])
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        toml = (
            f'[channels.webhook]\nenabled = true\nurl = "{receiver.base}/default"\nsecret_env = "BENCH_SECRET"\n'
            "rate_per_second = 100000.0\n"
        )
        async with running_service(dsn, toml, {"BENCH_SECRET": "whsec-bench"}) as service:
            assert service.pool is not None
            pipeline = Pipeline(service.pool, targeter=CodeTargeter(), channels=["webhook"])
            await asyncio.sleep(0.5)  # LISTEN connection up
            best: tuple[float, int] | None = None
            for r in range(rounds):
                start_count = await receiver.count(control)
                t0 = time.perf_counter()
                result = await pipeline.ingest(make_alert(f"fanout-{r}"))
                await receiver.wait(control, start_count + n)
                elapsed = time.perf_counter() - t0
                # Every delivery recorded too (the daemon's work ends with the commit).
                async with service.pool.acquire() as c:
                    for _ in range(500):
                        left = await c.fetchval("SELECT count(*) FROM deliveries WHERE state <> 'delivered'")
                        if not left:
                            break
                        await asyncio.sleep(0.01)
                    recorded = time.perf_counter() - t0
                assert result.deliveries == n, result
                if best is None or elapsed < best[0]:
                    best = (elapsed, int(recorded * 1000))
    assert best is not None
    return best


async def main() -> None:
    ap = argparse.ArgumentParser(description="webhook fan-out: daemon vs Apprise vs bare aiohttp")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3, help="best of this many runs for the bare client and the daemon")
    args = ap.parse_args()
    receiver = Receiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as control:
            t_bare_all = min([await bare(receiver, control, args.n) for _ in range(args.rounds)])
            t_bare_32 = min([await bare(receiver, control, args.n, limit=32) for _ in range(args.rounds)])
            t_bare = min(t_bare_all, t_bare_32)
            t_apprise = await with_apprise(receiver, control, args.n)
            t_daemon, recorded_ms = await daemon(receiver, control, args.n, args.rounds)
    finally:
        await receiver.stop()
    n = args.n
    rows: list[list[object]] = [
        ["bare aiohttp client, gather all", t_bare_all, n / t_bare_all, "", "default 100-connection pool"],
        ["bare aiohttp client, 32 at a time", t_bare_32, n / t_bare_32, "", "the daemon's default concurrency"],
    ]
    if t_apprise is None:
        rows.append(["Apprise", "missing", "", "", "pip install apprise into .venv to compare"])
    else:
        rows.append(["Apprise json://", t_apprise, n / t_apprise, "", ""])
    rows.append(
        ["this daemon (ingest → last received)", t_daemon, n / t_daemon, "", f"all recorded at {recorded_ms} ms"]
    )
    print()
    print(table(["sender", "seconds", "deliveries/s", "goal", "ok / note"], rows))
    vs_bare = t_bare / t_daemon
    print()
    print(
        table(
            ["ratio", "value", "goal", "ok"],
            [
                ["daemon / best bare client (throughput)", f"{vs_bare:.0%}", ">= 60%", vs_bare >= 0.6],
                *(
                    [
                        [
                            "daemon / Apprise (throughput)",
                            f"{t_apprise / t_daemon:.1f}×",
                            ">= 5×",
                            t_apprise / t_daemon >= 5,
                        ]
                    ]
                    if t_apprise is not None
                    else [["daemon / Apprise", "Apprise missing", ">= 5×", ""]]
                ),
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
