"""Residents who subscribe themselves from a chat app: settings, places, replies, bot updates.

A resident is one subscription (channel, address) with a ``residents`` row (the
conversation's step, their level), up to five ``resident_places`` (whose codes are
merged into ``subscriptions.areas``), their language in ``subscribers.language``, and
their level and quiet hours also on the subscription (``max_class``, ``quiet_start``,
``quiet_end``) where the fan-out reads them (:mod:`dispatcher.store.fanout`). The rules
are :mod:`dispatcher.residents`'; this module only stores what they decided.

The bots' replies are deliveries without an alert (``reply`` holds text and buttons),
queued here. ``bot_updates`` and ``bot_offsets`` hold what the bots receive, durable
before it is acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg


def _json(value: Any) -> Any:
    """A jsonb value, whether or not the pool decodes jsonb (``dispatcher.store.db`` does)."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class PlaceRow:
    label: str
    codes: tuple[str, ...]
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class ResidentRow:
    """What is stored about one resident."""

    subscription_id: int
    language: str
    step: str
    onboarded: bool
    level: str
    quiet_start: int | None
    quiet_end: int | None
    pending_point: Mapping[str, Any] | None
    places: tuple[PlaceRow, ...]


_LOAD = """
    SELECT s.id, sub.language, r.step, r.onboarded, r.level, s.quiet_start, s.quiet_end, r.pending_point
    FROM subscriptions s JOIN subscribers sub ON sub.id = s.subscriber_id
    JOIN residents r ON r.subscription_id = s.id
    WHERE s.channel = $1 AND s.address = $2
"""
_LOAD_LOCKED = _LOAD + " FOR UPDATE OF r"


async def load(conn: asyncpg.Connection, channel: str, address: str, *, lock: bool = False) -> ResidentRow | None:
    """The resident at (channel, address), or None (not one, or no ``residents`` row).

    ``lock`` takes the row for update: two updates of one chat are decided one at a time.
    """
    row = await conn.fetchrow(_LOAD_LOCKED if lock else _LOAD, channel, address)
    if row is None:
        return None
    places = await conn.fetch(
        "SELECT label, codes, latitude, longitude FROM resident_places WHERE subscription_id = $1 ORDER BY position",
        row["id"],
    )
    pending = row["pending_point"]
    return ResidentRow(
        subscription_id=int(row["id"]),
        language=row["language"],
        step=row["step"],
        onboarded=row["onboarded"],
        level=row["level"],
        quiet_start=row["quiet_start"],
        quiet_end=row["quiet_end"],
        pending_point=None if pending is None else _json(pending),
        places=tuple(PlaceRow(p["label"], tuple(p["codes"]), p["latitude"], p["longitude"]) for p in places),
    )


async def save(
    conn: asyncpg.Connection,
    *,
    channel: str,
    address: str,
    language: str,
    step: str,
    onboarded: bool,
    level: str,
    max_class: int,
    quiet: tuple[int, int] | None,
    pending_point: Mapping[str, Any] | None,
    places: Sequence[PlaceRow],
) -> int:
    """Create or replace everything stored about the resident; return the subscription id.

    The subscription follows the union of the places' codes and is active (a resident
    who writes to the bot again after a provider deactivated them is reachable again).
    """
    areas = list(dict.fromkeys(c for p in places for c in p.codes))
    quiet_start, quiet_end = quiet if quiet is not None else (None, None)
    async with conn.transaction():
        sid = await conn.fetchval(
            "SELECT id FROM subscriptions WHERE channel = $1 AND address = $2 FOR UPDATE", channel, address
        )
        if sid is None:
            subscriber = await conn.fetchval("INSERT INTO subscribers (language) VALUES ($1) RETURNING id", language)
            sid = await conn.fetchval(
                "INSERT INTO subscriptions (subscriber_id, channel, address, areas, max_class, quiet_start, quiet_end)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                subscriber,
                channel,
                address,
                areas,
                max_class,
                quiet_start,
                quiet_end,
            )
        else:
            await conn.execute(
                "UPDATE subscribers SET language = $2"
                " WHERE id = (SELECT subscriber_id FROM subscriptions WHERE id = $1)",
                sid,
                language,
            )
            await conn.execute(
                "UPDATE subscriptions SET areas = $2, max_class = $3, quiet_start = $4, quiet_end = $5, active = true,"
                " deactivated_at = NULL, deactivated_reason = NULL WHERE id = $1",
                sid,
                areas,
                max_class,
                quiet_start,
                quiet_end,
            )
        await conn.execute(
            "INSERT INTO residents (subscription_id, step, onboarded, level, pending_point)"
            " VALUES ($1, $2, $3, $4, $5::text::jsonb)"
            " ON CONFLICT (subscription_id) DO UPDATE SET step = EXCLUDED.step, onboarded = EXCLUDED.onboarded,"
            " level = EXCLUDED.level, pending_point = EXCLUDED.pending_point, updated_at = now()",
            sid,
            step,
            onboarded,
            level,
            json.dumps(pending_point) if pending_point is not None else None,
        )
        await conn.execute("DELETE FROM resident_places WHERE subscription_id = $1", sid)
        if places:
            await conn.execute(
                "INSERT INTO resident_places (subscription_id, position, label, codes, latitude, longitude)"
                " SELECT $1, u.ord - 1, u.label, string_to_array(u.codes, $6), u.lat, u.lon"
                " FROM unnest($2::text[], $3::text[], $4::float8[], $5::float8[]) WITH ORDINALITY"
                " AS u(label, codes, lat, lon, ord)",
                sid,
                [p.label for p in places],
                ["\x1f".join(p.codes) for p in places],
                [p.lat for p in places],
                [p.lon for p in places],
                "\x1f",
            )
    return int(sid)


