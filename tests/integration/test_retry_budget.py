"""The retry budget is a time, not a count (issue 17, item 5).

E-mail through the real SMTP stand-in (aiosmtpd) on 127.0.0.1, driven by the real
:class:`~dispatcher.worker.OutboxWorker` against real PostgreSQL. While the relay is
down, a delivery keeps retrying with capped backoff until its alert expires (or
``[delivery] max_age`` for an alert without expiry); when the relay is back, it is
delivered. ``attempts`` counts real provider attempts: a lease that expired (a
worker that died) spends none, and the dead worker's late answer cannot overwrite
the outcome of the worker that claimed the delivery next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from channels.email import EmailChannel, EmailConfig
from dispatcher.delivery_config import DeliveryConfig
from dispatcher.pipeline import CodeTargeter, Pipeline
from dispatcher.settings import ChannelSettings
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.store import db, outbox
from dispatcher.store.wakeups import Wakeups
from dispatcher.worker import OutboxWorker
from tests.integration.test_delivery import context, wait_until
from tests.samples import add_subscribers, make_alert

# Backoff capped at 0.3 s: a budget of 8 attempts would be spent in about two seconds.
FAST = DeliveryConfig(poll_interval=0.3, backoff_base=0.1, backoff_max=0.3, lease_seconds=30.0)
RESIDENT = "resident@example.jp"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def email_worker(dsn: str, port: int, delivery: DeliveryConfig) -> AsyncIterator[Pipeline]:
    """The e-mail channel's worker, for the relay at 127.0.0.1:``port`` (up or not); yields a pipeline."""
    pool = await db.create_pool(dsn, min_size=1, max_size=4)
    wakeups = Wakeups(dsn)
    wakeups.start()
    channel = EmailChannel(EmailConfig(host="127.0.0.1", port=port, timeout=2.0), context())
    await channel.open()
    worker = OutboxWorker(
        channel, pool, delivery=delivery, settings=ChannelSettings("email", enabled=True), wakeup=wakeups.event("email")
    )
    task = asyncio.create_task(worker.run())
    try:
        yield Pipeline(pool, targeter=CodeTargeter(), channels=["email"])
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=15)
        await channel.close()
        await wakeups.stop()
        await pool.close()


async def deliveries(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT d.id, a.identifier, d.state::text AS state, d.attempts, d.claims, d.last_error"
            " FROM deliveries d JOIN alerts a ON a.id = d.alert_id ORDER BY d.id"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def test_email_retries_while_the_relay_is_down_and_is_delivered_when_it_returns(database: str) -> None:
    await add_subscribers(database, "email", [RESIDENT])
    port = free_port()  # the relay is down: nothing listens there yet
    relay = SmtpStandIn()
    try:
        async with email_worker(database, port, FAST) as pipeline:
            await pipeline.ingest(make_alert("relay-down", sent=datetime.now(UTC), headline="relay-down"))

            async def many_attempts() -> bool:
                rows = await deliveries(database)
                return bool(rows) and rows[0]["attempts"] >= 12

            await wait_until(many_attempts, 20, "12 attempts while the relay is down")
            assert (await deliveries(database))[0]["state"] in ("queued", "sending"), "still trying"
            await relay.start(port=port)

            async def recorded() -> bool:
                return (await deliveries(database))[0]["state"] == "delivered"

            await wait_until(recorded, 10, "delivered once the relay is back")
    finally:
        await relay.stop()
    [row] = await deliveries(database)
    assert row["attempts"] >= 13, "every real attempt is counted"
    assert [m.rcpt_tos for m in relay.messages] == [(RESIDENT,)]


async def test_a_retry_after_the_alerts_deadline_ends_the_delivery_with_the_reason(database: str) -> None:
    await add_subscribers(database, "email", [RESIDENT])
    now = datetime.now(UTC)
    # The relay stays down; alerts without expiry are retried for two seconds.
    async with email_worker(database, free_port(), dataclasses.replace(FAST, max_age=2.0)) as pipeline:
        await pipeline.ingest(make_alert("expiring", sent=now, expires=now + timedelta(seconds=2)))
        await pipeline.ingest(make_alert("no-expiry", sent=now))

        async def ended() -> bool:
            rows = await deliveries(database)
            return len(rows) == 2 and all(r["state"] not in ("queued", "sending") for r in rows)

        await wait_until(ended, 15, "both deliveries to end")
    by_alert = {r["identifier"]: r for r in await deliveries(database)}
    expiring, aged = by_alert["expiring"], by_alert["no-expiry"]
    assert expiring["state"] == "expired", expiring
    # Ended by the retry that would come too late, or at the claim of the last one after the expiry.
    assert "expire" in expiring["last_error"], expiring
    assert "smtp connection" in await history(database, expiring["id"])
    assert aged["state"] == "failed", aged
    assert "max_age" in aged["last_error"] and "smtp connection" in aged["last_error"], aged
    assert expiring["attempts"] > 2 and aged["attempts"] > 2, "both kept trying until their deadline"


async def test_a_lease_expiry_spends_no_attempt_and_the_dead_workers_late_answer_is_fenced(database: str) -> None:
    await add_subscribers(database, "email", [RESIDENT])
    relay = SmtpStandIn()
    await relay.start()
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        await Pipeline(pool, targeter=CodeTargeter(), channels=["email"]).ingest(
            make_alert("lease", sent=datetime.now(UTC))
        )
        async with pool.acquire() as conn:
            # A worker claims the delivery under a short lease and dies before answering.
            [dead] = await outbox.claim(conn, "email", 10, 0.3)
        await asyncio.sleep(0.5)
        async with email_worker(database, relay.port, FAST):

            async def recorded() -> bool:
                return (await deliveries(database))[0]["state"] == "delivered"

            await wait_until(recorded, 10, "delivered by the next worker")
        async with pool.acquire() as conn:
            late = outbox.Completion(
                dead.id, "failed", error="the dead worker's late answer", spent=True, claim=dead.claim
            )
            assert await outbox.complete(conn, [late]) == 0, "an earlier claim's answer must not be written"
    finally:
        await pool.close()
        await relay.stop()
    [row] = await deliveries(database)
    assert (row["state"], row["attempts"], row["claims"]) == ("delivered", 1, 2)
    assert "lease expired" in await history(database, row["id"])
    assert len(relay.messages) == 1


async def history(dsn: str, delivery_id: int) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT state::text, attempt, detail FROM delivery_events WHERE delivery_id = $1 ORDER BY id", delivery_id
        )
    finally:
        await conn.close()
    return "; ".join(f"{r['state']} #{r['attempt']} {r['detail'] or ''}" for r in rows)
