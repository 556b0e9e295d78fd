"""Fault injection: the real daemon killed with SIGKILL at random moments, restarted each time.

The daemon runs as a subprocess (``python -m dispatcher --config FILE run``) against two
local providers in this process: a Telegram Bot API stand-in (one message per
subscriber) and a partner webhook receiver (one signed POST per alert). Work is queued
from here through the real :class:`~dispatcher.pipeline.Pipeline` before each start.
Once the daemon has begun sending, it is killed after a random delay, so kills land
while claiming, sending and recording. ``delivery.lease_seconds`` is 2 s, so what a
killed process left "sending" comes back through lease expiry.

At the end, the providers' own logs are checked against what was queued: nothing may
be lost, and every duplicate must be one the kill explains: an accepted message whose
delivery was requeued by lease expiry (the daemon died between the provider's
acceptance and the commit). The duplicate rate is reported. ``bench/crash.py`` runs
the same harness with 1,000 kill points.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from dispatcher.model import Alert, Priority
from dispatcher.pipeline import CodeTargeter, Pipeline
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store import db
from tests.samples import add_subscribers, make_alert

SECRET_ENV = "CRASH_WEBHOOK_SECRET"
TOKEN_ENV = "CRASH_TG_TOKEN"
REPO = Path(__file__).resolve().parents[2]
IDENT = re.compile(r"crash-\d{5}")


def crash_alert(n: int) -> Alert:
    return make_alert(
        f"crash-{n:05d}",
        sender="crash-test",
        sent=datetime.now(UTC),
        headline=f"crash-{n:05d}",
        source="crash-test",
        priority=Priority.HIGH,
    )


@dataclass
class WebhookLog:
    """Partner endpoint: accepts everything, logs the alert identifier of each POST."""

    received: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            self.received.append(str(body["identifier"]))
            self.keys.append(request.headers.get("Idempotency-Key", ""))
        return web.Response(text="ok")


@dataclass
class CrashReport:
    kills: int
    alerts: int
    expected: int
    received: int
    duplicates: int
    explained: bool
    lost: int
    unfinished: int
    lease_requeues: int
    # Webhook duplicates that repeated the first attempt's Idempotency-Key (a receiver can drop them).
    webhook_duplicates: int
    webhook_same_key: int
    seconds: float
    problems: list[str]

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.expected if self.expected else 0.0

    def lines(self) -> list[str]:
        return [
            f"kill points (SIGKILL)       {self.kills}",
            f"alerts queued               {self.alerts}",
            f"deliveries expected         {self.expected}",
            f"provider acceptances        {self.received}",
            f"lost                        {self.lost} (of which still queued at the end: {self.unfinished})",
            f"duplicates                  {self.duplicates}",
            f"duplicate rate              {self.duplicate_rate:.4%} of deliveries, "
            f"{self.duplicates / self.kills if self.kills else 0:.1f} per kill",
            f"webhook duplicates          {self.webhook_duplicates} ({self.webhook_same_key} with the same "
            "Idempotency-Key)",
            f"lease-expiry requeues       {self.lease_requeues}",
            f"every duplicate explained   {'yes' if self.explained else 'NO'}",
            f"wall time                   {self.seconds:.1f} s",
        ]


class CrashRun:
    """Runs the daemon, kills it ``kills`` times at random moments, then lets it finish."""

    def __init__(
        self, dsn: str, workdir: Path, *, kills: int, chats: int = 40, alerts_per_cycle: int = 2, seed: int = 0
    ) -> None:
        self.dsn = dsn
        self.workdir = workdir
        self.kills = kills
        self.chats = [str(600_000 + i) for i in range(chats)]
        self.alerts_per_cycle = alerts_per_cycle
        self.rng = random.Random(seed)
        self.telegram = TelegramStandIn()
        self.webhook = WebhookLog()
        self._runner: web.AppRunner | None = None
        self.webhook_url = ""
        self.alerts = 0
        self.max_kill_delay = 0.4

    def config(self) -> Path:
        path = self.workdir / "crash.toml"
        path.write_text(
            f"""
