"""Polling JMA's Atom feeds politely, replayed from a real feed snapshot.

The eqvol (地震火山) high-frequency feed of 2024-01-01 20:53 JST, saved unchanged
from JMA, is served by the local stand-in with its entry links pointing at the
stand-in. Of its 169 telegrams, the data set holds the three real Noto
telegrams matched below; the rest are answered 404, as a telegram JMA no longer
serves would be. Everything runs against a real PostgreSQL (``database``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from dispatcher.context import ServiceContext
from dispatcher.pipeline import Pipeline
from dispatcher.standins.jma_feed import JmaFeedStandIn
from dispatcher.store import db
from dispatcher.targeting import default_targeter
from sources.jma.feed import JmaSource, long_feed_url
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed, ParseOutcome

SNAPSHOT = "jma/live_noto2024/eqvol_feed_20240101T2053JST.xml"
ENTRY = re.compile(rb"/data/((\d{14})_0_(V[A-Z]{3}\d\d)_\d{6}\.xml)")
MAX_ATTEMPTS = 5  # ServiceContext.claim_document's bound


class CountingParse:
    """The real parser, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes, **kwargs: Any) -> ParseOutcome:
        self.calls += 1
        return parse_telegram(data, **kwargs)


def noto_bodies(shared_data: Path, feed: bytes) -> dict[str, bytes]:
    """The real Noto telegrams that are entries of the snapshot.

    A feed entry's file name starts with its publication time (UTC); a telegram
    is that entry when the data-type code matches and it was published within a
    minute after its Head/ReportDateTime (the first such entry).
    """
    entries = sorted(
        (datetime.strptime(m.group(2).decode(), "%Y%m%d%H%M%S").replace(tzinfo=UTC), m.group(3).decode(), m.group(1))
        for m in ENTRY.finditer(feed)
    )
    out: dict[str, bytes] = {}
    for path in sorted((shared_data / "jma/live_noto2024").glob("*.xml")):
        if path.name.startswith("eqvol_feed"):
            continue
        data = path.read_bytes()
        outcome = parse_telegram(data, url=path.name)
        assert isinstance(outcome, Parsed), path
        sent, kind = outcome.alert.sent, outcome.alert.kind
        match = next((name for at, k, name in entries if k == kind and sent <= at < sent + timedelta(minutes=1)), None)
        if match is not None:
            out[match.decode()] = data
    return out


class Instance:
    """One daemon instance's JMA side: a pool, a ServiceContext and a JmaSource."""

    def __init__(self, pool: asyncpg.Pool, source: JmaSource) -> None:
        self.pool = pool
        self.ctx = ServiceContext(pool, Pipeline(pool, targeter=default_targeter(), channels=[]))
        self.source = source

    @classmethod
    async def start(cls, dsn: str, source: JmaSource) -> Instance:
        return cls(await db.create_pool(dsn, min_size=1, max_size=4), source)

    async def poll(self) -> list[Any]:
        return await self.source.poll(self.ctx)

    async def stop(self) -> None:
        await self.source.close()
        await self.pool.close()


@pytest.fixture
async def standin() -> AsyncIterator[JmaFeedStandIn]:
    feed = JmaFeedStandIn()
    await feed.start()
    try:
        yield feed
    finally:
        await feed.stop()


def snapshot_source(standin: JmaFeedStandIn, parse: CountingParse, **kwargs: Any) -> JmaSource:
    # Retries on every poll (growth 1) so the bound is reached in a few polls.
    options: dict[str, Any] = {"long_feeds": {}, "poll_seconds": 0.001, "retry_growth": 1.0, "parse": parse}
    return JmaSource([standin.feed_url("eqvol")], **(options | kwargs))


async def documents(dsn: str) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT url, outcome, attempts, kind FROM documents")
    finally:
        await conn.close()
    return {r["url"].rsplit("/", 1)[-1]: r for r in rows}