async def delete(conn: asyncpg.Connection, channel: str, address: str) -> bool:
    """Forget the resident at (channel, address): subscription, places, state, queued replies.

    The subscriber goes too when it has no other subscription. Deliveries already
    made keep their history with the subscription link cleared (the schema's trigger);
    replies not yet sent are deleted with the rest. Returns whether anything was there.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "DELETE FROM subscriptions WHERE channel = $1 AND address = $2 RETURNING subscriber_id", channel, address
        )
        await conn.execute(
            "DELETE FROM deliveries WHERE channel = $1 AND address = $2 AND alert_id IS NULL AND state = 'queued'",
            channel,
            address,
        )
        if row is None:
            return False
        await conn.execute(
            "DELETE FROM subscribers sub WHERE sub.id = $1"
            " AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.subscriber_id = sub.id)",
            row["subscriber_id"],
        )
    return True


async def sync_district_channels(conn: asyncpg.Connection, channel: str, follows: Mapping[str, Sequence[str]]) -> int:
    """Make the district channels' subscriptions exactly ``follows`` (chat → codes); return how many.

    A chat no longer configured is deleted; its deliveries keep their history.
    """
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM subscriptions WHERE channel = $1 AND district_channel AND NOT (address = ANY($2::text[]))",
            channel,
            list(follows),
        )
        for chat, codes in follows.items():
            sid = await conn.fetchval(
                "UPDATE subscriptions SET areas = $3, active = true, district_channel = true, deactivated_at = NULL,"
                " deactivated_reason = NULL WHERE channel = $1 AND address = $2 RETURNING id",
                channel,
                chat,
                list(codes),
            )
            if sid is None:
                subscriber = await conn.fetchval(
                    "INSERT INTO subscribers (display_name, language) VALUES ('district channel', 'ja') RETURNING id"
                )
                await conn.execute(
                    "INSERT INTO subscriptions (subscriber_id, channel, address, areas, district_channel)"
                    " VALUES ($1, $2, $3, $4, true)",
                    subscriber,
                    channel,
                    chat,
                    list(codes),
                )
    return len(follows)


async def kept_points_elsewhere(conn: asyncpg.Connection, layers_version: str) -> list[asyncpg.Record]:
    """Places whose point was kept and matched with other layers than ``layers_version`` (locked)."""
    return list(
        await conn.fetch(
            "SELECT subscription_id, position, latitude, longitude FROM resident_places"
            " WHERE latitude IS NOT NULL AND layers_version IS DISTINCT FROM $1 FOR UPDATE",
            layers_version,
        )
    )


async def rematch_place(
    conn: asyncpg.Connection, subscription_id: int, position: int, codes: Sequence[str], layers_version: str
) -> None:
    """A kept point's new codes; the subscription follows the union of its places' codes again."""
    await conn.execute(
        "UPDATE resident_places SET codes = $3, layers_version = $4 WHERE subscription_id = $1 AND position = $2",
        subscription_id,
        position,
        list(codes),
        layers_version,
    )
    await conn.execute(
        "UPDATE subscriptions s SET areas = ARRAY(SELECT DISTINCT unnest(p.codes) FROM resident_places p"
        " WHERE p.subscription_id = s.id) WHERE s.id = $1",
        subscription_id,
    )


async def rename_address(conn: asyncpg.Connection, channel: str, old: str, new: str) -> bool:
    """The chat at ``old`` now lives at ``new`` (a group became a supergroup); False if ``new`` is taken."""
    result = await conn.execute(
        "UPDATE subscriptions SET address = $3 WHERE channel = $1 AND address = $2"
        " AND NOT EXISTS (SELECT 1 FROM subscriptions o WHERE o.channel = $1 AND o.address = $3)",
        channel,
        old,
        new,
    )
    return bool(result.split()[-1] != "0")


async def queue_replies(
    conn: asyncpg.Connection,
    *,
    channel: str,
    address: str,
    subscription_id: int | None,
    language: str,
    priority: int,
    replies: Sequence[Mapping[str, Any]],
) -> list[int]:
    """Queue each reply (``{"text", "buttons", "edit", …}``) as a delivery of its own, in order."""
    if not replies:
        return []
    rows = await conn.fetch(
        "INSERT INTO deliveries (channel, subscription_id, address, language, priority, reply)"
        " SELECT $1, $2, $3, $4, $5, r::jsonb FROM unnest($6::text[]) WITH ORDINALITY AS u(r, ord)"
        " ORDER BY u.ord RETURNING id",
        channel,
        subscription_id,
        address,
        language,
        priority,
        [json.dumps(r, ensure_ascii=False) for r in replies],
    )
    return [int(r["id"]) for r in rows]


async def replies_by_ids(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The reply payloads of these deliveries (the worker renders them)."""
    rows = await conn.fetch("SELECT id, reply FROM deliveries WHERE id = ANY($1::bigint[])", list(ids))
    return {int(r["id"]): _json(r["reply"]) for r in rows if r["reply"] is not None}


