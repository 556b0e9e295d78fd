"""The envelope of a telegram and its identity: Control and Head, what they must hold, the limits.

A Report carries every Control and Head element the jmx schemas require
(https://xml.kishou.go.jp/tec_material.html, jmx_ib / jmx_eb); :func:`incomplete` names
what is missing, empty, not a date-time or too long. :func:`make_identifier` mints the
alert identifier (JMA has no message id), :func:`series_key` the series, and
:func:`kind_from_name` reads the data-type code from a JMA file name. :class:`Telegram`
is what every family reader gets.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatcher.model import MsgType, Status
from sources.jma.codes import AreaCodes
from sources.jma.parser.elements import jma_datetime

# Limits well above anything real (the package docstring, "Text limits").
MAX_IDENTITY_CHARS = 200
MAX_HEADLINE_CHARS = 4_000
MAX_TEXT_CHARS = 20_000
MAX_AREA_NAME_CHARS = 200
MAX_DETAIL_CHARS = 4_000
# Elements the jmx schemas require (minOccurs=1), and those that must also hold text.
_REQUIRED_CONTROL = ("Title", "DateTime", "Status", "EditorialOffice", "PublishingOffice")
_REQUIRED_HEAD = (
    "Title",
    "ReportDateTime",
    "TargetDateTime",
    "EventID",
    "InfoType",
    "Serial",
    "InfoKind",
    "InfoKindVersion",
    "Headline",
)
_REQUIRED_CONTROL_SET = frozenset(_REQUIRED_CONTROL)
_REQUIRED_HEAD_SET = frozenset(_REQUIRED_HEAD)
_NON_EMPTY_CONTROL = ("Title", "Status", "EditorialOffice")
_NON_EMPTY_HEAD = ("Title", "InfoType")
_IDENTITY_CONTROL = ("Title", "Status", "EditorialOffice")
_IDENTITY_HEAD = ("Title", "InfoType", "EventID", "Serial")
_BODY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Body[\s/>]")
STATUS = {"通常": Status.ACTUAL, "訓練": Status.EXERCISE, "試験": Status.TEST}
MSG_TYPE = {
    "発表": MsgType.ALERT,
    "訂正": MsgType.UPDATE,
    "遅延": MsgType.UPDATE,
    "取消": MsgType.CANCEL,
}
_KIND_IN_NAME = re.compile(r"(?:^|[_/])(V[A-Z]{3}(?:\d\d|ii|[A-Za-z0-9]{2}))(?=[_.]|$)")


def kind_from_name(name: str | None) -> str:
    """JMA data-type code (``VPWW54``) in a feed URL or file name, or ``""``."""
    if not name:
        return ""
    match = _KIND_IN_NAME.search(name.rsplit("/", 1)[-1])
    return match.group(1) if match else ""


def series_key(control_title: str, office: str, status: str, event_id: str) -> str:
    """``Control/Title|EditorialOffice|Status`` plus ``|EventID`` when there is one (DESIGN.md §5)."""
    key = "|".join((control_title, office, status))
    return key + "|" + event_id if event_id else key


@dataclass(slots=True)
class Telegram:
    """What every family handler needs from Control and Head."""

    root: Any
    head: Any
    body: Any
    control_title: str
    head_title: str
    office: str
    status: Status
    msg_type: MsgType
    info_type: str
    event_id: str
    serial: str
    sent: datetime
    kind: str
    series_key: str
    identifier: str
    headline: str
    valid: datetime | None
    codes: AreaCodes | None
    url: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def incomplete(cf: dict[str, str], hf: dict[str, str]) -> str:
    """What makes Control/Head fields ``cf``/``hf`` not a whole telegram, or ``""``."""
    if (
        cf.keys() >= _REQUIRED_CONTROL_SET
        and hf.keys() >= _REQUIRED_HEAD_SET
        and all(map(cf.__getitem__, _NON_EMPTY_CONTROL))
        and all(map(hf.__getitem__, _NON_EMPTY_HEAD))
        and max(map(len, map(cf.__getitem__, _IDENTITY_CONTROL))) <= MAX_IDENTITY_CHARS
        and max(map(len, map(hf.__getitem__, _IDENTITY_HEAD))) <= MAX_IDENTITY_CHARS
        and jma_datetime(cf["DateTime"]) is not None
        and jma_datetime(hf["ReportDateTime"]) is not None
    ):
        return ""  # the usual case, in one pass; the detailed report below names what is wrong
    missing = [f"Control/{n}" for n in _REQUIRED_CONTROL if n not in cf]
    missing += [f"Head/{n}" for n in _REQUIRED_HEAD if n not in hf]
    empty = [f"Control/{n}" for n in _NON_EMPTY_CONTROL if n in cf and not cf[n]]
    empty += [f"Head/{n}" for n in _NON_EMPTY_HEAD if n in hf and not hf[n]]
    invalid = [
        f"{part}/{n}"
        for part, fields, n in (("Control", cf, "DateTime"), ("Head", hf, "ReportDateTime"))
        if n in fields and jma_datetime(fields[n]) is None
    ]
    too_long = [f"Control/{n}" for n in _IDENTITY_CONTROL if len(cf.get(n, "")) > MAX_IDENTITY_CHARS]
    too_long += [f"Head/{n}" for n in _IDENTITY_HEAD if len(hf.get(n, "")) > MAX_IDENTITY_CHARS]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if empty:
        problems.append("empty " + ", ".join(empty))
    if invalid:
        problems.append("no valid date-time in " + ", ".join(invalid))
    if too_long:
        problems.append(f"longer than {MAX_IDENTITY_CHARS} characters: " + ", ".join(too_long))
    return "; ".join(problems)


def make_identifier(data: bytes, fields: tuple[str, ...]) -> str:
    """``jma-`` + 32 hex digits over the Head fields and the Body's bytes (the package docstring)."""
    # JMA writes <Body xmlns=…> unprefixed; the pattern is the fallback for a prefixed one.
    start = data.find(b"<Body")
    if start < 0 or data[start + 5 : start + 6] not in (b" ", b">", b"/", b"\n", b"\t", b"\r"):
        match = _BODY_START.search(data)
        start = match.start() if match else len(data)
    body = hashlib.sha256(memoryview(data)[start:]).hexdigest()
    src = "\x1f".join((*fields, body))
    return "jma-" + hashlib.sha256(src.encode("utf-8")).hexdigest()[:32]
