"""``GET /metrics`` of real daemons after a real fan-out, parsed with prometheus-client's own parser.

The daemon (:class:`dispatcher.app.Service`, web server on) polls the JMA feed stand-in
and delivers through the Telegram Bot API stand-in, which answers one 429 first. The
latency histograms must hold what the database's own timestamps say; two daemons on one
database must count each alert once between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from channels.telegram import TelegramConfig
from dispatcher.app import Service
from dispatcher.metrics import LATENCY_BUCKETS
from dispatcher.settings import ChannelSettings, Settings, load
from dispatcher.standins.jma_feed import JmaFeedStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from tests.integration.test_delivery import alert, telegram_standin, wait_until
from tests.samples import add_subscribers

CHATS = [str(770_000 + i) for i in range(12)]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def settings_for(tmp_path: Path, tg: TelegramStandIn, feed: JmaFeedStandIn | None = None) -> Settings:
    base = load(None, env={})
    jma = base.sources["jma"]
    jma = (
        dataclasses.replace(jma, feeds=(feed.feed_url("regular"),), poll_seconds=1)
        if feed is not None
        else dataclasses.replace(jma, enabled=False)
    )
    return dataclasses.replace(
        base,
        service=dataclasses.replace(base.service, state_dir=tmp_path),
        web=dataclasses.replace(base.web, enabled=True, port=0),
        sources={**base.sources, "jma": jma},
        delivery=dataclasses.replace(base.delivery, poll_interval=0.2),
        channels={
            "telegram": ChannelSettings(
                "telegram", enabled=True, options=TelegramConfig(token="42:METRICS", base_url=tg.base_url)
            )
        },
    )


@contextlib.asynccontextmanager
async def daemon(settings: Settings, dsn: str) -> AsyncIterator[Service]:
    service = Service(settings, dsn=dsn)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def scrape(service: Service) -> tuple[str, Samples]:
    """The exposition text, and every sample by (name, sorted labels)."""
    async with aiohttp.ClientSession() as http, http.get(f"{service.web_url}/metrics") as resp:
        assert resp.status == 200, "no login: Prometheus scrapes without one"
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def db_latencies(dsn: str, identifier: str) -> tuple[float, float, int]:
    """Seconds from the alert's receipt to its first and last delivered row on telegram, per the database."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """
            SELECT extract(epoch FROM min(d.updated_at) - a.received_at)::float8 AS first_s,
                   extract(epoch FROM max(d.updated_at) - a.received_at)::float8 AS last_s, count(*) AS n
            FROM deliveries d JOIN alerts a ON a.id = d.alert_id
            WHERE a.identifier = $1 AND d.channel = 'telegram' AND d.state = 'delivered'
            GROUP BY a.received_at
            """,
            identifier,
        )
    finally:
        await conn.close()
    assert row is not None
    return row["first_s"], row["last_s"], row["n"]


def check_histogram(samples: Samples, name: str, seconds: float, count: int = 1) -> None:
    """``name`` holds ``count`` observations summing to ``seconds``, each in the bucket ``seconds`` falls in."""
    assert value(samples, f"{name}_count", channel="telegram") == count
    assert value(samples, f"{name}_sum", channel="telegram") == pytest.approx(seconds, abs=1e-3)
    for le in LATENCY_BUCKETS:
        got = value(samples, f"{name}_bucket", channel="telegram", le=str(le))
        assert got == (count if seconds <= le else 0), (name, le, seconds, got)
    assert value(samples, f"{name}_bucket", channel="telegram", le="+Inf") == count


async def test_metrics_after_a_real_fan_out_hold_the_measured_latencies(database: str, tmp_path: Path) -> None:
    await add_subscribers(database, "telegram", CHATS)
    feed = JmaFeedStandIn()
    await feed.start()
    try:
        async with telegram_standin() as tg:
            # The provider's flood control answers the first message with a 429 (retry after 1 s).
            tg.flood(retry_after=1, count=1)
            async with daemon(settings_for(tmp_path, tg, feed), database) as service:
                assert service.pipeline is not None
                await service.pipeline.ingest(alert("metrics-1"))
                await wait_until(lambda: len({m.chat_id for m in tg.messages}) == len(CHATS), 20, "every chat")

                async def settled() -> bool:
                    # The database's gauges may be a second old (one read per second, whatever the scrapes).
                    _text, s = await scrape(service)
                    return value(
                        s, "dispatcher_ingest_to_last_delivery_seconds_count", channel="telegram"
                    ) == 1 and value(s, "dispatcher_deliveries", channel="telegram", state="delivered") == len(CHATS)

                await wait_until(settled, 10, "the alert to settle on telegram and the gauges to follow")
                text, samples = await scrape(service)
    finally:
        await feed.stop()

    first, last, n = await db_latencies(database, "metrics-1")
    assert n == len(CHATS) and 0 < first <= last
    check_histogram(samples, "dispatcher_ingest_to_first_delivery_seconds", first)
    check_histogram(samples, "dispatcher_ingest_to_last_delivery_seconds", last)

    assert value(samples, "dispatcher_deliveries", channel="telegram", state="delivered") == len(CHATS)
    assert value(samples, "dispatcher_deliveries", channel="telegram", state="queued") == 0
    assert value(samples, "dispatcher_provider_answers_total", channel="telegram", answer="delivered") == len(CHATS)
    assert value(samples, "dispatcher_rate_limited_total", channel="telegram") == 1
    assert value(samples, "dispatcher_provider_answers_total", channel="telegram", answer="rate_limited") == 1
    assert value(samples, "dispatcher_alerts_total", source="test", kind="", msg_type="alert", status="actual") == 1
    assert value(samples, "dispatcher_database_up") == 1
    # The 1 s pause is over by now: the gauge says so (and it exists for every channel and reason).
    for why in ("operator", "provider", "backoff"):
        assert ("dispatcher_channel_paused", (("channel", "telegram"), ("why", why))) in samples
        assert value(samples, "dispatcher_channel_paused", channel="telegram", why=why) == 0
    # The feed was polled: first a 200, then 304s (If-None-Match).
    url = feed.feed_url("regular")
    assert value(samples, "dispatcher_polls_total", feed=url, result="ok") >= 1
    assert value(samples, "dispatcher_polls_total", feed=url, result="not_modified") >= 1
    assert value(samples, "dispatcher_polls_total", feed=url, result="error") == 0
    # No personal data: no chat id, no subscriber name.
    assert not any(chat in text for chat in CHATS)


async def test_queue_depth_and_a_pause_are_gauges_read_from_the_database(database: str, tmp_path: Path) -> None:
    await add_subscribers(database, "telegram", CHATS)
    async with telegram_standin() as tg:
        tg.flood(retry_after=600, count=1)
        async with daemon(settings_for(tmp_path, tg), database) as service:
            assert service.pipeline is not None
            await service.pipeline.ingest(alert("metrics-paused"))
            await wait_until(lambda: tg.rate_limited == 1, 10, "the 429")

            async def paused() -> bool:
                _text, s = await scrape(service)
                return value(s, "dispatcher_channel_paused", channel="telegram", why="provider") == 1

            await wait_until(paused, 10, "the pause gauge")
            _text, samples = await scrape(service)
    left = value(samples, "dispatcher_channel_pause_seconds", channel="telegram", why="provider")
    assert 500 < left <= 600
    priority = str(alert("x").priority.value)
    # Some sends were already under way when the 429 came; the rest wait, in the queue, at their priority.
    queued = value(samples, "dispatcher_deliveries", channel="telegram", state="queued")
    assert queued > 0 and value(samples, "dispatcher_queue_depth", channel="telegram", priority=priority) == queued
    assert value(samples, "dispatcher_ingest_to_last_delivery_seconds_count", channel="telegram") == 0


async def test_two_daemons_on_one_database_count_each_alert_once(database: str, tmp_path: Path) -> None:
    await add_subscribers(database, "telegram", CHATS)
    async with telegram_standin() as tg:
        settings = settings_for(tmp_path, tg)
        async with daemon(settings, database) as a, daemon(settings, database) as b:
            assert a.pipeline is not None
            # Both registered before the alert: the chats are split between them.
            await wait_until(
                lambda: all(p is not None and p.share_for("telegram").live == 2 for p in (a.peers, b.peers)),
                10,
                "peers",
            )
            await a.pipeline.ingest(alert("metrics-two"))
            await wait_until(lambda: len({m.chat_id for m in tg.messages}) == len(CHATS), 20, "every chat")

            async def both() -> list[Samples]:
                return [(await scrape(s))[1] for s in (a, b)]

            async def settled() -> bool:
                name = "dispatcher_ingest_to_last_delivery_seconds_count"
                scraped = await both()
                return sum(value(s, name, channel="telegram") for s in scraped) == 1 and all(
                    value(s, "dispatcher_deliveries", channel="telegram", state="delivered") == len(CHATS)
                    for s in scraped
                )

            await wait_until(settled, 10, "one observation between the two daemons")
            scraped = await both()
    answers: list[Any] = [
        value(s, "dispatcher_provider_answers_total", channel="telegram", answer="delivered") for s in scraped
    ]
    assert sum(answers) == len(CHATS) and all(n > 0 for n in answers), answers
    _first, last, _n = await db_latencies(database, "metrics-two")
    total = sum(value(s, "dispatcher_ingest_to_last_delivery_seconds_sum", channel="telegram") for s in scraped)
    assert total == pytest.approx(last, abs=1e-3)
    # The database's gauges are the same on both.
    assert {value(s, "dispatcher_deliveries", channel="telegram", state="delivered") for s in scraped} == {len(CHATS)}