@pytest.fixture
def snapshot(shared_data: Path, standin: JmaFeedStandIn) -> dict[str, bytes]:
    raw = (shared_data / SNAPSHOT).read_bytes()
    bodies = noto_bodies(shared_data, raw)
    # Honest matching finds the 震度速報, the 大津波警報 and the 震源・震度情報.
    assert sorted(bodies) == [
        "20240101071328_0_VXSE51_010000.xml",
        "20240101072233_0_VTSE41_010000.xml",
        "20240101072429_0_VXSE53_010000.xml",
    ]
    standin.serve_raw("eqvol", raw, bodies)
    return bodies


async def test_snapshot_fetched_once_404s_retried_boundedly_and_304_parses_nothing(
    database: str, standin: JmaFeedStandIn, snapshot: dict[str, bytes]
) -> None:
    parse = CountingParse()
    inst = await Instance.start(database, snapshot_source(standin, parse))
    try:
        [first] = await inst.poll()
        assert (first.status, first.entries, first.new, first.alerts) == (200, 169, 169, 3)
        assert first.errors == 166 and parse.calls == 3
        requested = standin.data_requests()
        assert len(requested) == 169 and set(requested.values()) == {1}

        # Unchanged feed: 304, nothing parsed; only the failed fetches are tried again.
        rounds = [await inst.poll() for _ in range(MAX_ATTEMPTS + 2)]
        assert {s.status for [s] in rounds} == {304}
        assert parse.calls == 3, "a 304 costs no parsing and good telegrams are not fetched again"
        assert [s.fetched for [s] in rounds] == [166] * (MAX_ATTEMPTS - 1) + [0, 0, 0]
        requested = standin.data_requests()
        for name in snapshot:
            assert requested[name] == 1
        assert sorted(set(requested.values())) == [1, MAX_ATTEMPTS]
        assert standin.feed_requests("eqvol") == 1 + MAX_ATTEMPTS + 2
    finally:
        await inst.stop()
    docs = await documents(database)
    assert len(docs) == 169
    assert {n: d["outcome"] for n, d in docs.items() if n in snapshot} == dict.fromkeys(snapshot, "parsed")
    failed = [d for n, d in docs.items() if n not in snapshot]
    assert {(d["outcome"], d["attempts"]) for d in failed} == {("fetch_failed", MAX_ATTEMPTS)}


async def test_restart_fetches_nothing_again(
    database: str, standin: JmaFeedStandIn, snapshot: dict[str, bytes]
) -> None:
    first = await Instance.start(database, snapshot_source(standin, CountingParse()))
    try:
        await first.poll()
    finally:
        await first.stop()
    before = standin.data_requests()

    parse = CountingParse()
    second = await Instance.start(database, snapshot_source(standin, parse))
    try:
        [stats] = await second.poll()
    finally:
        await second.stop()
    # A new process reads the feed once in full (it remembers no entries), then asks the database.
    assert stats.status == 200 and stats.entries == 169
    assert parse.calls == 0
    after = standin.data_requests()
    assert {n: after[n] for n in snapshot} == {n: before[n] for n in snapshot} == dict.fromkeys(snapshot, 1)
    # Only the earlier failures get their second (bounded) attempt.
    assert stats.new == 166 and sum(after.values()) - sum(before.values()) == 166


async def test_two_instances_poll_once_between_them(
    database: str, standin: JmaFeedStandIn, snapshot: dict[str, bytes]
) -> None:
    parses = [CountingParse(), CountingParse()]
    a, b = [await Instance.start(database, snapshot_source(standin, p)) for p in parses]
    rounds = 0
    try:
        for _ in range(MAX_ATTEMPTS + 1):
            results = await asyncio.gather(a.poll(), b.poll())
            rounds += 1
            assert sorted(len(r) for r in results) == [0, 1], "exactly one instance held the poller lock"
            assert standin.feed_requests("eqvol") <= rounds
            await asyncio.sleep(0.02)
    finally:
        await a.stop()
        await b.stop()
    requested = standin.data_requests()
    assert {n: requested[n] for n in snapshot} == dict.fromkeys(snapshot, 1)
    assert max(requested.values()) == MAX_ATTEMPTS
    assert parses[0].calls + parses[1].calls == 3


