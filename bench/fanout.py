"""Bench: 5,000 webhook deliveries to one local aiohttp server, three senders side by side.

1. a bare aiohttp client: 5,000 POSTs of the daemon's own JSON document for the
   alert (the same bytes; without the signature and idempotency headers) with
   ``asyncio.gather``, in a process of its
   own (after 500 warm-up requests) with aiohttp's default 100-connection pool and
   again 32 at a time, and 32 at a time in the bench's own process (which also hosts
   the idle daemon). The fastest of these by median round is the ceiling.
2. Apprise (https://github.com/caronc/apprise): one ``Apprise`` object with 5,000
   ``json://`` URLs, ``notify()`` once with the daemon's rendered text. Not a project dependency: install it into the
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

The bare clients and the daemon take turns, round after round (a shared VM's speed
drifts by tens of per cent within a minute); each reports its best and median round.

Afterwards, what the daemon's own ``/metrics`` says of the same rounds (its
ingest-to-first and ingest-to-last delivery histograms, one observation per alert, from
the database's timestamps) and a ``dispatcher reconcile`` of every delivery recorded.

Run: ``.venv/bin/python bench/fanout.py [--n N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from _common import add_subscriptions, make_alert, running_service, scratch_database, table

from channels.base import ChannelContext
from channels.templates import Templates
from channels.webhook import WebhookChannel, WebhookConfig
from dispatcher.app import Service
from dispatcher.model import Message
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


# A shared signing secret must be at least 32 bytes ([channels.webhook] secret).
BENCH_SECRET = "whsec-bench-secret-0123456789abcdef"


def bench_message() -> tuple[Message, bytes]:
    """The message the daemon's webhook channel renders for the bench alert, and its JSON body."""
    channel = WebhookChannel(
        WebhookConfig(url="http://127.0.0.1/default", secret=BENCH_SECRET), ChannelContext(templates=Templates.load())
    )
    message = channel.render(make_alert("fanout-bench"), "ja")
    return message, channel.body(message)


def payload() -> bytes:
    """What the bare clients post: the very JSON document the daemon posts (about 700 bytes)."""
    return bench_message()[1]


# Requests the bare client sends before it starts the clock (the daemon is warm too).
BARE_WARM_UP = 500
BARE_CLIENT = r"""
import asyncio, sys, time, aiohttp
base, n, limit, body = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.stdin.buffer.read()
WARM_UP = int(sys.argv[4])
async def main():
    sem = asyncio.Semaphore(limit or n)
    async with aiohttp.ClientSession() as session:
        async def post(i):
            async with sem, session.post(f"{base}/r/{i}", data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
        await asyncio.gather(*(post(i) for i in range(WARM_UP)))  # connections and code paths warm
        t0 = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(n)))
        print(time.perf_counter() - t0, flush=True)
asyncio.run(main())
"""


async def bare_here(receiver: Receiver, control: aiohttp.ClientSession, n: int, limit: int) -> float:
    """The same bare client in the bench's own process (which also hosts the idle daemon)."""
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


async def bare(receiver: Receiver, control: aiohttp.ClientSession, n: int, limit: int) -> float:
    """A bare aiohttp client in a process of its own (not sharing the daemon's heap and loop)."""
    start_count = await receiver.count(control)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BARE_CLIENT,
        receiver.base,
        str(n),
        str(limit),
        str(BARE_WARM_UP),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(payload())
    if proc.returncode != 0:
        raise RuntimeError(f"bare client failed with exit code {proc.returncode}")
    assert await receiver.count(control) == start_count + BARE_WARM_UP + n
    return float(out.decode())


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
    message, _body = bench_message()
    ok = await asyncio.to_thread(ap.notify, body=message.text, title=message.subject or "大雨警報")
    elapsed = time.perf_counter() - t0
    got = await receiver.count(control) - start_count
    if not ok or got != n:
        print(f"note: Apprise reported ok={ok}, receiver got {got} of {n}")
    return elapsed


