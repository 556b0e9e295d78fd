"""Providers' monthly message quotas (LINE), as the channels last read them: for operators.

A channel with a quota (:mod:`channels.quota`) records every reading through
:class:`StoreQuotaBook`; ``dispatcher status``, ``/api/quotas`` and the dashboard read
them back with :func:`channel_quotas`, whichever daemon made the reading.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict

import asyncpg

from channels.quota import Quota


class QuotaRow(TypedDict):
    """One channel's quota as operators read it (JSON-ready)."""

    channel: str
    plan: str
    quota: int | None
    used: int
    remaining: int | None
    percent: float | None
    read_at: str
    held: str | None


class StoreQuotaBook:
    """The :class:`channels.quota.QuotaBook` of the daemon: one row per channel in ``channel_quotas``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, channel: str, quota: Quota) -> None:
        async with self.pool.acquire() as conn:
            await record_quota(conn, channel, quota)


async def record_quota(conn: asyncpg.Connection, channel: str, quota: Quota) -> None:
    read_at = datetime.fromtimestamp(quota.read_at, UTC) if quota.read_at else datetime.now(UTC)
    await conn.execute(
        "INSERT INTO channel_quotas (channel, plan, quota, used, read_at, held) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (channel) DO UPDATE SET plan = EXCLUDED.plan, quota = EXCLUDED.quota, used = EXCLUDED.used,"
        " read_at = EXCLUDED.read_at, held = EXCLUDED.held",
        channel,
        quota.plan,
        quota.limit,
        quota.used,
        read_at,
        quota.held,
    )


async def channel_quotas(conn: asyncpg.Connection) -> list[QuotaRow]:
    """Every channel's last quota reading, by name."""
    rows = await conn.fetch("SELECT * FROM channel_quotas ORDER BY channel")
    out: list[QuotaRow] = []
    for r in rows:
        limit = r["quota"]
        used = int(r["used"])
        out.append(
            QuotaRow(
                channel=r["channel"],
                plan=r["plan"],
                quota=limit,
                used=used,
                remaining=None if limit is None else max(0, limit - used),
                percent=None if not limit else round(100 * used / limit, 1),
                read_at=r["read_at"].isoformat(),
                held=r["held"],
            )
        )
    return out
