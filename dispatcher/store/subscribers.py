"""Subscribers and their subscriptions (one per channel address)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


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

    Re-subscribing reactivates a subscription a provider had deactivated.
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
                " deactivated_reason = NULL WHERE id = $1",
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
