"""What ``/metrics`` reads from PostgreSQL at scrape time, and the settling of delivery latencies.

The gauges are read when Prometheus scrapes (:class:`dispatcher.metrics.DatabaseCollector`),
each query cheap: alerts are few; the queue depth counts only ``queued`` rows through the
partial index ``deliveries_queue``; ``channel_state`` has a row per channel. Deliveries by
state count the whole table (the collector caches the answer for a few seconds).

:func:`settle` writes ``delivery_latency`` (migration 0014): an alert's first and last
delivery on a channel, once nothing of it is left to send there, exactly once whichever
daemon asks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class Settled:
    """An alert whose deliveries on a channel are all done: seconds from its receipt to the first and last."""

    alert_id: int
    first_seconds: float
    last_seconds: float
    delivered: int


async def alerts_by_kind(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Stored alerts by source, kind (the JMA telegram type, e.g. VPWW54), message type and status."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT source, kind, msg_type::text AS msg_type, status::text AS status, count(*) AS n"
        " FROM alerts GROUP BY 1, 2, 3, 4"
    )
    return rows


async def deliveries_by_state(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every delivery by channel and state (a scan of the table)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT channel, state::text AS state, count(*) AS n FROM deliveries GROUP BY 1, 2"
    )
    return rows


async def queue_depth(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Queued deliveries by channel and priority, due now or later (the partial index deliveries_queue)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT channel, priority, count(*) AS n FROM deliveries WHERE state = 'queued' GROUP BY 1, 2"
    )
    return rows


async def sending(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Deliveries claimed and not yet answered, by channel (the partial index deliveries_sending)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT channel, count(*) AS n FROM deliveries WHERE state = 'sending' GROUP BY 1"
    )
    return rows


async def settle(conn: asyncpg.Connection, channel: str, alert_ids: Sequence[int]) -> tuple[list[int], list[Settled]]:
    """Of ``alert_ids``, those still open on ``channel`` (something queued or sending), and those this call settled.

    A settled alert gets its row in ``delivery_latency`` (first and last ``delivered``
    row's time, from the deliveries themselves); an alert another daemon settled, or
    with nothing delivered on the channel, is in neither list.
    """
    rows = await conn.fetch(
        """
        WITH cand AS (SELECT DISTINCT unnest($1::bigint[]) AS alert_id),
        open AS (
            SELECT c.alert_id FROM cand c WHERE EXISTS (
                SELECT 1 FROM deliveries d
                WHERE d.alert_id = c.alert_id AND d.channel = $2 AND d.state IN ('queued', 'sending'))
        ),
        stats AS (
            SELECT d.alert_id, min(d.updated_at) AS first_at, max(d.updated_at) AS last_at, count(*) AS n
            FROM deliveries d
            WHERE d.alert_id IN (SELECT alert_id FROM cand EXCEPT SELECT alert_id FROM open)
              AND d.channel = $2 AND d.state = 'delivered'
            GROUP BY d.alert_id
        ),
        ins AS (
            INSERT INTO delivery_latency (alert_id, channel, received_at, first_delivered_at, last_delivered_at,
                                          delivered)
            SELECT s.alert_id, $2, a.received_at, s.first_at, s.last_at, s.n
            FROM stats s JOIN alerts a ON a.id = s.alert_id
            ON CONFLICT (alert_id, channel) DO NOTHING
            RETURNING alert_id, extract(epoch FROM first_delivered_at - received_at)::float8 AS first_s,
                      extract(epoch FROM last_delivered_at - received_at)::float8 AS last_s, delivered
        )
        SELECT true AS open, alert_id, NULL::float8 AS first_s, NULL::float8 AS last_s, 0 AS delivered FROM open
        UNION ALL
        SELECT false, alert_id, first_s, last_s, delivered FROM ins
        """,
        list(alert_ids),
        channel,
    )
    still_open = [r["alert_id"] for r in rows if r["open"]]
    settled = [
        Settled(r["alert_id"], max(0.0, r["first_s"]), max(0.0, r["last_s"]), r["delivered"])
        for r in rows
        if not r["open"]
    ]
    return still_open, settled


async def latencies(conn: asyncpg.Connection, alert_id: int) -> list[asyncpg.Record]:
    """An alert's settled first and last delivery per channel (``delivery_latency``)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT channel, received_at, first_delivered_at, last_delivered_at, delivered, settled_at"
        " FROM delivery_latency WHERE alert_id = $1 ORDER BY channel",
        alert_id,
    )
    return rows
