"""Residents' locations matched to districts and hazard zones: once, not when an alert is sent.

A resident who shares a location follows the districts and hazard zones found there
(``geo``), besides what they chose. The point is matched when they subscribe
(:func:`subscribe_location`) and again only when the geo layers change
(:func:`relocate_all`, run at start and by ``dispatcher relocate``), so an alert's
audience is an indexed lookup in the database, never a geometry loop (DESIGN.md §6).
The subscriptions themselves are :mod:`dispatcher.store.subscribers`'.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import numpy as np

from dispatcher.store import subscribers
from dispatcher.targeting import located_codes
from geo import GeoIndex, LocateResult


async def subscribe_location(
    conn: asyncpg.Connection,
    *,
    channel: str,
    address: str,
    lat: float,
    lon: float,
    index: GeoIndex,
    areas: Sequence[str] = (),
    language: str = "ja",
    display_name: str = "",
    test_recipient: bool = False,
    subscriber_id: int | None = None,
) -> int:
    """Subscribe ``address`` to the districts and zones at (lat, lon), plus ``areas``.

    The point is matched once, here; the result is stored with ``index.version``. A point
    outside every district (another municipality) follows only ``areas``. Raises
    ValueError for a non-finite or out-of-range coordinate.
    """
    location = index.locate(lat, lon)
    return await subscribers.subscribe_located(
        conn,
        channel=channel,
        address=address,
        lat=lat,
        lon=lon,
        located=located_codes(location.district_codes, location.zone_ids),
        layers_version=index.version,
        areas=areas,
        language=language,
        display_name=display_name,
        test_recipient=test_recipient,
        subscriber_id=subscriber_id,
    )


def _located(result: LocateResult) -> list[list[str]]:
    """Per point, its district codes then its zone ids (layer order)."""
    codes: list[list[str]] = [[] for _ in range(result.n)]
    for hits in (result.districts, *result.zones):
        names = hits.layer.codes
        for point, feature in zip(hits.points.tolist(), hits.features.tolist(), strict=True):
            codes[point].append(names[feature])
    return codes


async def relocate_all(conn: asyncpg.Connection, index: GeoIndex, *, batch_size: int = 10_000) -> int:
    """Recompute the located areas of subscriptions located with other layers; return how many.

    Works in batches of ``batch_size`` (one transaction each, rows locked), matching a
    whole batch with one vectorised ``GeoIndex.locate_many``. What the subscriber chose
    (``areas - located_areas``) is kept. Safe to interrupt and re-run.
    """
    version = index.version
    total = 0
    last_id = 0
    while True:
        async with conn.transaction():
            batch = await subscribers.located_elsewhere(conn, version, after_id=last_id, limit=batch_size)
            if not batch:
                return total
            lats = np.fromiter(batch.lats, dtype=np.float64, count=len(batch))
            lons = np.fromiter(batch.lons, dtype=np.float64, count=len(batch))
            located = _located(index.locate_many(lats, lons, municipalities=False))
            await subscribers.save_located(conn, batch, located, version)
            total += len(batch)
            last_id = batch.ids[-1]