async def test_default_retry_spacing_grows(database: str, standin: JmaFeedStandIn, shared_data: Path) -> None:
    body = (shared_data / "jma/live_noto2024/WInfoL.xml").read_bytes()
    standin.publish("eqvol", "gone_VXSE53.xml", body)
    standin.gone.add("gone_VXSE53.xml")
    inst = await Instance.start(database, snapshot_source(standin, CountingParse(), retry_growth=2.0))
    try:
        tried_at = []
        for n in range(1, 13):
            before = standin.fetches_of("gone_VXSE53.xml")
            await inst.poll()
            if standin.fetches_of("gone_VXSE53.xml") > before:
                tried_at.append(n)
    finally:
        await inst.stop()
    # Retried after 0, 1 and 3 skipped polls; the next (and last) try would be at poll 16.
    assert tried_at == [1, 2, 4, 8]


async def test_gap_longer_than_window_catches_up_from_long_feed(
    database: str, standin: JmaFeedStandIn, shared_data: Path
) -> None:
    files = sorted((shared_data / "jma/live_p2pquake").glob("2023*_VXSE53.xml"))[:4]
    old, a, b, c = files
    url = standin.feed_url("eqvol")
    assert long_feed_url(url) == standin.feed_url("eqvol_l")

    def source() -> JmaSource:
        return JmaSource([url], poll_seconds=0.001, catchup_window=600, catchup_max_age=86400)

    # In the long feed only, published two days ago: older than any catch-up reaches.
    standin.publish("eqvol", old.name, old.read_bytes(), updated=datetime.now(UTC) - timedelta(days=2))
    standin.age_out("eqvol")
    standin.publish("eqvol", a.name, a.read_bytes())
    inst = await Instance.start(database, source())
    try:
        [first] = await inst.poll()
        assert first.caught_up, "the first start reads the long feed"
        assert standin.feed_requests("eqvol_l") == 1
        assert standin.fetches_of(a.name) == 1 and standin.fetches_of(old.name) == 0

        # B and C are published; B has already left the high-frequency feed.
        standin.publish("eqvol", b.name, b.read_bytes())
        standin.publish("eqvol", c.name, c.read_bytes())
        standin.age_out("eqvol", keep=1)
        await asyncio.sleep(0.02)
        [second] = await inst.poll()
        assert not second.caught_up and standin.feed_requests("eqvol_l") == 1
        assert standin.fetches_of(c.name) == 1 and standin.fetches_of(b.name) == 0
    finally:
        await inst.stop()

    # The daemon was down for 11 minutes: longer than the high-frequency feed holds.
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("UPDATE feed_state SET last_polled = now() - interval '11 minutes' WHERE url = $1", url)
    finally:
        await conn.close()
    restarted = await Instance.start(database, source())
    try:
        [third] = await restarted.poll()
    finally:
        await restarted.stop()
    assert third.caught_up and standin.feed_requests("eqvol_l") == 2
    assert [standin.fetches_of(f.name) for f in (old, a, b, c)] == [0, 1, 1, 1]
    docs = await documents(database)
    assert {d["outcome"] for d in docs.values()} == {"parsed"} and len(docs) == 3


async def test_unreachable_feed_backs_off_across_restarts(database: str, standin: JmaFeedStandIn) -> None:
    url = standin.feed_url("eqvol")
    standin.fail_next = 1
    inst = await Instance.start(database, JmaSource([url], long_feeds={}, poll_seconds=30))
    try:
        [failed] = await inst.poll()
        assert failed.status == 503 and failed.errors == 1
    finally:
        await inst.stop()
    # A new instance (or a restart) honours the backoff recorded in feed_state.
    other = await Instance.start(database, JmaSource([url], long_feeds={}, poll_seconds=30))
    try:
        [stats] = await other.poll()
    finally:
        await other.stop()
    assert stats.skipped and standin.feed_requests("eqvol") == 1


async def test_standin_honours_if_modified_since(standin: JmaFeedStandIn, shared_data: Path) -> None:
    standin.publish("eqvol", "x_VXSE53.xml", (shared_data / "jma/live_noto2024/WInfoL.xml").read_bytes())
    url = standin.feed_url("eqvol")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            modified = resp.headers["Last-Modified"]
        async with http.get(url, headers={"If-Modified-Since": modified}) as resp:
            assert resp.status == 304
        async with http.get(url, headers={"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}) as resp:
            assert resp.status == 200
