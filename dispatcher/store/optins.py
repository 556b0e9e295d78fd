"""E-mail subscriptions by double opt-in, and what a subscriber changes through their own links.

A request from the public form is an ``email_optins`` row; nothing is sent to the
address but the confirmation mail until its owner follows the link, which creates (or
updates) the subscription (:func:`dispatcher.store.subscribers.subscribe`).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from dispatcher.store.subscribers import subscribe


async def request(
    conn: asyncpg.Connection,
    *,
    address: str,
    areas: Sequence[str],
    language: str,
    min_level: int | None,
    token_hash: bytes,
    ttl_seconds: float,
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO email_optins (address, areas, language, min_level, token_hash, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id",
            address,
            list(areas),
            language,
            min_level,
            token_hash,
            ttl_seconds,
        )
    )


async def requests_within(conn: asyncpg.Connection, address: str, seconds: float) -> int:
    """How many confirmations were asked for ``address`` lately (the per-address limit)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM email_optins WHERE lower(address) = lower($1)"
            " AND requested_at > now() - make_interval(secs => $2)",
            address,
            seconds,
        )
    )


async def mail_outcome(conn: asyncpg.Connection, optin_id: int, outcome: str) -> None:
    await conn.execute("UPDATE email_optins SET mail_outcome = $2 WHERE id = $1", optin_id, outcome[:500])


async def confirm(conn: asyncpg.Connection, token_hash: bytes) -> int | None:
    """Turn the request the link names into a subscription; its id, or None (unknown, used or expired)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM email_optins WHERE token_hash = $1 AND confirmed_at IS NULL AND expires_at > now()"
            " FOR UPDATE",
            token_hash,
        )
        if row is None:
            return None
        sid = await subscribe(
            conn, channel="email", address=row["address"], areas=list(row["areas"]), language=row["language"]
        )
        await conn.execute("UPDATE subscriptions SET min_level = $2 WHERE id = $1", sid, row["min_level"])
        await conn.execute(
            "UPDATE email_optins SET confirmed_at = now(), subscription_id = $2 WHERE id = $1", row["id"], sid
        )
        return sid


async def subscription(conn: asyncpg.Connection, subscription_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT s.id, s.address, s.areas, s.located_areas, s.active, s.min_level, sub.language"
        " FROM subscriptions s JOIN subscribers sub ON sub.id = s.subscriber_id"
        " WHERE s.id = $1 AND s.channel = 'email'",
        subscription_id,
    )
    return row


async def change(
    conn: asyncpg.Connection, subscription_id: int, *, areas: Sequence[str], language: str, min_level: int | None
) -> None:
    """What a subscriber chose on their own page (a change also re-activates it)."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE subscriptions SET areas = $2, min_level = $3, active = true, deactivated_at = NULL,"
            " deactivated_reason = NULL, located_areas = '{}', latitude = NULL, longitude = NULL WHERE id = $1",
            subscription_id,
            list(areas),
            min_level,
        )
        await conn.execute(
            "UPDATE subscribers SET language = $2 WHERE id = (SELECT subscriber_id FROM subscriptions WHERE id = $1)",
            subscription_id,
            language,
        )


async def unsubscribe(conn: asyncpg.Connection, subscription_id: int, reason: str) -> bool:
    """Stop sending; True if it was active."""
    result = await conn.execute(
        "UPDATE subscriptions SET active = false, deactivated_at = now(), deactivated_reason = $2"
        " WHERE id = $1 AND channel = 'email' AND active",
        subscription_id,
        reason,
    )
    return str(result).endswith(" 1")