[service]
state_dir = "{self.workdir}"
log_level = "WARNING"
[database]
url = "{self.dsn}"
[web]
enabled = false
[jma]
enabled = false
[delivery]
lease_seconds = 2.0
poll_interval = 0.5
shutdown_grace = 2.0
[channels.telegram]
enabled = true
token_env = "{TOKEN_ENV}"
base_url = "{self.telegram.base_url}"
rate_per_second = 400.0
per_recipient_interval = 0.001
[channels.webhook]
enabled = true
url = "{self.webhook_url}"
secret_env = "{SECRET_ENV}"
""",
            encoding="utf-8",
        )
        return path

    async def _start_providers(self) -> None:
        # A killed client leaves requests half-read: expected here, not worth a traceback each.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        await self.telegram.start()
        app = web.Application()
        app.router.add_route("*", "/hook", self.webhook.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.webhook_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def _stop_providers(self) -> None:
        await self.telegram.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _spawn(self, config: Path) -> asyncio.subprocess.Process:
        env = {**os.environ, TOKEN_ENV: "42:CRASH", SECRET_ENV: "whsec-crash-test-secret-0123456789"}
        env.pop("DATABASE_URL", None)
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher",
            "--config",
            str(config),
            "run",
            env=env,
            cwd=str(REPO),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    def _accepted(self) -> int:
        return len(self.telegram.messages) + len(self.webhook.received)

    async def _pending(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending')"))

    async def run(self, *, progress: bool = False) -> CrashReport:
        started = time.monotonic()
        await self._start_providers()
        pool = await db.create_pool(self.dsn, min_size=1, max_size=2)
        try:
            conn0 = await db.connect(self.dsn)
            try:
                await db.migrate(conn0)
            finally:
                await conn0.close()
            await add_subscribers(self.dsn, "telegram", self.chats)
            pipeline = Pipeline(pool, targeter=CodeTargeter(), channels=["telegram"], broadcast_channels=["webhook"])
            config = self.config()
            for cycle in range(self.kills):
                for _ in range(self.alerts_per_cycle):
                    await pipeline.ingest(crash_alert(self.alerts))
                    self.alerts += 1
                before = self._accepted()
                proc = await self._spawn(config)
                try:
                    # Kill while it works: after its first acceptance this cycle, at a random moment.
                    deadline = time.monotonic() + 15.0
                    # Polling another process's effect on a provider log; no event to wait on.
                    while self._accepted() == before and time.monotonic() < deadline and proc.returncode is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(self.rng.uniform(0.0, self.max_kill_delay))
                finally:
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGKILL)
                    await proc.wait()
                if progress and (cycle + 1) % 50 == 0:
                    print(f"  {cycle + 1} kills, {self._accepted()} acceptances", flush=True)
            # The last start is not killed: it must finish everything, including expired leases.
            proc = await self._spawn(config)
            try:
                async with pool.acquire() as conn:
                    deadline = time.monotonic() + 60.0 + await self._pending(conn) / 50
                    while await self._pending(conn) and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                await asyncio.sleep(0.3)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            async with pool.acquire() as conn:
                return await self._report(conn, time.monotonic() - started)
        finally:
            await pool.close()
            await self._stop_providers()

    async def _report(self, conn: asyncpg.Connection, seconds: float) -> CrashReport:
        problems: list[str] = []
        identifiers = [f"crash-{n:05d}" for n in range(self.alerts)]
        got: Counter[tuple[str, str]] = Counter()
        for m in self.telegram.messages:
            found = IDENT.search(m.text)
            if found is None:
                problems.append(f"unrecognised telegram text: {m.text[:60]!r}")
                continue
            got[("telegram", m.chat_id + "|" + found.group(0))] += 1
        for ident in self.webhook.received:
            got[("webhook", "*|" + ident)] += 1
        expected = {("telegram", f"{chat}|{ident}") for chat in self.chats for ident in identifiers}
        expected |= {("webhook", f"*|{ident}") for ident in identifiers}
        lost = sorted(expected - set(got))
        unexpected = sorted(set(got) - expected)
        if lost:
            problems.append(f"{len(lost)} deliveries lost, e.g. {lost[:3]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected deliveries, e.g. {unexpected[:3]}")
        rows = await conn.fetch(
            """
            SELECT d.channel, d.address, a.identifier, d.state::text AS state,
                   (SELECT count(*) FROM delivery_events e
                    WHERE e.delivery_id = d.id AND e.state = 'queued' AND e.detail LIKE 'lease expired%') AS expiries
            FROM deliveries d JOIN alerts a ON a.id = d.alert_id
            """
        )
        expiries: dict[tuple[str, str], int] = {}
        unfinished = 0
        for r in rows:
            expiries[(r["channel"], f"{r['address']}|{r['identifier']}")] = int(r["expiries"])
            if r["state"] != "delivered":
                unfinished += 1
                problems.append(f"delivery {r['channel']} {r['address']} {r['identifier']} left {r['state']}")
        duplicates = 0
        explained = True
        for key, n in got.items():
            if n > 1:
                duplicates += n - 1
                if n - 1 > expiries.get(key, 0):
                    explained = False
                    problems.append(f"{key}: {n} acceptances but {expiries.get(key, 0)} lease expiries")
        hook = Counter(self.webhook.received)
        keys = Counter(zip(self.webhook.received, self.webhook.keys, strict=True))
        return CrashReport(
            kills=self.kills,
            alerts=self.alerts,
            expected=len(expected),
            received=sum(got.values()),
            duplicates=duplicates,
            explained=explained,
            lost=len(lost),
            unfinished=unfinished,
            lease_requeues=sum(expiries.values()),
            webhook_duplicates=sum(n - 1 for n in hook.values()),
            webhook_same_key=sum(n - 1 for n in keys.values()),
            seconds=seconds,
            problems=problems,
        )


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_nothing(
    database: str, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    run = CrashRun(database, tmp_path, kills=20, seed=20261129)
    report = await run.run()
    print("\n" + "\n".join(report.lines()))
    record_property("duplicate_rate", f"{report.duplicate_rate:.6f}")
    record_property("duplicates", report.duplicates)
    assert report.kills >= 20
    assert report.lost == 0, report.problems
    assert report.explained, report.problems
    assert not report.problems, report.problems
    assert report.seconds < 60.0
