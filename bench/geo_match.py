"""Benchmark: geographic matching of one million points (goal: under 3 s on 2 cores),
and the audience of an alert among 100,000 located subscribers (goal: under 200 ms).

Builds the default index (packaged N03 municipalities, illustrative districts, PLATEAU
zones), draws 1,000,000 uniformly random points in Shizuoka prefecture's bounding box
with a seeded numpy RNG, and times ``GeoIndex.locate_many`` (shapely 2 STRtree,
https://shapely.readthedocs.io/en/stable/strtree.html), best of three, for districts and
hazard zones alone and with the municipality layer too.

The audience section (:func:`audience_query`) runs against a real PostgreSQL:
``$DATABASE_URL`` if set, else ``postgresql://postgres@127.0.0.1:5432/postgres`` if it
answers, else an embedded pgserver in a temporary directory; it creates its own database
and drops it at the end. It subscribes ``--subscribers`` random locations in Numazu
(``subscribe_location``'s storage, computed in bulk by ``relocate_all``), then times, best
of 5, for one alert naming 2 districts: the audience ``SELECT count`` (the fan-out's
predicate, ``subscriptions.areas && alerts.target_codes`` under the GIN index) and the
real ``INSERT … SELECT`` of ``dispatcher.store.fanout.fan_out`` (rolled back each time).

Run: ``.venv/bin/python bench/geo_match.py [--points N] [--repeat R] [--seed S]
[--subscribers N] [--skip-points]``

Each section is a function returning table rows and is listed in ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
from _common import scratch_database
from numpy.typing import NDArray

from dispatcher.locations import relocate_all
from dispatcher.model import Alert, Area, Certainty, MsgType, Severity, Status, Urgency
from dispatcher.store import alerts as alert_store
from dispatcher.store import db, fanout
from dispatcher.store.subscribers import AUDIENCE_SQL
from dispatcher.targeting import default_targeter
from geo import GeoIndex, LocateResult, default_index

GOAL_SECONDS = 3.0
AUDIENCE_GOAL_SECONDS = 0.2
CHANNELS = ("telegram", "email")


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    case: str
    points: int
    seconds: float
    matched: str

    @property
    def rate(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else float("inf")


def random_points(
    bounds: tuple[float, float, float, float], n: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(lats, lons) of n uniform points in (min lon, min lat, max lon, max lat)."""
    rng = np.random.default_rng(seed)
    min_lon, min_lat, max_lon, max_lat = bounds
    return rng.uniform(min_lat, max_lat, n), rng.uniform(min_lon, max_lon, n)


def best_of(repeat: int, run: Callable[[], LocateResult]) -> tuple[float, LocateResult]:
    best = float("inf")
    result: LocateResult | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def _matched(result: LocateResult) -> str:
    parts = [f"districts {int((result.district >= 0).sum()):,}"]
    for hits in result.zones:
        parts.append(f"{hits.layer.features[0].kind if len(hits.layer) else hits.layer.name} {len(hits):,}")
    if result.municipalities is not None:
        parts.append(f"municipalities {int((result.municipality >= 0).sum()):,}")
    return ", ".join(parts)


def point_matching(index: GeoIndex, args: argparse.Namespace) -> list[Row]:
    """locate_many over random points: districts + zones, then with municipalities.

    The goal's case is the prefecture's bounding box (Shizuoka). The last case draws the
    points in Numazu's bounding box instead, where most of them need exact tests.
    """
    shizuoka = random_points(index.municipalities.bounds, args.points, args.seed)
    numazu = random_points(index.districts.bounds, args.points, args.seed)
    rows = []
    for case, (lats, lons), with_municipalities in (
        ("Shizuoka bbox: districts + zones", shizuoka, False),
        ("Shizuoka bbox: + municipalities", shizuoka, True),
        ("Numazu bbox: + municipalities", numazu, True),
    ):
        seconds, result = best_of(
            args.repeat,
            lambda la=lats, lo=lons, m=with_municipalities: index.locate_many(la, lo, municipalities=m),  # type: ignore[misc]
        )
        rows.append(Row(case, args.points, seconds, _matched(result)))
    return rows


