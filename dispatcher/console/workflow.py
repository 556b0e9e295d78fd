"""The two-person path: draft → submitted → approved and sent | rejected | returned; cancel; held broadcasts.

Modelled on GOV.UK Emergency Alerts (``alphagov/emergency-alerts-api``,
``app/broadcast_message/``): a message is written and submitted by one person and
approved by another, checked here on the server (and again by the database's
``console_messages_four_eyes`` constraint), whatever the pages show. Nobody who wrote,
edited or submitted a message may approve it. Approval sends: the message becomes an
Alert of source ``console`` handed to the pipeline (:class:`Dispatch`), so it reaches
every channel and is fenced like any other (an exercise never replaces a real alert).

Every step writes the message's new state and its audit entry in one transaction, after
locking the row, so two approvers clicking at once decide once. Sending is a second
step: should the daemon stop between approval and send, the message stays
``approved`` and its page offers to send it again (the alert's identifier is the
message's, so a second hand-over is a duplicate the pipeline ignores).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from dispatcher.console.accounts import Actor
from dispatcher.console.compose import Draft, Origin, build_alert, check_draft, identifier, retraction_alert, to_areas
from dispatcher.console.config import ConsoleConfig
from dispatcher.console.messages import Messages
from dispatcher.model import Alert, Area
from dispatcher.store import alerts as alert_store
from dispatcher.store import audit
from dispatcher.store import console as store
from geo import GeoIndex

log = logging.getLogger(__name__)


class Dispatched(Protocol):
    """What the pipeline answers (``dispatcher.pipeline.IngestResult``)."""

    @property
    def alert_id(self) -> int | None: ...

    @property
    def deliveries(self) -> int: ...

    @property
    def public_id(self) -> str | None: ...


class Dispatch(Protocol):
    """How the console hands alerts to the pipeline (built by :mod:`dispatcher.console.wiring`)."""

    async def emit(self, alert: Alert) -> Dispatched: ...

    async def release(self, alert_id: int) -> Dispatched: ...

    def target_codes(self, alert: Alert) -> list[str]: ...


class WorkflowError(ValueError):
    """A step that may not be taken now; the message says why, for the person who tried."""


@dataclass(frozen=True, slots=True)
class Console:
    """What the path needs: the pool, the configuration, the templates, the districts, the pipeline."""

    pool: asyncpg.Pool
    config: ConsoleConfig
    messages: Messages
    geo: GeoIndex
    dispatch: Dispatch


def _snapshot(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "state": row["state"],
        "kind": row["kind"],
        "areas": list(row["areas"]),
        "texts": row["texts"],
        "expires": row["expires"],
    }


async def _log(conn: asyncpg.Connection, actor: Actor, action: str, target: str, **kw: Any) -> None:
    await audit.append(
        conn, actor=actor.name, role=actor.role, action=action, target=target, address=actor.address, **kw
    )


def _now() -> datetime:
    return datetime.now(UTC)


async def _locked(conn: asyncpg.Connection, message_id: int, exercise: bool) -> asyncpg.Record:
    row = await store.lock_message(conn, message_id)
    if row is None or row["exercise"] != exercise:
        # A message of the other mode is not reachable from this one: exercise and live stay apart.
        raise WorkflowError(f"no message #{message_id} here")
    return row


async def save(
    console: Console,
    actor: Actor,
    draft: Draft,
    *,
    exercise: bool,
    message_id: int | None = None,
    replaces: int | None = None,
    submit: bool = False,
) -> int:
    """Store a new or edited draft (``draft.create`` / ``draft.edit``), and ``submit`` it at once if asked."""
    assert actor.staff_id is not None
    kind = console.messages.kind(draft.kind)
    problems = check_draft(draft, known_kind=kind is not None, now=_now(), max_hours=console.config.max_expiry_hours)
    if problems:
        raise WorkflowError("; ".join(problems))
    assert draft.expires is not None
    values: dict[str, Any] = {
        "kind": draft.kind,
        "areas": draft.areas,
        "texts": draft.stored_texts(),
        "expires": draft.expires,
    }
    async with console.pool.acquire() as conn, conn.transaction():
        if message_id is None:
            if replaces is not None:
                old = await _locked(conn, replaces, exercise)
                if old["state"] != "sent":
                    raise WorkflowError(f"message #{replaces} is {old['state']}: only a sent message can be updated")
            message_id = await store.insert_message(
                conn, exercise=exercise, staff_id=actor.staff_id, replaces=replaces, **values
            )
            await _log(
                conn,
                actor,
                "draft.create",
                f"message:{message_id}",
                after={**values, "exercise": exercise, "replaces": replaces},
            )
        else:
            row = await _locked(conn, message_id, exercise)
            if row["state"] not in store.EDITABLE:
                raise WorkflowError(f"message #{message_id} is {row['state']}: it cannot be edited now")
            await store.update_message(conn, message_id, staff_id=actor.staff_id, **values)
            await _log(conn, actor, "draft.edit", f"message:{message_id}", before=_snapshot(row), after=values)
        if submit:
            await _submit(conn, actor, message_id, exercise)
    return message_id


async def _submit(conn: asyncpg.Connection, actor: Actor, message_id: int, exercise: bool) -> None:
    assert actor.staff_id is not None
    row = await _locked(conn, message_id, exercise)
    if row["state"] not in store.EDITABLE:
        raise WorkflowError(f"message #{message_id} is {row['state']}: only a draft can be submitted")
    await store.submit(conn, message_id, actor.staff_id)
    await _log(
        conn,
        actor,
        "draft.submit",
        f"message:{message_id}",
        before={"state": row["state"]},
        after={"state": "submitted"},
    )


async def submit(console: Console, actor: Actor, message_id: int, *, exercise: bool) -> None:
    """Ask for approval (``draft.submit``)."""
    async with console.pool.acquire() as conn, conn.transaction():
        await _submit(conn, actor, message_id, exercise)


def _may_approve(actor: Actor, row: Mapping[str, Any]) -> None:
    """The server's two-person rule: the approver wrote, edited and submitted none of it."""
    if actor.staff_id is None or actor.staff_id in row["contributors"] or actor.staff_id == row["submitted_by"]:
        raise WorkflowError("you wrote or submitted this message: another approver must decide on it (two-person rule)")


