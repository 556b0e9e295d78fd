"""What ``dispatcher reconcile`` compares with the providers: the deliveries the database calls delivered."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def delivered_since(conn: asyncpg.Connection, since: datetime) -> list[asyncpg.Record]:
    """Every delivery recorded as delivered at or after ``since``, with what a cancel did to its post."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT d.id, d.alert_id, d.channel, d.language, d.remote_id, d.updated_at, p.retracted
        FROM deliveries d
        LEFT JOIN channel_posts p ON p.channel = d.channel AND p.remote_id = d.remote_id
        WHERE d.state = 'delivered' AND d.updated_at >= $1
        ORDER BY d.id
        """,
        since,
    )
    return rows
