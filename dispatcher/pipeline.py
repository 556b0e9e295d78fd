"""The ingest pipeline: store the alert, resolve its series, target, fan out.

Every source hands alerts to :meth:`Pipeline.ingest` (through ``ctx.emit``).
All of it happens in one transaction, so an alert is durable together with its
deliveries, or not at all; the delivery triggers ``NOTIFY`` the workers on
commit. Back-pressure is natural: ``ingest`` returns when the database has
taken the alert, and a busy database makes the source wait; nothing is dropped.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from dispatcher.model import Alert, MsgType
from dispatcher.store import alerts as alert_store
from dispatcher.store import outbox

log = logging.getLogger(__name__)


class Targeter(Protocol):
    """Turns an alert's areas into the codes subscriptions name."""

    def target_codes(self, alert: Alert) -> tuple[list[str], list[str]]:
        """Return (codes to match against subscriptions, codes nobody knows)."""
        ...


class CodeTargeter:
    """Target by area codes, expanded by ``expand`` (e.g. JMA tables, geo layers)."""

    def __init__(self, *expanders: Expander) -> None:
        self._expanders = expanders

    def target_codes(self, alert: Alert) -> tuple[list[str], list[str]]:
        codes = set(alert.area_codes)
        known: set[str] = set()
        for expand in self._expanders:
            found, recognised = expand.expand(alert)
            codes |= found
            known |= recognised
        unknown = sorted(set(alert.area_codes) - known) if self._expanders else []
        return sorted(codes), unknown


class Expander(Protocol):
    def expand(self, alert: Alert) -> tuple[set[str], set[str]]:
        """Return (extra target codes, the alert codes this expander recognised)."""
        ...


class Outcome(enum.StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    STALE = "stale"
    HELD = "held"


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    alert_id: int | None = None
    deliveries: int = 0
    replaced: tuple[int, ...] = ()
    unknown_codes: tuple[str, ...] = ()


class Pipeline:
    """Stores alerts and fans them out to the enabled channels."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        targeter: Targeter,
        channels: Sequence[str],
        broadcast_channels: Sequence[str] = (),
    ) -> None:
        self.pool = pool
        self.targeter = targeter
        self.channels = list(channels)
        self.broadcast_channels = list(broadcast_channels)

    async def ingest(self, alert: Alert, *, document_id: int | None = None, hold: bool = False) -> IngestResult:
        targets, unknown = self.targeter.target_codes(alert)
        extra: dict[str, Any] = {"alert": alert.identifier, "event": alert.event, "source": alert.source}
        if unknown:
            log.warning("alert names unknown area codes", extra={**extra, "codes": ",".join(unknown)})
        async with self.pool.acquire() as conn, conn.transaction():
            alert_id = await alert_store.insert_alert(
                conn, alert, target_codes=targets, document_id=document_id, state="held" if hold else "active"
            )
            if alert_id is None:
                log.info("alert already stored", extra=extra)
                return IngestResult(Outcome.DUPLICATE)
            extra["alert_id"] = alert_id
            if alert.series_key:
                # Telegrams of one series are fetched concurrently: decide "newest
                # wins" one at a time per series.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", alert.series_key)
            if alert.series_key and await alert_store.newer_in_series(conn, alert.series_key, alert.sent, alert_id):
                await conn.execute("UPDATE alerts SET state = 'stale' WHERE id = $1", alert_id)
                log.info("older telegram of a series arrived late: stored, not sent", extra=extra)
                return IngestResult(Outcome.STALE, alert_id, unknown_codes=tuple(unknown))
            replaced = await alert_store.replaced_alerts(conn, alert, alert_id)
            if replaced:
                await alert_store.mark_replaced(conn, replaced, alert_id, alert.msg_type is MsgType.CANCEL)
                n = await outbox.supersede_queued(conn, replaced, f"replaced by alert {alert_id}")
                log.info("alert replaces earlier ones", extra={**extra, "replaced": replaced, "superseded": n})
            if hold:
                log.info("alert held for approval", extra=extra)
                return IngestResult(Outcome.HELD, alert_id, replaced=tuple(replaced), unknown_codes=tuple(unknown))
            count = await self._fan_out(conn, alert, alert_id, targets, replaced)
        log.info("alert queued", extra={**extra, "deliveries": count, "priority": int(alert.priority)})
        return IngestResult(Outcome.QUEUED, alert_id, count, tuple(replaced), tuple(unknown))

    async def release(self, alert_id: int) -> IngestResult:
        """Fan out a held alert (approval)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
            if row is None:
                raise LookupError(f"no alert with id {alert_id}")
            if row["state"] != "held":
                raise ValueError(f"alert {alert_id} is {row['state']}, not held")
            alert = alert_store.row_to_alert(row)
            await conn.execute("UPDATE alerts SET state = 'active' WHERE id = $1", alert_id)
            replaced = [
                int(r["id"]) for r in await conn.fetch("SELECT id FROM alerts WHERE replaced_by = $1", alert_id)
            ]
            count = await self._fan_out(conn, alert, alert_id, list(row["target_codes"]), replaced)
        log.info("held alert released", extra={"alert_id": alert_id, "deliveries": count})
        return IngestResult(Outcome.QUEUED, alert_id, count, tuple(replaced))

    def channels_for(self, alert: Alert) -> tuple[list[str], list[str]]:
        """The enabled (per-person, broadcast) channels that carry ``alert``.

        ``details["channels"]`` (a list of channel names, e.g. from ``[broadcast.routes]``)
        restricts an alert to those channels; absent, every enabled channel carries it.
        Followers of a replaced alert are not restricted: whoever got the original gets
        its update or cancellation on the same channel.
        """
        allowed = alert.details.get("channels")
        if not isinstance(allowed, list | tuple):
            return self.channels, self.broadcast_channels
        wanted = {str(c) for c in allowed}
        return [c for c in self.channels if c in wanted], [c for c in self.broadcast_channels if c in wanted]

    async def _fan_out(
        self, conn: asyncpg.Connection, alert: Alert, alert_id: int, targets: Iterable[str], replaced: Sequence[int]
    ) -> int:
        priority = int(alert.priority)
        channels, broadcast_channels = self.channels_for(alert)
        count = await outbox.fan_out(
            conn,
            alert_id=alert_id,
            priority=priority,
            channels=channels,
            target_codes=list(targets),
            public=alert.is_public,
        )
        if alert.is_public and broadcast_channels:
            count += await outbox.fan_out_broadcast(
                conn, alert_id=alert_id, priority=priority, channels=broadcast_channels
            )
        if replaced:
            count += await outbox.fan_out_followers(conn, alert_id=alert_id, priority=priority, replaced=replaced)
        return count