async def decide(
    console: Console, actor: Actor, message_id: int, *, exercise: bool, outcome: str, reason: str = ""
) -> None:
    """Reject (``draft.reject``) or return for edit (``draft.return``) a submitted message, with a reason."""
    assert outcome in ("rejected", "returned")
    if not reason.strip():
        raise WorkflowError("say why: the author reads the reason")
    async with console.pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, message_id, exercise)
        if row["state"] != "submitted":
            raise WorkflowError(f"message #{message_id} is {row['state']}, not waiting for approval")
        _may_approve(actor, row)
        assert actor.staff_id is not None
        await store.decide(conn, message_id, outcome, actor.staff_id, reason.strip()[:1000])
        action = "draft.reject" if outcome == "rejected" else "draft.return"
        await _log(
            conn,
            actor,
            action,
            f"message:{message_id}",
            before={"state": "submitted"},
            after={"state": outcome, "reason": reason.strip()[:1000]},
        )


async def _message_alert(console: Console, conn: asyncpg.Connection, row: Mapping[str, Any], actor: Actor) -> Alert:
    kind = console.messages.kind(row["kind"])
    if kind is None:
        raise WorkflowError(f"the kind {row['kind']!r} is no longer among the message templates")
    texts = {lang: (t.get("headline", ""), t.get("text", "")) for lang, t in row["texts"].items()}
    draft = Draft(row["kind"], tuple(row["areas"]), texts, row["expires"])
    replaces = None
    if row["replaces"] is not None:
        old = await store.message(conn, row["replaces"])
        replaces = old["alert_identifier"] if old is not None else None
    people = {"submitted_by": await _name(conn, row["submitted_by"]), "approved_by": actor.name}
    origin = Origin(row["id"], row["exercise"], console.config.sender, console.config.sender_name, people)
    return build_alert(draft, kind, console.geo, origin, sent=_now(), replaces=replaces)


