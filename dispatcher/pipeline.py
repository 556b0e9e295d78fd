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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import asyncpg

from dispatcher.folding import alert_level, issuance_key, place_levels
from dispatcher.model import Alert, Area, Document, MsgType
from dispatcher.residents.levels import alert_class
from dispatcher.store import alerts as alert_store
from dispatcher.store import documents, fanout, locks
from dispatcher.store.alerts import mint_public_id
from dispatcher.validate import InvalidAlert, check_alert

log = logging.getLogger(__name__)


class Targeter(Protocol):
    """Turns an alert's areas into the codes subscriptions name."""

    def target_codes(self, alert: Alert) -> tuple[list[str], list[str]]:
        """Return (codes to match against subscriptions, codes nobody knows)."""
        ...

    def places(self, alert: Alert) -> Places:
        """For each target code, which of the alert's areas concerns a subscriber who follows it."""
        ...


@dataclass(frozen=True, slots=True)
class Places:
    """Which area of an alert is a subscriber's place: ``codes[i]`` → ``alert.areas[places[i]]``.

    A subscriber following several codes of an alert gets the most specific area among
    them (the one reaching the fewest codes: 沼津市 rather than 静岡県), so that the
    message says first what applies where they are.
    """

    codes: list[str]
    places: list[int]

    @property
    def uniform(self) -> int | None:
        """The one place every code leads to, when there is only one (-1: none)."""
        distinct = set(self.places)
        if len(distinct) > 1:
            return None
        return next(iter(distinct), -1)


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

    def places(self, alert: Alert) -> Places:
        if len(alert.areas) <= 1:
            codes, _unknown = self.target_codes(alert)
            return Places(codes, [0] * len(codes) if alert.areas else [-1] * len(codes))
        reach: list[tuple[int, int, set[str]]] = []
        for i, area in enumerate(alert.areas):
            found = set(area.codes)
            for expand in self._expanders:
                found |= expand.expand(replace_areas(alert, area), report=False)[0]
            reach.append((len(found), i, found))
        best: dict[str, int] = {}
        for _size, i, found in sorted(reach):
            for code in found:
                best.setdefault(code, i)
        codes = sorted(best)
        return Places(codes, [best[c] for c in codes])


def replace_areas(alert: Alert, *areas: Area) -> Alert:
    """``alert`` with only ``areas`` (to expand one area at a time)."""
    return replace(alert, areas=areas)


class Expander(Protocol):
    """One way of finding the codes an alert reaches (JMA tables, geo layers)."""

    def expand(self, alert: Alert, *, report: bool = True) -> tuple[set[str], set[str]]:
        """Return (extra target codes, the alert codes this expander recognised); ``report``: log problems."""
        ...


class Outcome(enum.StrEnum):
    """What :meth:`Pipeline.ingest` did with an alert."""

    QUEUED = "queued"
    # The alert (sender, identifier) is stored already.
    DUPLICATE = "duplicate"
    # The pushed document (source, url) was received already, with its alert.
    REPLAY = "replay"
    STALE = "stale"
    HELD = "held"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """An ingest's outcome, the stored alert's id and public id, and what its fan-out did."""

    outcome: Outcome
    alert_id: int | None = None
    deliveries: int = 0
    replaced: tuple[int, ...] = ()
    unknown_codes: tuple[str, ...] = ()
    public_id: str | None = None
    # References this alert may not honour (another source, sender or status), reported.
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Replacement:
    """Which candidates an update, cancel or newer telegram replaces, and which it may not touch."""

    replaced: list[int]
    refused: list[str]


def fence(alert: Alert, candidates: Sequence[Mapping[str, Any]]) -> Replacement:
    """Decide which ``candidates`` (current alerts ``alert`` names or follows in its series) it replaces.

    An alert replaces only alerts of its own source and sender and of its own status:
    exercise, test and draft traffic never touches an actual alert, nor the reverse,
    and nobody else's identifier means anything to a sender. Every candidate it may
    not replace is refused with the reason, for the log, the alert's details and the
    operators' page; a reference that names nothing current is reported too.
    """
    replaced: list[int] = []
    refused: list[str] = []
    matched: set[str] = set()
    for c in candidates:
        names = {c["identifier"], c["series_key"]} & set(alert.references)
        matched |= names
        why = []
        if c["source"] != alert.source:
            why.append(f"source {c['source']!r}, not {alert.source!r}")
        if c["sender"] != alert.sender:
            why.append(f"sender {c['sender']!r}, not {alert.sender!r}")
        if c["status"] != alert.status.value:
            why.append(f"status {c['status']}, not {alert.status.value}")
        if not why:
            replaced.append(int(c["id"]))
            continue
        what = f"reference {sorted(names)[0]!r}" if names else "series"
        refused.append(f"{what} names alert #{c['id']} of another {' and '.join(why)}: not replaced")
    refused.extend(
        f"reference {ref!r} names no current alert of this sender"
        for ref in alert.references
        if ref not in matched and alert.msg_type is not MsgType.ALERT
    )
    return Replacement(replaced, refused)


