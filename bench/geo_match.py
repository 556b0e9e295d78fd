"""Benchmark: geographic matching of one million points (goal: under 3 s on 2 cores).

Builds the default index (packaged N03 municipalities, illustrative districts, PLATEAU
zones), draws 1,000,000 uniformly random points in Shizuoka prefecture's bounding box
with a seeded numpy RNG, and times ``GeoIndex.locate_many`` (shapely 2 STRtree,
https://shapely.readthedocs.io/en/stable/strtree.html), best of three, for districts and
hazard zones alone and with the municipality layer too.

Run: ``.venv/bin/python bench/geo_match.py [--points N] [--repeat R] [--seed S]``

Each section is a function returning table rows; the audience-query section (districts
to subscribers in PostgreSQL) is a sibling of :func:`point_matching` and is appended to
``SECTIONS``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geo import GeoIndex, LocateResult, default_index

GOAL_SECONDS = 3.0


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


Section = Callable[[GeoIndex, argparse.Namespace], list[Row]]
SECTIONS: list[tuple[str, Section]] = [("point matching (locate_many)", point_matching)]


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n## {title}\n")
    print(f"| {'case':<36} | {'points':>10} | {'seconds':>8} | {'points/s':>12} | matched")
    print(f"|{'-' * 38}|{'-' * 12}|{'-' * 10}|{'-' * 14}|---------")
    for row in rows:
        print(f"| {row.case:<36} | {row.points:>10,} | {row.seconds:>8.3f} | {row.rate:>12,.0f} | {row.matched}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Geo matching benchmark")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=22203)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    index = default_index()
    print(f"index built in {time.perf_counter() - start:.3f} s: {dict(index.summary())}")
    slowest = 0.0
    for title, section in SECTIONS:
        rows = section(index, args)
        print_table(title, rows)
        if section is point_matching:
            slowest = max(row.seconds for row in rows)
    verdict = "OK" if slowest < GOAL_SECONDS else "SLOW"
    print(f"\ngoal: {args.points:,} points in < {GOAL_SECONDS} s (best of {args.repeat}): {verdict}")
    return 0 if slowest < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