async def _name(conn: asyncpg.Connection, staff_id: int | None) -> str:
    if staff_id is None:
        return ""
    return str(await conn.fetchval("SELECT username FROM staff WHERE id = $1", staff_id) or "")


async def approve(console: Console, actor: Actor, message_id: int, *, exercise: bool) -> Dispatched:
    """Approve and send (``draft.approve``, then ``alert.send``): one click of a second person.

    Also sends again a message left ``approved`` by a daemon that stopped before it was handed over.
    """
    async with console.pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, message_id, exercise)
        if row["state"] == "approved":
            if row["decided_by"] != actor.staff_id:
                _may_approve(actor, row)
        elif row["state"] != "submitted":
            raise WorkflowError(f"message #{message_id} is {row['state']}, not waiting for approval")
        else:
            _may_approve(actor, row)
        if row["expires"] <= _now():
            raise WorkflowError("its expiry has passed: return it for edit with a new expiry")
        alert = await _message_alert(console, conn, row, actor)
        assert actor.staff_id is not None
        await store.decide(conn, message_id, "approved", actor.staff_id)
        await _log(
            conn,
            actor,
            "draft.approve",
            f"message:{message_id}",
            before={"state": row["state"]},
            after={"state": "approved", "identifier": alert.identifier},
        )
    return await _send(console, actor, message_id, alert, row["replaces"])


async def _send(console: Console, actor: Actor, message_id: int, alert: Alert, replaces: int | None) -> Dispatched:
    extra = {"message_id": message_id, "alert": alert.identifier, "by": actor.name}
    try:
        result = await console.dispatch.emit(alert)
    except Exception as exc:
        log.exception("an approved console message could not be handed to the pipeline", extra=extra)
        async with console.pool.acquire() as conn, conn.transaction():
            await store.send_failed(conn, message_id, f"sending failed: {exc}"[:500])
            await _log(conn, actor, "alert.send_failed", f"message:{message_id}", after={"error": str(exc)[:500]})
        raise WorkflowError(f"sending failed ({exc}); it is back in the queue, approve it again") from None
    alert_id = result.alert_id
    async with console.pool.acquire() as conn, conn.transaction():
        if alert_id is None:  # a duplicate: sent already (an earlier attempt got through)
            row = await conn.fetchrow(
                "SELECT id FROM alerts WHERE sender = $1 AND identifier = $2", alert.sender, alert.identifier
            )
            alert_id = int(row["id"]) if row is not None else None
        if alert_id is None:
            raise WorkflowError("the pipeline stored nothing for this message")
        await store.mark_sent(conn, message_id, alert_id)
        if replaces is not None:
            await store.mark_superseded(conn, replaces)
        await _log(
            conn,
            actor,
            "alert.send",
            f"message:{message_id}",
            after={
                "alert_id": alert_id,
                "identifier": alert.identifier,
                "status": alert.status.value,
                "msg_type": alert.msg_type.value,
                "deliveries": result.deliveries,
                "public_id": result.public_id,
            },
        )
    log.info("console message sent", extra={**extra, "alert_id": alert_id, "deliveries": result.deliveries})
    return result


