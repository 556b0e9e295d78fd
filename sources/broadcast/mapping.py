"""A broadcast as aired, and how it becomes an Alert: groups → districts, priority, policy.

Loudspeaker groups map to district codes of the geo layer (``[broadcast.groups]``);
``all`` is built in and means the whole city: 沼津市's JMA code ``2220300`` plus every
district. A group nobody configured is reported (a warning in the log, ``unknown_groups``
and ``problems`` in the alert's details, shown on its page) and the broadcast still goes
to the districts that are known. When *no* group is known, the broadcast is not guessed
to be city-wide: it is stored, held for approval and reported, so an operator decides
where it goes (``dispatcher approve``). Nothing is ever dropped.

Priority: ``emergency`` → Priority.CRITICAL / Severity.SEVERE (the ``evacuation``
category: Severity.EXTREME); ``ordinary`` → Priority.LOW / Severity.MINOR. Whether a
priority is sent at once or held is configuration (``hold_emergency``, ``hold_ordinary``).
A category listed in ``[broadcast.routes]`` is carried only by those channels
(``details["channels"]``, honoured by the pipeline's fan-out).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dispatcher.model import Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency

log = logging.getLogger(__name__)

SOURCE = "broadcast"
EVENT = "防災行政無線"
ALL = "all"
CITY_CODE = "2220300"
CITY_NAME = "沼津市"

PriorityName = Literal["emergency", "ordinary"]
PRIORITIES: tuple[PriorityName, ...] = ("emergency", "ordinary")

# Categories the console may name → the event residents read. Unknown categories are kept
# in the details and the event stays plain 防災行政無線.
CATEGORY_EVENTS: dict[str, str] = {
    "chime_test": "防災行政無線（試験放送）",
    "crime_prevention": "防災行政無線（防犯）",
    "missing_person": "防災行政無線（行方不明者）",
    "evacuation": "防災行政無線（避難情報）",
    "weather": "防災行政無線（気象情報）",
}


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One broadcast as the console (or a transcript feed) describes it."""

    identifier: str
    sender: str
    aired_at: datetime
    priority: PriorityName
    text: str
    groups: tuple[str, ...]
    # Where it came from: "CAP1.2", "JSON", "feed".
    kind: str
    chime: str = ""
    category: str = ""
    status: Status = Status.ACTUAL
    msg_type: MsgType = MsgType.ALERT
    references: tuple[str, ...] = ()
    # The document as received (the body, a feed entry as JSON): what ``documents`` stores.
    original: bytes | None = None
    original_url: str | None = None
    # Source-specific facts kept for the record (CAP headline, feed title…).
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BroadcastPolicy:
    """What the configuration says about broadcasts (built from ``[broadcast]``).

    ``districts`` maps every district code of the geo layer to its name, for area
    descriptions and to tell a known district code from an unknown one.
    """

    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    districts: Mapping[str, str] = field(default_factory=dict)
    hold_emergency: bool = False
    hold_ordinary: bool = True

    def holds(self, priority: PriorityName) -> bool:
        return self.hold_emergency if priority == "emergency" else self.hold_ordinary

    def misconfigured(self) -> list[str]:
        """Group entries naming district codes the geo layer does not have."""
        out = []
        for group, codes in self.groups.items():
            for code in codes:
                if code != CITY_CODE and code not in self.districts:
                    out.append(f"group {group!r} names unknown district code {code!r}")
        return out


@dataclass(frozen=True, slots=True)
class Mapped:
    """An Alert ready for ``ctx.emit`` and whether to hold it, with the reasons."""

    alert: Alert
    hold: bool
    unknown_groups: tuple[str, ...] = ()
    held_because: str = ""


@dataclass(frozen=True, slots=True)
class Resolution:
    """Groups resolved to areas."""

    areas: tuple[Area, ...]
    known: tuple[str, ...]
    unknown: tuple[str, ...]


