"""The two body forms the broadcast console may POST, parsed into a :class:`Broadcast`.

CAP 1.2 (and 1.1), https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html, read by
the safe parser of :mod:`sources.cap`, in the city's profile:

* ``<alert>``: ``identifier``, ``sender``, ``sent`` (the time it was aired, unless a
  parameter ``aired_at`` says otherwise), ``status`` (Actual / Exercise / Test),
  ``msgType`` (Alert / Update / Cancel) and ``references``;
* ``<info>`` (Japanese preferred): ``description`` is the text as announced (else
  ``headline``); ``parameter``s ``priority`` (emergency | ordinary; absent: emergency when
  urgency is Immediate and severity Extreme or Severe), ``chime`` and ``category``;
* ``<area>``: each ``geocode`` value (valueName ``speaker_group`` or ``district``) is a
  loudspeaker group or a district code; an area without geocode names its group in
  ``areaDesc``.

JSON (``application/json``, UTF-8)::

    {"id": "...", "aired_at": "2025-06-01T07:30:00+09:00", "priority": "emergency",
     "chime": "...", "groups": ["heda"], "text": "...", "category": "evacuation",
     "exercise": false, "sender": "...", "msg_type": "alert", "references": []}

``id``, ``aired_at`` (ISO 8601 with offset), ``priority``, ``groups`` (non-empty) and
``text`` are required; unknown keys are ignored. Every problem raises
:class:`BodyError` saying what is wrong.

Both forms end in :func:`check`, which holds every field to what the database and the
residents' pages can take (:mod:`dispatcher.limits`): ``id``/``identifier``, ``sender``,
each group and reference at most 200 printable characters (no NUL, controls or bidi
overrides), at most 100 groups and 100 references, ``chime`` and ``category`` at most
200, the text at most :data:`MAX_TEXT` characters without control characters, and the
time aired from 2000 to a day from now. So a hostile body is a 400, never a database
error (an index row too large, a NUL, a year PostgreSQL cannot hold).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dispatcher.limits import MAX_ITEMS, name_problem, quote, text_problem, time_problem
from dispatcher.model import MsgType, Severity, Status, Urgency
from sources.broadcast.mapping import PRIORITIES, Broadcast, PriorityName
from sources.cap import parse_cap
from sources.outcome import Failed, Parsed, Unsupported

CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
JSON_TYPES = ("application/json",)
MAX_TEXT = 10_000
# chime and category: labels, not text.
MAX_LABEL = 200


class BodyError(ValueError):
    """The body is not a usable broadcast; the message says why (safe to show the sender)."""


def _time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise BodyError(f"{what} must be an ISO 8601 string with a UTC offset")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BodyError(f"{what} {quote(value)} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise BodyError(f"{what} {quote(value)} has no UTC offset (e.g. +09:00)")
    return parsed


def _priority(value: object) -> PriorityName:
    for p in PRIORITIES:
        if value == p:
            return p
    raise BodyError(f"priority must be one of {', '.join(PRIORITIES)}, not {quote(value)}")


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BodyError(f"{what} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise BodyError(f"{what} is longer than {MAX_TEXT} characters")
    return value.strip()


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise BodyError(problem)


def _items(values: tuple[str, ...], what: str) -> None:
    if len(values) > MAX_ITEMS:
        raise BodyError(f"{what} must have at most {MAX_ITEMS} entries (it has {len(values)})")
    for i, value in enumerate(values):
        _refuse(name_problem(value, f"{what}[{i}]"))


def check(b: Broadcast) -> Broadcast:
    """``b`` if every field is within what can be stored and shown; raises :class:`BodyError`."""
    json_form = b.kind == "JSON"
    _refuse(name_problem(b.identifier, "id" if json_form else "identifier"))
    _refuse(name_problem(b.sender, "sender"))
    for label, what in ((b.chime, "chime"), (b.category, "category")):
        if label:
            _refuse(name_problem(label, what, max_length=MAX_LABEL))
    _refuse(text_problem(b.text, "text", max_length=MAX_TEXT))
    _items(b.groups, "groups")
    _items(b.references, "references")
    _refuse(time_problem(b.aired_at, "aired_at" if json_form else "sent (or parameter aired_at)"))
    return b


def _opt_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BodyError(f"{key} must be a string")
    return value.strip()


def parse_json_broadcast(body: bytes, *, default_sender: str) -> Broadcast:
    """The JSON form; raises :class:`BodyError`."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        # json's decoder recurses per [ or {: 100,000 of them exhaust the stack.
        raise BodyError("body is not JSON we read: nested too deeply") from None
    except ValueError as exc:
        # An integer of more than 4300 digits (int_max_str_digits).
        raise BodyError(f"body is not JSON we read: {exc}") from None
    if not isinstance(data, dict):
        raise BodyError("body must be a JSON object")
    missing = [k for k in ("id", "aired_at", "priority", "groups", "text") if k not in data]
    if missing:
        raise BodyError(f"missing required field(s): {', '.join(missing)}")
    identifier = data["id"]
    if isinstance(identifier, int) and not isinstance(identifier, bool):
        identifier = str(identifier)
    if not isinstance(identifier, str) or not identifier.strip() or len(identifier) > 200:
        raise BodyError("id must be a non-empty string of at most 200 characters")
    groups = data["groups"]
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g.strip() for g in groups):
        raise BodyError("groups must be a non-empty list of loudspeaker group names or district codes")
    exercise = data.get("exercise", False)
    if not isinstance(exercise, bool):
        raise BodyError("exercise must be true or false")
    msg_type_text = _opt_str(data, "msg_type").lower() or "alert"
    try:
        msg_type = MsgType(msg_type_text)
    except ValueError:
        raise BodyError(f"msg_type must be alert, update or cancel, not {quote(msg_type_text)}") from None
    refs = data.get("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise BodyError("references must be a list of identifiers")
    if msg_type is not MsgType.ALERT and not refs:
        raise BodyError(f"msg_type {msg_type_text} needs references (the ids it replaces)")
    return check(
        Broadcast(
            identifier=identifier.strip(),
            sender=_opt_str(data, "sender") or default_sender,
            aired_at=_time(data["aired_at"], "aired_at"),
            priority=_priority(data["priority"]),
            text=_text(data["text"], "text"),
            groups=tuple(g.strip() for g in groups),
            kind="JSON",
            chime=_opt_str(data, "chime"),
            category=_opt_str(data, "category"),
            status=Status.EXERCISE if exercise else Status.ACTUAL,
            msg_type=msg_type,
            references=tuple(refs),
            original=body,
        )
    )


def parse_cap_broadcast(body: bytes) -> Broadcast:
    """The CAP form (the city's profile, see the module docstring); raises :class:`BodyError`."""
    outcome = parse_cap(body)
    if isinstance(outcome, Failed):
        raise BodyError(f"not a usable CAP alert: {outcome.error}")
    if isinstance(outcome, Unsupported):
        raise BodyError(f"unsupported CAP: {outcome.reason}")
    assert isinstance(outcome, Parsed)
    alert = outcome.alert
    params: dict[str, str] = dict(alert.details.get("parameters") or {})
    groups: list[str] = []
    for area in alert.areas:
        if area.codes:
            groups.extend(area.codes)
        elif area.description.strip():
            groups.append(area.description.strip())
    if "priority" in params:
        priority = _priority(params["priority"].strip().lower())
    elif alert.urgency is Urgency.IMMEDIATE and alert.severity in (Severity.EXTREME, Severity.SEVERE):
        priority = "emergency"
    else:
        priority = "ordinary"
    text = (alert.description or alert.headline).strip()
    if not text and alert.msg_type is not MsgType.CANCEL:
        raise BodyError("CAP info has neither description nor headline: no text to announce")
    if not groups and alert.msg_type is not MsgType.CANCEL:
        raise BodyError("CAP info has no area: name the loudspeaker groups in geocode (valueName speaker_group)")
    if len(text) > MAX_TEXT:
        raise BodyError(f"description is longer than {MAX_TEXT} characters")
    aired = _time(params["aired_at"], "parameter aired_at") if params.get("aired_at") else alert.sent
    extra: dict[str, Any] = {"cap_version": alert.details.get("cap_version", "")}
    if alert.headline:
        extra["cap_headline"] = alert.headline
    if outcome.problems:
        extra["cap_problems"] = list(outcome.problems)
    return check(
        Broadcast(
            identifier=alert.identifier,
            sender=alert.sender,
            aired_at=aired,
            priority=priority,
            text=text or alert.event,
            groups=tuple(dict.fromkeys(groups)),
            kind=alert.kind or "CAP",
            chime=params.get("chime", "").strip(),
            category=params.get("category", "").strip(),
            # Draft is never disseminated; the pipeline fences it like a test.
            status=alert.status,
            msg_type=alert.msg_type,
            references=alert.references,
            original=body,
            extra=extra,
        )
    )


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str, *, default_sender: str) -> Broadcast:
    """Dispatch on the media type (already checked to be supported)."""
    if media_type(content_type) in JSON_TYPES:
        return parse_json_broadcast(body, default_sender=default_sender)
    return parse_cap_broadcast(body)


def supported(content_type: str) -> bool:
    return media_type(content_type) in (*CAP_TYPES, *JSON_TYPES)