class Daemon:
    """The running daemon with ``n`` webhook subscriptions; one alert per :meth:`round`."""

    def __init__(self, receiver: Receiver, control: aiohttp.ClientSession, n: int) -> None:
        self.receiver, self.control, self.n = receiver, control, n
        self.rounds = 0
        self._stack = contextlib.AsyncExitStack()
        self.pipeline: Pipeline | None = None
        self.service: Service | None = None

    async def __aenter__(self) -> Daemon:
        dsn = await self._stack.enter_async_context(scratch_database("bench_fanout"))
        conn = await db.connect(dsn)
        try:
            await add_subscriptions(conn, "webhook", [f"{self.receiver.base}/r/{i}" for i in range(self.n)])
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        toml = (
            f'[channels.webhook]\nenabled = true\nurl = "{self.receiver.base}/default"\nsecret_env = "BENCH_SECRET"\n'
            "rate_per_second = 100000.0\n"
        )
        self.service = await self._stack.enter_async_context(running_service(dsn, toml, {"BENCH_SECRET": BENCH_SECRET}))
        assert self.service.pool is not None
        self.pipeline = Pipeline(self.service.pool, targeter=CodeTargeter(), channels=["webhook"])
        await asyncio.sleep(0.5)  # LISTEN connection up
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def round(self) -> tuple[float, float]:
        """(seconds from ingest to the n-th request received, seconds until all recorded)."""
        assert self.pipeline is not None and self.service is not None and self.service.pool is not None
        start_count = await self.receiver.count(self.control)
        t0 = time.perf_counter()
        result = await self.pipeline.ingest(make_alert(f"fanout-{self.rounds}"))
        await self.receiver.wait(self.control, start_count + self.n)
        elapsed = time.perf_counter() - t0
        # Every delivery recorded too (the daemon's work ends with the commit).
        async with self.service.pool.acquire() as c:
            for _ in range(500):
                if not await c.fetchval("SELECT count(*) FROM deliveries WHERE state <> 'delivered'"):
                    break
                await asyncio.sleep(0.01)
        recorded = time.perf_counter() - t0
        assert result.deliveries == self.n, result
        self.rounds += 1
        return elapsed, recorded


async def main() -> None:
    ap = argparse.ArgumentParser(description="webhook fan-out: daemon vs Apprise vs bare aiohttp")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7, help="rounds of (every bare client, the daemon)")
    args = ap.parse_args()
    n = args.n
    receiver = Receiver()
    await receiver.start()
    variants: dict[str, tuple[Callable[[Receiver, aiohttp.ClientSession, int, int], Awaitable[float]], int]] = {
        "bare aiohttp, own process, gather all": (bare, 0),
        "bare aiohttp, own process, 32 at a time": (bare, 32),
        "bare aiohttp, bench process, 32 at a time": (bare_here, 32),
    }
    bare_times: dict[str, list[float]] = {name: [] for name in variants}
    daemon: list[tuple[float, float]] = []
    observed: list[list[object]] = []
    truth = ""
    try:
        async with aiohttp.ClientSession() as control, Daemon(receiver, control, n) as d:
            # Interleaved, so that all of them see the same machine (a shared VM's
            # speed drifts by tens of per cent within a minute).
            for _ in range(args.rounds):
                for name, (fn, limit) in variants.items():
                    bare_times[name].append(await fn(receiver, control, n, limit))
                daemon.append(await d.round())
            t_apprise = await with_apprise(receiver, control, n)
            observed, truth = await from_the_daemon(d, args.rounds)
    finally:
        await receiver.stop()
    med = statistics.median
    rows: list[list[object]] = [[name, min(t), n / min(t), med(t)] for name, t in bare_times.items()]
    if t_apprise is None:
        rows.append(["Apprise (pip install apprise to compare)", "missing", "", ""])
    else:
        rows.append(["Apprise json:// (one run)", t_apprise, n / t_apprise, ""])
    daemon_times = [e for e, _r in daemon]
    t_daemon, t_recorded = min(daemon)
    rows.append(["this daemon: ingest → last request received", t_daemon, n / t_daemon, med(daemon_times)])
    rows.append(["this daemon: ingest → every delivery recorded", t_recorded, n / t_recorded, ""])
    print()
    print(table(["sender", f"best of {args.rounds} (s)", "deliveries/s", "median (s)"], rows))
    # The ceiling is the fastest bare variant (by median round), compared best round
    # against best round (five samples each: the best of all fifteen bare rounds
    # would be biased low by the sample count alone) and median against median.
    fastest = min(bare_times, key=lambda name: med(bare_times[name]))
    vs_bare = min(bare_times[fastest]) / t_daemon
    vs_bare_median = med(bare_times[fastest]) / med(daemon_times)
    ratio_rows: list[list[object]] = [
        [f"daemon / {fastest} (best rounds)", f"{vs_bare:.0%}", ">= 60%", vs_bare >= 0.6],
        [f"daemon / {fastest} (medians)", f"{vs_bare_median:.0%}", ">= 60%", vs_bare_median >= 0.6],
    ]
    if t_apprise is not None:
        ratio_rows.append(["daemon / Apprise", f"{t_apprise / t_daemon:.1f}×", ">= 5×", t_apprise / t_daemon >= 5])
    else:
        ratio_rows.append(["daemon / Apprise", "Apprise missing", ">= 5×", ""])
    print()
    print(table(["throughput ratio", "value", "goal", "ok"], ratio_rows))
    print()
    print(table(["the daemon's /metrics (webhook)", "alerts", "mean (s)", "max (s)", "buckets (s: alerts)"], observed))
    print()
    print("dispatcher reconcile (every delivery of the run):")
    print(truth)