@contextlib.asynccontextmanager
async def _scratch_database() -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh, migrated database (bench/_common.py), dropped afterwards."""
    async with scratch_database("bench_geo") as dsn:
        conn = await db.connect(dsn)
        try:
            yield conn
        finally:
            await conn.close()


def _numazu_points(index: GeoIndex, n: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """n random points inside Numazu's districts (uniform over the city's area)."""
    lats: list[NDArray[np.float64]] = []
    lons: list[NDArray[np.float64]] = []
    have = 0
    while have < n:
        la, lo = random_points(index.districts.bounds, 2 * n, seed + have)
        keep = index.locate_many(la, lo, municipalities=False, zones=False).district >= 0
        lats.append(la[keep])
        lons.append(lo[keep])
        have += int(keep.sum())
    return np.concatenate(lats)[:n], np.concatenate(lons)[:n]


async def _timed(repeat: int, run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await run()
        best = min(best, time.perf_counter() - start)
    return best, result


async def _audience(index: GeoIndex, n: int, seed: int) -> list[Row]:
    rows: list[Row] = []
    async with _scratch_database() as conn:
        lats, lons = _numazu_points(index, n, seed)
        start = time.perf_counter()
        await conn.execute("INSERT INTO subscribers (language) SELECT 'ja' FROM generate_series(1, $1)", n)
        # Every tenth subscriber also follows 沼津市 by its JMA code.
        await conn.execute(
            """
            INSERT INTO subscriptions (subscriber_id, channel, address, areas, latitude, longitude)
            SELECT i, ($3::text[])[1 + i % 2], 'bench-' || i,
                   CASE WHEN i % 10 = 0 THEN '{2220300}'::text[] ELSE '{}' END, lat, lon
            FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS u(lat, lon, i)
            """,
            lats.tolist(),
            lons.tolist(),
            list(CHANNELS),
        )
        inserted = time.perf_counter() - start
        rows.append(Row("insert subscribers (lat/lon)", n, inserted, f"{len(CHANNELS)} channels"))
        start = time.perf_counter()
        located = await relocate_all(conn, index)
        rows.append(Row("relocate_all (locate_many, batches)", located, time.perf_counter() - start, index.version))
        await conn.execute("ANALYZE subscriptions; ANALYZE subscribers")

        chosen = index.districts.codes[:2]
        alert = Alert(
            identifier="bench-audience",
            sender="bench",
            sent=datetime.now(UTC),
            status=Status.ACTUAL,
            msg_type=MsgType.ALERT,
            event="避難指示",
            severity=Severity.EXTREME,
            urgency=Urgency.IMMEDIATE,
            certainty=Certainty.OBSERVED,
            headline="",
            source="bench",
            areas=(Area("2 districts", tuple(chosen)),),
        )
        targets, _unknown = default_targeter(index=index).target_codes(alert)
        alert_id = await alert_store.insert_alert(conn, alert, target_codes=targets, document_id=None)
        assert alert_id is not None

        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + AUDIENCE_SQL, list(CHANNELS), targets, True))
        uses_index = "subscriptions_areas" in plan
        seconds, counts = await _timed(5, lambda: conn.fetch(AUDIENCE_SQL, list(CHANNELS), targets, True))
        reached = sum(int(r["n"]) for r in counts)
        how = "GIN subscriptions_areas" if uses_index else "NO INDEX USED"
        rows.append(Row(f"audience count ({', '.join(chosen)})", n, seconds, f"{reached:,} reached via {how}"))

        async def fan_out_rolled_back() -> int:
            tr = conn.transaction()
            await tr.start()
            try:
                return await fanout.fan_out(
                    conn, alert_id=alert_id, priority=0, channels=list(CHANNELS), target_codes=targets, public=True
                )
            finally:
                await tr.rollback()

        seconds, queued = await _timed(5, fan_out_rolled_back)
        rows.append(Row("fan_out INSERT…SELECT (rolled back)", n, seconds, f"{queued:,} deliveries"))
    return rows


def audience_query(index: GeoIndex, args: argparse.Namespace) -> list[Row]:
    """The audience of one alert naming 2 districts among located subscribers, in PostgreSQL."""
    return asyncio.run(_audience(index, args.subscribers, args.seed))


Section = Callable[[GeoIndex, argparse.Namespace], list[Row]]
SECTIONS: list[tuple[str, Section]] = [
    ("point matching (locate_many)", point_matching),
    ("audience of an alert (PostgreSQL, best of 5)", audience_query),
]


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n## {title}\n")
    print(f"| {'case':<46} | {'points':>10} | {'seconds':>8} | {'points/s':>12} | matched")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 10}|{'-' * 14}|---------")
    for row in rows:
        print(f"| {row.case:<46} | {row.points:>10,} | {row.seconds:>8.3f} | {row.rate:>12,.0f} | {row.matched}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Geo matching benchmark")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=22203)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--skip-points", action="store_true", help="run only the audience section")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    index = default_index()
    print(f"index built in {time.perf_counter() - start:.3f} s: {dict(index.summary())}")
    ok = True
    for title, section in SECTIONS:
        if args.skip_points and section is point_matching:
            continue
        rows = section(index, args)
        print_table(title, rows)
        if section is point_matching:
            slowest = max(row.seconds for row in rows)
            verdict = "OK" if slowest < GOAL_SECONDS else "SLOW"
            ok &= slowest < GOAL_SECONDS
            print(f"\ngoal: {args.points:,} points in < {GOAL_SECONDS} s (best of {args.repeat}): {verdict}")
        if section is audience_query:
            query = next(row.seconds for row in rows if row.case.startswith("audience count"))
            verdict = "OK" if query < AUDIENCE_GOAL_SECONDS else "SLOW"
            ok &= query < AUDIENCE_GOAL_SECONDS
            print(
                f"\ngoal: audience of an alert among {args.subscribers:,} subscribers"
                f" in < {AUDIENCE_GOAL_SECONDS * 1000:.0f} ms: {verdict}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