async def cancel(
    console: Console,
    actor: Actor,
    message_id: int,
    *,
    exercise: bool,
    reason: str,
    texts: Mapping[str, tuple[str, str]],
) -> Dispatched:
    """Send the 取消/誤報 of a sent message to every channel, in one step (``alert.cancel``)."""
    if reason not in console.messages.retractions:
        raise WorkflowError(f"unknown retraction {reason!r}")
    if not texts.get("ja", ("", ""))[0].strip():
        raise WorkflowError("the Japanese headline of the retraction is required")
    async with console.pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, message_id, exercise)
        if row["state"] != "sent" or row["alert_id"] is None:
            raise WorkflowError(f"message #{message_id} is {row['state']}: only a sent message can be cancelled")
        stored = await alert_store.alert_by_id(conn, row["alert_id"])
        assert stored is not None
        original = alert_store.row_to_alert(stored)
    retraction = retraction_alert(original, texts, sent=_now(), by=actor.name)
    result = await console.dispatch.emit(retraction)
    async with console.pool.acquire() as conn, conn.transaction():
        if result.alert_id is None:
            raise WorkflowError("this message was cancelled already")
        assert actor.staff_id is not None
        await store.mark_cancelled(conn, message_id, result.alert_id, actor.staff_id)
        await _log(
            conn,
            actor,
            "alert.cancel",
            f"message:{message_id}",
            before={"state": "sent"},
            after={
                "state": "cancelled",
                "reason": reason,
                "alert_id": result.alert_id,
                "identifier": retraction.identifier,
                "references": list(retraction.references),
                "deliveries": result.deliveries,
            },
        )
    return result


def _held_headline(areas: Sequence[Area], details: Mapping[str, Any]) -> str:
    places = "、".join(a.description for a in areas[:6]) + ("ほか" if len(areas) > 6 else "")
    kind = "緊急放送" if details.get("broadcast_priority") == "emergency" else "放送"
    return f"{places}への{kind}" if places else f"沼津市の{kind}"


async def approve_held(
    console: Console, actor: Actor, alert_id: int, *, exercise: bool, areas: Sequence[str]
) -> Dispatched:
    """Correct where a held broadcast goes (the approver's districts), then release it (``held.approve``)."""
    if not areas:
        raise WorkflowError("choose the districts the broadcast was aired in")
    async with console.pool.acquire() as conn, conn.transaction():
        row = await store.held_alert(conn, alert_id)
        if row is None or row["state"] != "held" or (row["status"] != "actual") != exercise:
            raise WorkflowError(f"alert #{alert_id} is not held for approval here")
        new_areas = to_areas(areas, console.geo)
        stored = await alert_store.alert_by_id(conn, alert_id)
        assert stored is not None
        alert = alert_store.row_to_alert(stored)
        corrected = replace(alert, areas=new_areas)
        targets = console.dispatch.target_codes(corrected)
        area_json = [
            {
                "description": a.description,
                "codes": list(a.codes),
                "polygons": [],
                "circles": [],
                "details": dict(a.details),
            }
            for a in new_areas
        ]
        headline = _held_headline(new_areas, row["details"] or {})
        note = {"corrected_by": actor.name, "corrected_areas": list(areas)}
        if not await store.correct_held(
            conn,
            alert_id,
            areas=area_json,
            area_codes=list(corrected.area_codes),
            target_codes=targets,
            headline=headline,
            details=note,
        ):
            raise WorkflowError(f"alert #{alert_id} is no longer held")
        await _log(
            conn,
            actor,
            "held.approve",
            f"alert:{alert_id}",
            before={"areas": [a.get("description") for a in row["areas"]], "headline": row["headline"]},
            after={"areas": [a.description for a in new_areas], "codes": list(areas), "headline": headline},
        )
    try:
        result = await console.dispatch.release(alert_id)
    except (LookupError, ValueError) as exc:
        raise WorkflowError(str(exc)) from None
    async with console.pool.acquire() as conn:
        await _log(
            conn,
            actor,
            "alert.send",
            f"alert:{alert_id}",
            after={"alert_id": alert_id, "deliveries": result.deliveries, "released": True},
        )
    return result


__all__ = [
    "Console",
    "Dispatch",
    "WorkflowError",
    "approve",
    "approve_held",
    "cancel",
    "decide",
    "identifier",
    "save",
    "submit",
]
