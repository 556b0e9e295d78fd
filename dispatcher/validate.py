"""The last check before an alert reaches the database: lengths, shapes and time ranges.

Sources validate what they receive in their own terms (a broadcast's fields, a
telegram's elements); this is the pipeline's guard for every source alike, so that
nothing a sender controls can make PostgreSQL refuse a statement (a NUL byte in
text, an index row too large, a date it cannot hold) and turn a caller's mistake
into a server error, or make one alert win every "newest in its series" contest by
claiming to come from the future. :class:`InvalidAlert` says what is wrong and
where; callers answer it as the caller's mistake (HTTP 400, a stored ``error``
document).

The limits sit far above anything real: the longest real JMA telegram in the
shared data lists about 1,800 municipalities, and JMA's texts run to a few
thousand characters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.model import Alert

# Characters per field. identifier and sender make up a b-tree key (PostgreSQL
# refuses index rows over about 2.7 kB).
MAX_KEY = 200
MAX_SHORT = 500
MAX_HEADLINE = 2_000
MAX_TEXT = 50_000
MAX_AREAS = 20_000
MAX_CODES = 50_000
MAX_REFERENCES = 100
MAX_DETAILS_CHARS = 2_000_000
# Earliest sent time accepted (JMA's official samples go back to 2007).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
# How far ahead of our clock a sent time may be (clock skew, not the future).
MAX_AHEAD = timedelta(days=1)
# Expiry: PostgreSQL holds far more; an alert expiring after this is a mistake.
LATEST_EXPIRY = datetime(2200, 1, 1, tzinfo=UTC)


class InvalidAlert(ValueError):
    """The alert cannot be stored as it is; the message names the field and the limit."""


def _control(text: str) -> bool:
    """Whether ``text`` holds a NUL or another C0 control character other than tab and line breaks."""
    return any(ch < " " and ch not in "\t\n\r" for ch in text)


def _check_text(value: str, field: str, limit: int, *, one_line: bool = False) -> None:
    if len(value) > limit:
        raise InvalidAlert(f"{field} is {len(value)} characters long (at most {limit})")
    if "\x00" in value:
        raise InvalidAlert(f"{field} contains a NUL character")
    if one_line and _control(value):
        raise InvalidAlert(f"{field} contains control characters")


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string (keys included) inside a JSON-like value, with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield path, str(k)
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _check_time(value: datetime, field: str, earliest: datetime, latest: datetime) -> None:
    if value.tzinfo is None:
        raise InvalidAlert(f"{field} has no UTC offset")
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidAlert(f"{field} {value.isoformat()} is out of range") from None
    if not earliest <= utc <= latest:
        raise InvalidAlert(
            f"{field} {value.isoformat()} is out of range ({earliest:%Y-%m-%d} … {latest:%Y-%m-%d %H:%M} UTC)"
        )


def check_alert(alert: Alert, *, now: datetime | None = None) -> None:
    """Raise :class:`InvalidAlert` unless every field of ``alert`` can be stored as it is."""
    if not alert.identifier.strip():
        raise InvalidAlert("identifier is empty")
    if not alert.sender.strip():
        raise InvalidAlert("sender is empty")
    _check_text(alert.identifier, "identifier", MAX_KEY, one_line=True)
    _check_text(alert.sender, "sender", MAX_KEY, one_line=True)
    for field, value in (("source", alert.source), ("kind", alert.kind), ("event", alert.event)):
        _check_text(value, field, MAX_SHORT, one_line=True)
    _check_text(alert.series_key or "", "series_key", MAX_SHORT, one_line=True)
    _check_text(alert.headline, "headline", MAX_HEADLINE)
    _check_text(alert.description, "description", MAX_TEXT)
    _check_text(alert.instruction, "instruction", MAX_TEXT)
    if len(alert.references) > MAX_REFERENCES:
        raise InvalidAlert(f"{len(alert.references)} references (at most {MAX_REFERENCES})")
    for i, ref in enumerate(alert.references):
        _check_text(ref, f"references[{i}]", MAX_SHORT, one_line=True)
    if len(alert.areas) > MAX_AREAS:
        raise InvalidAlert(f"{len(alert.areas)} areas (at most {MAX_AREAS})")
    codes = 0
    for i, area in enumerate(alert.areas):
        _check_text(area.description, f"areas[{i}].description", MAX_SHORT)
        codes += len(area.codes)
        for code in area.codes:
            _check_text(code, f"areas[{i}].codes", MAX_SHORT, one_line=True)
        for where, text in _strings(dict(area.details), f"areas[{i}].details"):
            _check_text(text, where, MAX_TEXT)
    if codes > MAX_CODES:
        raise InvalidAlert(f"{codes} area codes (at most {MAX_CODES})")
    size = 0
    for where, text in _strings(dict(alert.details), "details"):
        size += len(text)
        _check_text(text, where, MAX_TEXT)
    if size > MAX_DETAILS_CHARS:
        raise InvalidAlert(f"details hold {size} characters (at most {MAX_DETAILS_CHARS})")
    clock = now or datetime.now(UTC)
    _check_time(alert.sent, "sent", EARLIEST, clock + MAX_AHEAD)
    if alert.expires is not None:
        _check_time(alert.expires, "expires", EARLIEST, LATEST_EXPIRY)
