"""LINE through the real outbox: batches of 500, retry keys stored and reused, 409s, 429s, the quota on record.

Real PostgreSQL, the real :class:`~dispatcher.pipeline.Pipeline` and
:class:`~dispatcher.worker.OutboxWorker`, :class:`~channels.line.LineChannel` talking HTTP
to :class:`~dispatcher.standins.line_api.LineStandIn`; every assertion is on what the
stand-in delivered and on the database.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from channels.base import ChannelContext
from channels.line import LineChannel, LineConfig
from channels.templates import Templates
from dispatcher.settings import ChannelSettings
from dispatcher.standins.line_api import LineStandIn
from dispatcher.store import db
from dispatcher.store.quotas import StoreQuotaBook, channel_quotas
from tests.integration.test_delivery import FAST, alert, engine, states, wait_until
from tests.samples import add_subscribers

TOKEN = "line-delivery-token"


def users(n: int, start: int = 0) -> list[str]:
    return [f"U{i:032x}" for i in range(start, start + n)]


def line(standin: LineStandIn, book: StoreQuotaBook | None = None, plan: str = "standard") -> LineChannel:
    context = ChannelContext(templates=Templates.load(), public_url="https://bousai.example", quotas=book)
    return LineChannel(LineConfig(token=TOKEN, base_url=standin.base_url, plan=plan), context)


async def rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_more_than_500_split_into_batches_each_with_its_own_stored_key(database: str) -> None:
    standin = LineStandIn(TOKEN)
    await standin.start()
    try:
        await add_subscribers(database, "line", users(1203))
        settings = ChannelSettings("line", enabled=True)
        async with engine(database, FAST, [(line(standin), settings)]) as (pipeline, _):
            await pipeline.ingest(alert("L1"))
            await wait_until(
                lambda: len(standin.deliveries) >= 1203, 20, lambda: f"{len(standin.deliveries)}/1203 delivered"
            )
            await asyncio.sleep(0.2)
        requests = Counter(d.request_id for d in standin.deliveries)
        assert sorted(requests.values()) == [203, 500, 500]
        assert Counter(d.to for d in standin.deliveries).most_common(1)[0][1] == 1
        assert await states(database, "line") == Counter({"delivered": 1203})
        keys = await rows(
            database,
            "SELECT retry_key::text AS k, count(*) AS n, count(DISTINCT remote_id) AS r FROM deliveries GROUP BY 1",
        )
        assert sorted(r["n"] for r in keys) == [203, 500, 500]
        assert all(r["r"] == 1 and r["k"] is not None for r in keys)
        assert {d.retry_key for d in standin.deliveries} == {r["k"] for r in keys}
    finally:
        await standin.stop()


async def test_a_lost_answer_is_retried_with_the_stored_key_and_409_counts_as_delivered(database: str) -> None:
    standin = LineStandIn(TOKEN)
    await standin.start()
    try:
        await add_subscribers(database, "line", users(600))
        # LINE accepts the first multicast but its answer is lost (a 500 after the work).
        standin.fail(500, after_accept=True, endpoint="multicast")
        async with engine(database, FAST, [(line(standin), ChannelSettings("line", enabled=True))]) as (pipeline, _):
            await pipeline.ingest(alert("L2"))
            await wait_until(
                lambda: any(r.status == 409 for r in standin.refusals), 20, "the retry of the batch answered 409"
            )

            async def done() -> bool:
                return (await states(database, "line")) == Counter({"delivered": 600})

            await wait_until(done, 20, "every delivery recorded")
        assert Counter(d.to for d in standin.deliveries) == Counter({u: 1 for u in users(600)}), "nobody twice"
        events = await rows(
            database,
            "SELECT d.attempts, d.remote_id, d.retry_key::text AS k FROM deliveries d WHERE d.id IN"
            " (SELECT delivery_id FROM delivery_events WHERE detail LIKE 'line 500%')",
        )
        assert len(events) in (100, 500), "one batch was answered 500"
        assert {e["attempts"] for e in events} == {2}
        # The retry carried the key stored with the batch: the one LINE had accepted.
        conflicted = {e["k"] for e in events}
        assert len(conflicted) == 1
        assert len([d for d in standin.deliveries if d.retry_key in conflicted]) == len(events)
        # The request LINE accepted is the one each of them records.
        accepted = {d.request_id for d in standin.deliveries if d.retry_key in conflicted}
        assert {e["remote_id"] for e in events} == accepted
    finally:
        await standin.stop()


async def test_429_pauses_the_channel_spends_no_attempt_and_loses_nothing(database: str) -> None:
    standin = LineStandIn(TOKEN)
    await standin.start()
    try:
        await add_subscribers(database, "line", users(50))
        standin.throttle(count=1, endpoint="multicast")
        async with engine(database, FAST, [(line(standin), ChannelSettings("line", enabled=True))]) as (pipeline, _):
            await pipeline.ingest(alert("L3"))

            async def done() -> bool:
                return (await states(database, "line")) == Counter({"delivered": 50})

            await wait_until(done, 20, "delivered after the 429")
        assert standin.rate_limited == 1
        assert len(standin.deliveries) == 50
        got = await rows(database, "SELECT DISTINCT attempts FROM deliveries")
        assert [r["attempts"] for r in got] == [1]
        limited = await rows(
            database,
            "SELECT count(*) AS n FROM delivery_events WHERE state = 'queued'"
            " AND detail LIKE 'rate limited: line 429%'",
        )
        assert limited[0]["n"] == 50
    finally:
        await standin.stop()


async def test_quota_on_record_and_sends_held_before_it_is_exceeded(database: str) -> None:
    standin = LineStandIn(TOKEN, quota=120)
    await standin.start()
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        await add_subscribers(database, "line", users(100))
        book = StoreQuotaBook(pool)
        async with engine(database, FAST, [(line(standin, book, "light"), ChannelSettings("line", enabled=True))]) as (
            pipeline,
            _,
        ):
            await pipeline.ingest(alert("Q1"))

            async def first_done() -> bool:
                return (await states(database, "line")) == Counter({"delivered": 100})

            await wait_until(first_done, 20, "the first alert delivered")
            await pipeline.ingest(alert("Q2"))

            async def held() -> bool:
                async with pool.acquire() as conn:
                    quotas = await channel_quotas(conn)
                return bool(quotas and quotas[0]["held"])

            await wait_until(held, 20, "the second alert held by the quota")
        async with pool.acquire() as conn:
            (quota,) = await channel_quotas(conn)
            pause = await conn.fetchrow("SELECT paused_until, pause_reason FROM channel_state WHERE channel = 'line'")
        assert quota["plan"] == "light" and quota["quota"] == 120 and quota["used"] == 100
        assert quota["remaining"] == 20 and quota["percent"] == 83.3
        assert quota["held"] is not None and "100 of 120 messages used" in quota["held"]
        assert pause is not None and "quota would be exceeded" in pause["pause_reason"]
        assert len(standin.deliveries) == 100, "the second alert was not sent"
        assert (await states(database, "line"))["queued"] == 100
    finally:
        await pool.close()
        await standin.stop()


async def test_a_restart_retries_the_batch_a_dead_worker_sent_with_its_stored_key(database: str) -> None:
    """A worker claims a batch, stores its key, LINE accepts it, and the worker dies before recording."""
    from dispatcher.model import Message, Recipient
    from dispatcher.pipeline import CodeTargeter, Pipeline
    from dispatcher.store import outbox

    standin = LineStandIn(TOKEN)
    await standin.start()
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        await add_subscribers(database, "line", users(30))
        # The first life: the pipeline writes the deliveries, a worker claims them all and sends.
        await Pipeline(pool, targeter=CodeTargeter(), channels=["line"]).ingest(alert("R1"))
        async with pool.acquire() as conn:
            claimed = await outbox.claim(conn, "line", 100, 1.0)
            await outbox.assign_retry_key(
                conn, [c.id for c in claimed], [c.claim for c in claimed], "6f1c1b6e-0f6e-4a57-9b59-2f6c0e7d3a10"
            )
        dead = line(standin)
        text = Message("【大雨警報】test R1", "ja", idempotency_key="6f1c1b6e-0f6e-4a57-9b59-2f6c0e7d3a10")
        sent = await dead.send(text, [Recipient(c.id, c.address) for c in claimed])
        await dead.close()
        assert len(sent) == 30 and len(standin.deliveries) == 30
        await asyncio.sleep(1.2)  # its lease runs out: nobody answered for it
        # The second life: a new worker takes the batch over and sends it again, same key.
        async with engine(database, FAST, [(line(standin), ChannelSettings("line", enabled=True))]):

            async def done() -> bool:
                return (await states(database, "line")) == Counter({"delivered": 30})

            await wait_until(done, 20, "the batch taken over and recorded")
        assert len(standin.deliveries) == 30, "LINE did not send it twice"
        assert [r.status for r in standin.refusals] == [409]
        got = await rows(database, "SELECT DISTINCT retry_key::text AS k, attempts FROM deliveries")
        assert [(r["k"], r["attempts"]) for r in got] == [("6f1c1b6e-0f6e-4a57-9b59-2f6c0e7d3a10", 1)]
    finally:
        await pool.close()
        await standin.stop()
