"""Shared helpers of the delivery benchmarks: a throwaway database, alerts, tables.

The server is ``$DATABASE_URL`` if set, else the local PostgreSQL at
``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers, else an
embedded pgserver in a temporary state directory
(:func:`dispatcher.store.db.resolve_dsn`). Every bench creates its own database
there, migrated, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from dispatcher import logs
from dispatcher.app import Service
from dispatcher.demo import with_database
from dispatcher.model import Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency
from dispatcher.settings import Settings, load
from dispatcher.standins.telegram_api import STATS_PATH
from dispatcher.store import db

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
NUMAZU = "2220300"


async def server_dsn() -> tuple[str, str]:
    """(DSN of a maintenance database, where it came from)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, "$DATABASE_URL"
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        conn = await asyncpg.connect(LOCAL_PG, timeout=2)
        await conn.close()
        return LOCAL_PG, "local PostgreSQL 127.0.0.1:5432"
    state = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    return await db.resolve_dsn(None, state, "postgres"), f"embedded pgserver in {state}"


@contextlib.asynccontextmanager
async def scratch_database(prefix: str = "bench") -> AsyncIterator[str]:
    """A fresh migrated database for one bench run; dropped afterwards."""
    base, origin = await server_dsn()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    dsn = with_database(base, name)
    print(f"database: {name} on {origin}", flush=True)
    try:
        mconn = await db.connect(dsn)
        try:
            await db.migrate(mconn)
        finally:
            await mconn.close()
        yield dsn
    finally:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


async def add_subscriptions(
    conn: asyncpg.Connection, channel: str, addresses: Sequence[str], areas: Sequence[str] = (NUMAZU,)
) -> None:
    """Bulk-create one subscriber and subscription per address (COPY-fast)."""
    n = len(addresses)
    ids = await conn.fetch(
        "INSERT INTO subscribers (display_name, language) SELECT 'bench', 'ja' FROM generate_series(1, $1)"
        " RETURNING id",
        n,
    )
    await conn.copy_records_to_table(
        "subscriptions",
        records=[(r["id"], channel, a, list(areas)) for r, a in zip(ids, addresses, strict=True)],
        columns=["subscriber_id", "channel", "address", "areas"],
    )


def make_alert(
    identifier: str, *, priority: Priority = Priority.HIGH, headline: str = "bench", codes: tuple[str, ...] = (NUMAZU,)
) -> Alert:
    """A hand-built public alert for 沼津市."""
    return Alert(
        identifier=identifier,
        sender="bench",
        sent=datetime.now(UTC),
        status=Status.ACTUAL,
        msg_type=MsgType.ALERT,
        event="大雨警報",
        severity=Severity.SEVERE,
        urgency=Urgency.IMMEDIATE,
        certainty=Certainty.LIKELY,
        headline=headline,
        source="bench",
        priority=priority,
        areas=(Area("沼津市", codes),),
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def load_settings(toml: str, env: dict[str, str] | None = None) -> Settings:
    """Settings from a TOML snippet laid over the defaults (``[jma]`` and ``[web]`` off)."""
    base = '[jma]\nenabled = false\n[web]\nenabled = false\n[service]\nlog_level = "WARNING"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, encoding="utf-8") as fh:
        fh.write(base + toml)
        path = fh.name
    try:
        return load(path, env={**os.environ, **(env or {})})
    finally:
        os.unlink(path)


@contextlib.asynccontextmanager
async def running_service(dsn: str, toml: str, env: dict[str, str] | None = None) -> AsyncIterator[Service]:
    """The real daemon (:class:`dispatcher.app.Service`) in this process, stopped afterwards."""
    settings = load_settings(toml, env)
    logs.setup(settings.service.log_level, settings.service.log_format)
    service = Service(settings, dsn=dsn)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def telegram_standin_process(
    *, global_rate: float | None = None, per_chat_interval: float | None = None, delay: float = 0.0
) -> AsyncIterator[str]:
    """The Telegram stand-in in a child process, like the real provider; yields its ``base_url``.

    In the bench's own process it would share the daemon's event loop, and its
    arrival times would include the daemon's scheduling delays.
    """
    limits = []
    if global_rate is not None:
        limits += ["--global-rate", str(global_rate)]
    if per_chat_interval is not None:
        limits += ["--per-chat-interval", str(per_chat_interval)]
    if delay:
        limits += ["--delay", str(delay)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.standins.telegram_api",
        *limits,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        base_url = line.decode().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"stand-in did not start (exit code {await proc.wait()}): {line!r}")
        print(f"telegram stand-in: pid {proc.pid}, {base_url}", flush=True)
        yield base_url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class StandinLog:
    """What a stand-in process received, collected incrementally over its stats endpoint.

    Its times come from the stand-in's ``time.monotonic()``, the same clock as the
    bench's on Linux (CLOCK_MONOTONIC is system-wide).
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.stats_url = base_url.removesuffix("/bot") + STATS_PATH
        self.times: list[float] = []
        self.last: dict[str, Any] = {}

    async def poll(self) -> None:
        async with self.session.get(self.stats_url, params={"since": str(len(self.times))}) as resp:
            resp.raise_for_status()
            stats = await resp.json()
        self.times.extend(float(m["at"]) for m in stats["messages"])
        self.last = stats
