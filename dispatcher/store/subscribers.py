"""Subscribers and their subscriptions (one per channel address) in PostgreSQL.

A subscription follows the codes in ``areas``: what the subscriber chose (JMA
municipality codes, district codes, zone ids) and, when they shared a location, the
district codes and hazard-zone ids found there. ``located_areas`` holds the codes the
location added, so ``areas - located_areas`` is always what the subscriber chose, and
``layers_version`` the geo layers they were found with. The matching itself is
:mod:`dispatcher.locations`' (with :mod:`geo`), once on subscribing and again after a
layer changed; this module stores what it found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

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
    what it follows, dropping a location it had (see :func:`subscribe_located`).
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


def merge_areas(chosen: Sequence[str], located: Sequence[str]) -> tuple[list[str], list[str]]:
    """(areas, located_areas): the chosen codes, then the located ones not chosen."""
    areas = list(dict.fromkeys(chosen))
    added = [c for c in dict.fromkeys(located) if c not in set(areas)]
    return areas + added, added


async def subscribe_located(
    conn: asyncpg.Connection,
    *,
    channel: str,
    address: str,
    lat: float,
    lon: float,
    located: Sequence[str],
    layers_version: str,
    areas: Sequence[str] = (),
    language: str = "ja",
    display_name: str = "",
    test_recipient: bool = False,
    subscriber_id: int | None = None,
) -> int:
    """Subscribe ``address`` to ``areas`` plus the codes ``located`` at (lat, lon) by layers ``layers_version``."""
    all_areas, added = merge_areas(areas, located)
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
            layers_version,
        )
    return sid


@dataclass(frozen=True, slots=True)
class LocatedBatch:
    """Located subscriptions whose codes came from other layers: ids, points, and what each subscriber chose."""

    ids: list[int]
    lats: list[float]
    lons: list[float]
    chosen: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)


async def located_elsewhere(
    conn: asyncpg.Connection, layers_version: str, *, after_id: int, limit: int
) -> LocatedBatch:
    """Up to ``limit`` located subscriptions after ``after_id`` not matched with ``layers_version``, by id.

    The rows stay locked until the caller's transaction ends.
    """
    rows = await conn.fetch(
        "SELECT id, latitude, longitude, areas, located_areas FROM subscriptions"
        " WHERE latitude IS NOT NULL AND id > $1 AND layers_version IS DISTINCT FROM $2"
        " ORDER BY id LIMIT $3 FOR UPDATE",
        after_id,
        layers_version,
        limit,
    )
    chosen = []
    for row in rows:
        old_added = set(row["located_areas"])
        chosen.append([a for a in row["areas"] if a not in old_added])
    return LocatedBatch(
        [int(r["id"]) for r in rows], [r["latitude"] for r in rows], [r["longitude"] for r in rows], chosen
    )


async def save_located(
    conn: asyncpg.Connection, batch: LocatedBatch, located: Sequence[Sequence[str]], layers_version: str
) -> None:
    """Store what each subscription of ``batch`` follows now: its chosen codes, then ``located``."""
    new_areas, new_located = [], []
    for chosen, codes in zip(batch.chosen, located, strict=True):
        areas, added = merge_areas(chosen, codes)
        new_areas.append(_SEP.join(areas))
        new_located.append(_SEP.join(added))
    await conn.execute(
        "UPDATE subscriptions s SET areas = string_to_array(u.areas, $4),"
        " located_areas = string_to_array(u.located, $4), layers_version = $5"
        " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, areas, located) WHERE s.id = u.id",
        batch.ids,
        new_areas,
        new_located,
        _SEP,
        layers_version,
    )


async def areas_of(conn: asyncpg.Connection, subscription_id: int) -> list[str]:
    """The codes a subscription follows."""
    return list(await conn.fetchval("SELECT areas FROM subscriptions WHERE id = $1", subscription_id) or [])


# The audience predicate of dispatcher.store.fanout.fan_out, word for word; the
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


async def forget(conn: asyncpg.Connection, *, channel: str, address: str) -> int:
    """Delete what the service keeps about ``address`` on ``channel``; return the subscriptions deleted.

    The subscription goes, and its subscriber when nothing else is left of them; no alert
    still queued is sent to the address; past deliveries keep their outcome but lose the
    address (replaced by ``forgotten-<delivery id>``). A bot reply still queued (the
    goodbye after ``stop``) keeps it until it is sent.
    """
    async with conn.transaction():
        owners = await conn.fetch(
            "DELETE FROM subscriptions WHERE channel = $1 AND address = $2 RETURNING subscriber_id", channel, address
        )
        await conn.execute(
            "DELETE FROM subscribers s WHERE s.id = ANY($1::bigint[])"
            " AND NOT EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id)",
            [r["subscriber_id"] for r in owners],
        )
        await conn.execute(
            "UPDATE deliveries SET state = 'failed', last_error = 'the recipient left (their data was deleted)',"
            " updated_at = now() WHERE channel = $1 AND address = $2 AND state = 'queued' AND alert_id IS NOT NULL",
            channel,
            address,
        )
        # Not a transition: no delivery event (dispatcher.quiet_update).
        await conn.execute(
            "WITH quiet AS (SELECT set_config('dispatcher.quiet_update', 'on', true))"
            " UPDATE deliveries d SET address = 'forgotten-' || d.id FROM quiet"
            " WHERE d.channel = $1 AND d.address = $2 AND d.state <> 'sending'"
            " AND NOT (d.alert_id IS NULL AND d.state = 'queued')",
            channel,
            address,
        )
    return len(owners)