async def from_the_daemon(d: Daemon, rounds: int) -> tuple[list[list[object]], str]:
    """The latency histograms of the daemon's /metrics once every round settled, and a reconciliation."""
    from prometheus_client.parser import text_string_to_metric_families

    from dispatcher.reconcile import format_report, reconcile_with

    assert d.service is not None and d.service.metrics is not None and d.service.pool is not None
    metrics = d.service.metrics
    name = "dispatcher_ingest_to_last_delivery_seconds"
    rows: list[list[object]] = []
    for _ in range(100):  # each alert settles within a second or two of its last delivery
        samples = {
            (s.name, s.labels.get("le", "")): s.value
            for f in text_string_to_metric_families(metrics.render().decode())
            for s in f.samples
            if s.labels.get("channel") == "webhook"
        }
        if samples.get((f"{name}_count", ""), 0) >= rounds:
            break
        await asyncio.sleep(0.1)
    async with d.service.pool.acquire() as conn:
        worst = await conn.fetch(
            "SELECT extract(epoch FROM first_delivered_at - received_at)::float8 AS first_s,"
            " extract(epoch FROM last_delivered_at - received_at)::float8 AS last_s FROM delivery_latency"
        )
        report = await reconcile_with(d.service.settings, conn, since=datetime.now(UTC) - timedelta(hours=1))
    for label, metric, column in (
        ("ingest → first delivery", "dispatcher_ingest_to_first_delivery_seconds", "first_s"),
        ("ingest → last delivery", name, "last_s"),
    ):
        count = samples.get((f"{metric}_count", ""), 0)
        total = samples.get((f"{metric}_sum", ""), 0.0)
        buckets, before = [], 0.0
        for (_sample, le), value in sorted(
            ((k, v) for k, v in samples.items() if k[0] == f"{metric}_bucket"), key=lambda kv: float(kv[0][1])
        ):
            if value > before:
                buckets.append(f"≤{le}: {value - before:.0f}")
            before = value
        rows.append(
            [
                label,
                int(count),
                total / count if count else "",
                max((r[column] for r in worst), default=""),
                ", ".join(buckets),
            ]
        )
    return rows, format_report(report)


if __name__ == "__main__":
    asyncio.run(main())