def resolve_groups(groups: tuple[str, ...], policy: BroadcastPolicy) -> Resolution:
    """Areas for ``groups``: a group of the table, ``all``, or a district code or name itself."""
    by_name = {name: code for code, name in policy.districts.items()}
    codes: dict[str, None] = {}
    city = False
    known: list[str] = []
    unknown: list[str] = []
    for raw in groups:
        group = raw.strip()
        if not group:
            continue
        if group.casefold() == ALL or group in (CITY_CODE, CITY_NAME):
            city = True
        elif group in policy.groups:
            codes.update((c, None) for c in policy.groups[group])
        elif group in policy.districts:
            codes[group] = None
        elif group in by_name:
            codes[by_name[group]] = None
        else:
            unknown.append(group)
            continue
        known.append(group)
    if city or CITY_CODE in codes:
        areas: tuple[Area, ...] = (Area(CITY_NAME, (CITY_CODE, *policy.districts)),)
    else:
        areas = tuple(Area(policy.districts.get(c, c), (c,)) for c in codes)
    return Resolution(areas, tuple(dict.fromkeys(known)), tuple(dict.fromkeys(unknown)))


def _headline(areas: tuple[Area, ...], priority: PriorityName) -> str:
    """Where it was aired, as residents read it: 戸田、西浦への緊急放送."""
    places = "、".join(a.description for a in areas[:6]) + ("ほか" if len(areas) > 6 else "")
    kind = "緊急放送" if priority == "emergency" else "放送"
    return f"{places}への{kind}" if places else f"{CITY_NAME}の{kind}"


def to_alert(b: Broadcast, policy: BroadcastPolicy) -> Mapped:
    """The Alert for ``b``, and whether policy holds it for approval."""
    res = resolve_groups(b.groups, policy)
    emergency = b.priority == "emergency"
    if emergency:
        priority = Priority.CRITICAL
        severity = Severity.EXTREME if b.category == "evacuation" else Severity.SEVERE
    else:
        priority, severity = Priority.LOW, Severity.MINOR
    details: dict[str, Any] = {
        "aired_at": b.aired_at.isoformat(),
        "broadcast_priority": b.priority,
        "groups": list(b.groups),
        "format": b.kind,
        **dict(b.extra),
    }
    if b.chime:
        details["chime"] = b.chime
    if b.category:
        details["category"] = b.category
    channels = policy.routes.get(b.category) if b.category else None
    if channels is not None:
        details["channels"] = list(channels)
    problems = [f"unknown loudspeaker group {g!r}" for g in res.unknown]
    if res.unknown:
        details["unknown_groups"] = list(res.unknown)
    held_because = ""
    # A cancellation without areas goes to whoever got what it cancels (the pipeline's followers).
    if not res.areas and not (b.msg_type is MsgType.CANCEL and not b.groups):
        held_because = "no known loudspeaker group or district: held for an operator to decide"
        problems.append(held_because)
    elif policy.holds(b.priority):
        held_because = f"{b.priority} broadcasts are held for approval ([broadcast] hold_{b.priority})"
    if problems:
        details["problems"] = problems
    if held_because:
        details["held_because"] = held_because
    alert = Alert(
        identifier=b.identifier,
        sender=b.sender,
        sent=b.aired_at,
        status=b.status,
        msg_type=b.msg_type,
        event=CATEGORY_EVENTS.get(b.category, EVENT),
        severity=severity,
        urgency=Urgency.IMMEDIATE if emergency else Urgency.UNKNOWN,
        certainty=Certainty.OBSERVED if emergency else Certainty.UNKNOWN,
        headline=_headline(res.areas, b.priority),
        source=SOURCE,
        priority=priority,
        references=b.references,
        description=b.text,
        areas=res.areas,
        kind=SOURCE,
        details=details,
        original_url=b.original_url,
    )
    return Mapped(alert, bool(held_because), res.unknown, held_because)
