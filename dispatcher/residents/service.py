"""The I/O side of the residents' conversation: load, decide (pure), store, queue the replies.

:class:`ResidentService` is what a bot adapter calls with a provider-neutral event
(:mod:`dispatcher.residents.conversation`). Each event is handled in one transaction
with the resident's row locked, so two updates of one chat are decided one after the
other and a crash loses or doubles nothing: the new settings and the replies (outbox
deliveries with priority :data:`~dispatcher.residents.REPLY_PRIORITY`) commit together.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

import asyncpg

from channels.templates import Templates, alert_link
from dispatcher.model import JST
from dispatcher.residents import REPLY_PRIORITY
from dispatcher.residents.conversation import (
    Directory,
    Event,
    LatestItem,
    Outcome,
    Place,
    Quiet,
    Reply,
    Request,
    Resident,
    Step,
    handle,
    latest_reply,
)
from dispatcher.residents.directory import GeoDirectory
from dispatcher.residents.levels import Level
from dispatcher.residents.texts import UiTexts
from dispatcher.store import alerts as alert_store
from dispatcher.store import residents as store
from geo import GeoIndex

log = logging.getLogger(__name__)


def reply_payload(reply: Reply, edit_target: str | None = None) -> dict[str, Any]:
    """What a reply delivery stores in ``deliveries.reply`` (and a channel gets in ``Message.extra["reply"]``)."""
    payload: dict[str, Any] = {
        "text": reply.text,
        "buttons": [[{"label": b.label, "data": b.data} for b in row] for row in reply.rows()],
        "edit": reply.edit,
    }
    if reply.edit and edit_target:
        payload["edit_message_id"] = edit_target
    return payload


def to_resident(channel: str, address: str, row: store.ResidentRow) -> Resident:
    pending = row.pending_point
    quiet = None
    if row.quiet_start is not None and row.quiet_end is not None:
        quiet = Quiet(row.quiet_start, row.quiet_end)
    return Resident(
        channel=channel,
        address=address,
        language=row.language if row.step != Step.LANGUAGE or row.onboarded else None,
        places=tuple(Place(p.label, p.codes, p.lat, p.lon) for p in row.places),
        level=Level(row.level),
        quiet=quiet,
        step=Step(row.step),
        onboarded=row.onboarded,
        pending_point=(int(pending["place"]), float(pending["lat"]), float(pending["lon"])) if pending else None,
    )


class ResidentService:
    """Handles residents' events for every bot: the adapters' one entry point.

    ``templates`` and ``public_url`` word /latest (each alert's first line in the
    resident's language and its public link).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        directory: Directory,
        ui: UiTexts,
        templates: Templates,
        public_url: str = "http://127.0.0.1:8080",
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.ui = ui
        self.templates = templates
        self.public_url = public_url

    async def handle_event(
        self,
        channel: str,
        address: str,
        event: Event,
        *,
        conn: asyncpg.Connection | None = None,
        edit_target: str | None = None,
    ) -> list[Reply]:
        """Decide ``event``, store the result and queue the replies; return the replies queued.

        ``edit_target``: the provider's id of the message whose button was pressed; a
        reply marked ``edit`` carries it as ``edit_message_id`` (Telegram edits it in place).
        Inside ``conn``'s transaction, if given (a savepoint), else on a connection of its own.
        """
        if conn is None:
            async with self.pool.acquire() as own:
                return await self.handle_event(channel, address, event, conn=own, edit_target=edit_target)
        async with conn.transaction():
            row = await store.load(conn, channel, address, lock=True)
            resident = to_resident(channel, address, row) if row is not None else None
            out = handle(resident, event, channel=channel, address=address, directory=self.directory, ui=self.ui)
            replies = list(out.replies)
            if out.request is Request.LATEST and out.resident is not None:
                replies.append(await self._latest(conn, out.resident))
            sid = await self._store(conn, channel, address, out, row)
            lang = out.resident.lang if out.resident is not None else (resident.lang if resident else "ja")
            await store.queue_replies(
                conn,
                channel=channel,
                address=address,
                subscription_id=sid,
                language=lang,
                priority=REPLY_PRIORITY,
                replies=[reply_payload(r, edit_target) for r in replies],
            )
        return replies

    async def _store(
        self, conn: asyncpg.Connection, channel: str, address: str, out: Outcome, row: store.ResidentRow | None
    ) -> int | None:
        r = out.resident
        if r is None:
            if out.changed or row is not None:
                await store.delete(conn, channel, address)
                log.info("resident deleted", extra={"channel": channel})
            return None
        if not out.changed and row is not None:
            return row.subscription_id
        pending = None
        if r.pending_point is not None:
            pending = {"place": r.pending_point[0], "lat": r.pending_point[1], "lon": r.pending_point[2]}
        return await store.save(
            conn,
            channel=channel,
            address=address,
            language=r.lang,
            step=str(r.step),
            onboarded=r.onboarded,
            level=str(r.level),
            max_class=r.level.max_class,
            quiet=(r.quiet.start, r.quiet.end) if r.quiet else None,
            pending_point=pending,
            places=[store.PlaceRow(p.label, p.codes, p.lat, p.lon) for p in r.places],
        )

    async def _latest(self, conn: asyncpg.Connection, resident: Resident) -> Reply:
        rows = await store.recent_alerts(conn, resident.codes)
        alerts = await alert_store.alerts_by_ids(conn, [int(r["id"]) for r in rows])
        items: list[LatestItem] = []
        for row in rows:
            alert = alerts.get(int(row["id"]))
            if alert is None:
                continue
            alert = dataclasses.replace(alert, public_id=row["public_id"])
            subject, _ = self.templates.compose(
                alert, resident.lang, max_length=300, link=alert_link(self.public_url, alert)
            )
            items.append(LatestItem(_when(row["received_at"]), subject, alert_link(self.public_url, alert)))
        return latest_reply(resident, items, self.ui)


def _when(at: datetime) -> str:
    return at.astimezone(JST).strftime("%m/%d %H:%M")


async def relocate_kept_points(conn: asyncpg.Connection, index: GeoIndex) -> int:
    """Re-match the points residents asked to keep with the current geo layers; return how many.

    Only points matched with other layers (``resident_places.layers_version``) are looked at,
    so this is cheap when nothing changed. A point now outside the city keeps its old codes.
    """
    directory = GeoDirectory(index)
    async with conn.transaction():
        rows = await store.kept_points_elsewhere(conn, index.version)
        for row in rows:
            match = directory.locate(row["latitude"], row["longitude"])
            if match.district is None:
                continue
            codes = list(dict.fromkeys((match.district.code, *match.zone_codes)))
            await store.rematch_place(conn, row["subscription_id"], row["position"], codes, index.version)
    return len(rows)


__all__ = ["ResidentService", "relocate_kept_points", "reply_payload", "to_resident"]