async def recent_alerts(
    conn: asyncpg.Connection, codes: Sequence[str], *, limit: int = 8, days: int = 7
) -> list[asyncpg.Record]:
    """Actual alerts for ``codes`` of the last ``days`` days, plus every broadcast of the last 24 h, newest first."""
    return list(
        await conn.fetch(
            "SELECT id, event, headline, sent, received_at, public_id, source, state::text AS state FROM alerts"
            " WHERE status = 'actual' AND msg_type <> 'cancel' AND ("
            "   (target_codes && $1::text[] AND received_at > now() - make_interval(days => $3))"
            "   OR (source = 'broadcast' AND received_at > now() - interval '24 hours'))"
            " ORDER BY received_at DESC, id DESC LIMIT $2",
            list(codes),
            limit,
            days,
        )
    )


# -- what the bots receive ---------------------------------------------------


async def store_updates(conn: asyncpg.Connection, channel: str, keys: Sequence[str], bodies: Sequence[str]) -> int:
    """Keep updates (JSON text each) not seen before; return how many were new."""
    result = await conn.execute(
        "INSERT INTO bot_updates (channel, update_key, body)"
        " SELECT $1, k, b::jsonb FROM unnest($2::text[], $3::text[]) AS u(k, b)"
        " ON CONFLICT (channel, update_key) DO NOTHING",
        channel,
        list(keys),
        list(bodies),
    )
    return int(result.split()[-1])


async def store_polled(
    conn: asyncpg.Connection, channel: str, keys: Sequence[str], bodies: Sequence[str], next_id: int
) -> int:
    """Updates from getUpdates and the offset that confirms them, in one transaction."""
    async with conn.transaction():
        n = await store_updates(conn, channel, keys, bodies)
        await conn.execute(
            "INSERT INTO bot_offsets (channel, next_id) VALUES ($1, $2)"
            " ON CONFLICT (channel) DO UPDATE SET next_id = GREATEST(bot_offsets.next_id, EXCLUDED.next_id),"
            " updated_at = now()",
            channel,
            next_id,
        )
    return n


async def next_offset(conn: asyncpg.Connection, channel: str) -> int | None:
    """The getUpdates offset to ask for next (None: never polled)."""
    value = await conn.fetchval("SELECT next_id FROM bot_offsets WHERE channel = $1", channel)
    return None if value is None else int(value)


async def claim_updates(conn: asyncpg.Connection, channel: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` unprocessed updates in arrival order, locked until the caller's transaction ends."""
    rows = await conn.fetch(
        "SELECT id, body FROM bot_updates WHERE channel = $1 AND done_at IS NULL ORDER BY id LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        channel,
        limit,
    )
    return [(int(r["id"]), _json(r["body"])) for r in rows]


async def mark_done(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute("UPDATE bot_updates SET done_at = now() WHERE id = ANY($1::bigint[])", list(ids))


async def pending_updates(conn: asyncpg.Connection, channel: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM bot_updates WHERE channel = $1 AND done_at IS NULL", channel))


async def purge_done(conn: asyncpg.Connection, channel: str, *, hours: float = 24.0) -> int:
    """Forget processed updates older than ``hours`` (long past any provider's redelivery)."""
    result = await conn.execute(
        "DELETE FROM bot_updates WHERE channel = $1 AND done_at < now() - make_interval(secs => $2)",
        channel,
        hours * 3600,
    )
    return int(result.split()[-1])
