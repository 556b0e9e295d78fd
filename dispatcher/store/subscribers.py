"""Subscribers and their subscriptions (one per channel address).

A subscription follows the codes in ``areas``: what the subscriber chose (JMA
municipality codes, district codes, zone ids) and, when they shared a location, the
district codes and hazard-zone ids found there. The location is matched against the geo
layers once, here, not when an alert is sent: :func:`subscribe_location` on subscribing,
:func:`relocate_all` after a layer changed (``GeoIndex.version`` differs from the
subscription's ``layers_version``). ``located_areas`` holds the codes the location added,
so ``areas - located_areas`` is always what the subscriber chose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import asyncpg
import numpy as np

if TYPE_CHECKING:
    from geo import GeoIndex, LocateResult

# Separates codes inside one text value when whole batches of arrays are passed to
# PostgreSQL (ragged arrays cannot be a 2-D parameter). No code contains it.
_SEP = "\x1f"


async def subscribe(
    conn: asyncpg.Connection,
    *,
    channel: str,
    address: str,
    areas: Sequence[str],
    language: str = "ja",
    display_name: str = "",
    test_recipient: bool = False,
    subscriber_id: int | None = None,
) -> int:
    """Create or update the subscription of ``address`` on ``channel``; return its id.

    Re-subscribing reactivates a subscription a provider had deactivated and replaces
    what it follows, dropping a location it had (see :func:`subscribe_location`).
    """
    async with conn.transaction():
        existing = await conn.fetchrow(
            "SELECT id, subscriber_id FROM subscriptions WHERE channel = $1 AND address = $2", channel, address
        )
        if existing is not None:
            sid = existing["subscriber_id"]
            await conn.execute(
                "UPDATE subscribers SET language = $2, display_name = COALESCE(NULLIF($3, ''), display_name)"
                " WHERE id = $1",
                sid,
                language,
                display_name,
            )
            await conn.execute(
                "UPDATE subscriptions SET areas = $2, active = true, test_recipient = $3, deactivated_at = NULL,"
                " deactivated_reason = NULL, latitude = NULL, longitude = NULL, located_areas = '{}',"
                " layers_version = NULL WHERE id = $1",
                existing["id"],
                list(areas),
                test_recipient,
            )
            return int(existing["id"])
        if subscriber_id is None:
            subscriber_id = await conn.fetchval(
                "INSERT INTO subscribers (display_name, language) VALUES ($1, $2) RETURNING id", display_name, language
            )
        return int(
            await conn.fetchval(
                "INSERT INTO subscriptions (subscriber_id, channel, address, areas, test_recipient)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                subscriber_id,
                channel,
                address,
                list(areas),
                test_recipient,
            )
        )


def _located(result: LocateResult) -> list[list[str]]:
    """Per point, its district codes then its zone ids (layer order)."""
    codes: list[list[str]] = [[] for _ in range(result.n)]
    for hits in (result.districts, *result.zones):
        names = hits.layer.codes
        for point, feature in zip(hits.points.tolist(), hits.features.tolist(), strict=True):
            codes[point].append(names[feature])
    return codes


def _merge(chosen: Sequence[str], located: Sequence[str]) -> tuple[list[str], list[str]]:
    """(areas, located_areas): the chosen codes, then the located ones not chosen."""
    areas = list(dict.fromkeys(chosen))
    added = [c for c in dict.fromkeys(located) if c not in set(areas)]
    return areas + added, added


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
    all_areas, added = _merge(areas, [*location.district_codes, *location.zone_ids])
    async with conn.transaction():
        sid = await subscribe(
            conn,
            channel=channel,
            address=address,
            areas=all_areas,
            language=language,
            display_name=display_name,
            test_recipient=test_recipient,
            subscriber_id=subscriber_id,
        )
        await conn.execute(
            "UPDATE subscriptions SET latitude = $2, longitude = $3, located_areas = $4, layers_version = $5"
            " WHERE id = $1",
            sid,
            lat,
            lon,
            added,
            index.version,
        )
    return sid


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
            rows = await conn.fetch(
                "SELECT id, latitude, longitude, areas, located_areas FROM subscriptions"
                " WHERE latitude IS NOT NULL AND id > $1 AND layers_version IS DISTINCT FROM $2"
                " ORDER BY id LIMIT $3 FOR UPDATE",
                last_id,
                version,
                batch_size,
            )
            if not rows:
                return total
            lats = np.fromiter((r["latitude"] for r in rows), dtype=np.float64, count=len(rows))
            lons = np.fromiter((r["longitude"] for r in rows), dtype=np.float64, count=len(rows))
            located = _located(index.locate_many(lats, lons, municipalities=False))
            ids, new_areas, new_located = [], [], []
            for row, codes in zip(rows, located, strict=True):
                old_added = set(row["located_areas"])
                chosen = [a for a in row["areas"] if a not in old_added]
                areas, added = _merge(chosen, codes)
                ids.append(row["id"])
                new_areas.append(_SEP.join(areas))
                new_located.append(_SEP.join(added))
            await conn.execute(
                "UPDATE subscriptions s SET areas = string_to_array(u.areas, $4),"
                " located_areas = string_to_array(u.located, $4), layers_version = $5"
                " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, areas, located) WHERE s.id = u.id",
                ids,
                new_areas,
                new_located,
                _SEP,
                version,
            )
            total += len(rows)
            last_id = rows[-1]["id"]


# The audience predicate of dispatcher.store.outbox.fan_out, word for word; the
# integration tests check that both count the same subscriptions.
AUDIENCE_SQL = """
    SELECT s.channel, count(*) AS n
    FROM subscriptions s JOIN subscribers sub ON sub.id = s.subscriber_id
    WHERE s.active AND s.channel = ANY($1::text[]) AND s.areas && $2::text[]
      AND ($3 OR s.test_recipient)
    GROUP BY s.channel
"""


async def audience(
    conn: asyncpg.Connection, target_codes: Sequence[str], *, public: bool, channels: Sequence[str] | None = None
) -> Mapping[str, int]:
    """Active subscriptions an alert with these target codes reaches, per channel.

    ``channels`` None means every channel that has subscriptions. Exercise and test
    alerts (``public`` false) reach only test recipients, as in the fan-out.
    """
    if channels is None:
        channels = [r["channel"] for r in await conn.fetch("SELECT DISTINCT channel FROM subscriptions")]
    rows = await conn.fetch(AUDIENCE_SQL, list(channels), list(target_codes), public)
    return {r["channel"]: int(r["n"]) for r in rows}