def default_classify(alert: Alert) -> int:
    """The alert's class for residents of 沼津市 with the default thresholds (app.py passes the configured ones)."""
    return alert_class(alert, city_codes=("2220300",))


class Pipeline:
    """Stores alerts and fans them out to the enabled channels."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        targeter: Targeter,
        channels: Sequence[str],
        broadcast_channels: Sequence[str] = (),
        classify: Callable[[Alert], int] | None = None,
    ) -> None:
        self.pool = pool
        self.targeter = targeter
        self.channels = list(channels)
        self.broadcast_channels = list(broadcast_channels)
        # The alert's class for residents' levels and quiet hours (dispatcher/residents/levels.py).
        self.classify = classify or default_classify

    async def ingest(self, alert: Alert, *, document: Document | None = None, hold: bool = False) -> IngestResult:
        """Store ``alert`` (with ``document``), resolve what it replaces, fan it out: one transaction.

        Raises :class:`~dispatcher.validate.InvalidAlert` when a field cannot be
        stored as it is: found by :func:`~dispatcher.validate.check_alert` before
        the database is touched, or, should a value get past it, refused by
        PostgreSQL (then nothing of the transaction remains).
        """
        check_alert(alert)
        try:
            return await self._ingest(alert, document, hold)
        except (asyncpg.DataError, asyncpg.ProgramLimitExceededError) as exc:
            log.error(
                "the database refused a value of an alert that passed validation",
                extra={
                    "event": "alert.refused_by_database",
                    "alert": alert.identifier,
                    "source": alert.source,
                    "error": str(exc),
                },
            )
            raise InvalidAlert(f"a value cannot be stored: {exc}") from None

    async def _ingest(self, alert: Alert, document: Document | None, hold: bool) -> IngestResult:
        targets, unknown = self.targeter.target_codes(alert)
        extra: dict[str, Any] = {"alert": alert.identifier, "alert_event": alert.event, "source": alert.source}
        if unknown:
            log.warning(
                "alert names unknown area codes",
                extra={**extra, "event": "alert.unknown_codes", "codes": ",".join(unknown)},
            )
        public_id = mint_public_id()
        async with self.pool.acquire() as conn, conn.transaction():
            doc_id = None
            if document is not None:
                doc_id = await documents.take_document(conn, document)
                if doc_id is None:
                    log.info(
                        "document already received",
                        extra={**extra, "event": "alert.document_replayed", "url": document.url},
                    )
                    return IngestResult(Outcome.REPLAY)
                await documents.record_document(
                    conn,
                    doc_id,
                    outcome="parsed",
                    content=document.content,
                    kind=document.kind or alert.kind,
                    title=(document.title or alert.event)[:200],
                )
            issuance = issuance_key(alert)
            alert_id = await alert_store.insert_alert(
                conn,
                alert,
                target_codes=targets,
                document_id=doc_id,
                state="held" if hold else "active",
                public_id=public_id,
                issuance=issuance,
            )
            if alert_id is None:
                log.info("alert already stored", extra={**extra, "event": "alert.duplicate"})
                return IngestResult(Outcome.DUPLICATE)
            extra["alert_id"] = alert_id
            siblings: list[int] = []
            if issuance is not None:
                # The parallel documents of one issuance decide one at a time, in
                # whatever order they arrive and whichever daemon took them.
                await locks.serialise(conn, "issuance:" + issuance)
                siblings = await alert_store.issuance_siblings(conn, issuance, alert_id)
                if siblings:
                    await alert_store.add_details(conn, alert_id, {"issuance": issuance, "siblings": siblings})
            if alert.series_key:
                # Telegrams of one series are fetched concurrently: decide "newest
                # wins" one at a time per series.
                await locks.serialise(conn, alert.series_key)
            if alert.series_key and await alert_store.newer_in_series(conn, alert.series_key, alert.sent, alert_id):
                await alert_store.mark_state(conn, alert_id, "stale")
                log.info(
                    "older telegram of a series arrived late: stored, not sent", extra={**extra, "event": "alert.stale"}
                )
                return IngestResult(Outcome.STALE, alert_id, unknown_codes=tuple(unknown), public_id=public_id)
            decision = fence(alert, await alert_store.replacement_candidates(conn, alert, alert_id))
            replaced = decision.replaced
            if decision.refused:
                for reason in decision.refused:
                    log.warning(
                        "reference not honoured: %s", reason, extra={**extra, "event": "alert.reference_refused"}
                    )
                await alert_store.add_details(
                    conn, alert_id, {"problems": decision.refused, "refused_references": decision.refused}
                )
            if replaced:
                await alert_store.mark_replaced(conn, replaced, alert_id, alert.msg_type is MsgType.CANCEL)
                n = await fanout.supersede_queued(conn, replaced, f"replaced by alert {alert_id}")
                log.info(
                    "alert replaces earlier ones",
                    extra={**extra, "event": "alert.replaces", "replaced": replaced, "superseded": n},
                )
            result = IngestResult(
                Outcome.HELD if hold else Outcome.QUEUED,
                alert_id,
                replaced=tuple(replaced),
                unknown_codes=tuple(unknown),
                public_id=public_id,
                refused=tuple(decision.refused),
            )
            if hold:
                log.info("alert held for approval", extra={**extra, "event": "alert.held"})
                return result
            if alert.details.get("push") is False:
                # Information the source says is for the site, not for phones (JMA's
                # 台風解析・予報情報): stored and shown, not sent.
                log.info("alert stored for the site only, not pushed", extra={**extra, "event": "alert.site_only"})
                return result
            count = await self._fan_out(conn, alert, alert_id, targets, replaced, siblings)
        log.info(
            "alert queued",
            extra={**extra, "event": "alert.queued", "deliveries": count, "priority": int(alert.priority)},
        )
        return replace(result, deliveries=count)

    async def release(self, alert_id: int) -> IngestResult:
        """Fan out a held alert (approval)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await alert_store.lock_alert(conn, alert_id)
            if row is None:
                raise LookupError(f"no alert with id {alert_id}")
            if row["state"] != "held":
                raise ValueError(f"alert {alert_id} is {row['state']}, not held")
            alert = alert_store.row_to_alert(row)
            await alert_store.mark_state(conn, alert_id, "active")
            replaced = await alert_store.replaced_by(conn, alert_id)
            siblings = await alert_store.issuance_siblings(conn, row["issuance"], alert_id) if row["issuance"] else []
            count = await self._fan_out(conn, alert, alert_id, list(row["target_codes"]), replaced, siblings)
        log.info("held alert released", extra={"event": "alert.released", "alert_id": alert_id, "deliveries": count})
        return IngestResult(Outcome.QUEUED, alert_id, count, tuple(replaced), public_id=alert.public_id)

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
        self,
        conn: asyncpg.Connection,
        alert: Alert,
        alert_id: int,
        targets: Iterable[str],
        replaced: Sequence[int],
        siblings: Sequence[int] = (),
    ) -> int:
        priority = int(alert.priority)
        channels, broadcast_channels = self.channels_for(alert)
        places = self.targeter.places(alert)
        to = fanout.Targets(
            codes=list(targets),
            place_codes=places.codes,
            places=places.places,
            levels=place_levels(alert.areas),
            siblings=siblings,
        )
        count = await fanout.fan_out(
            conn,
            alert_id=alert_id,
            priority=priority,
            channels=channels,
            target_codes=to,
            public=alert.is_public,
            alert_class=self.classify(alert),
        )
        if alert.is_public and broadcast_channels:
            count += await fanout.fan_out_broadcast(
                conn,
                alert_id=alert_id,
                priority=priority,
                channels=broadcast_channels,
                level=alert_level(alert),
                siblings=siblings,
            )
        if replaced:
            count += await fanout.fan_out_followers(
                conn, alert_id=alert_id, priority=priority, replaced=replaced, public=alert.is_public, targets=to
            )
        return count
