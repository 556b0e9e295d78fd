"""Limits on what we accept from outside, checked before it reaches PostgreSQL or a page.

A request body, a query string or a path segment may carry anything: a 20 KB sender
(too large for a unique index's row), a NUL (PostgreSQL ``text`` cannot hold one), a
lone surrogate (not UTF-8 at all), a year PostgreSQL or Python cannot represent, an
integer wider than ``bigint``. Every intake checks its fields here, so a caller's
mistake is a 4xx that says what is wrong and never a database error.

Each check returns ``None`` when the value is fine, else a short reason (safe to show
the caller: it quotes at most :data:`QUOTE` characters of what was sent).

A leaf module (standard library only): sources, the web app and the configuration
loader use it alike.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

__all__ = [
    "BIGINT_MAX",
    "EARLIEST",
    "INT_MAX",
    "MAX_ITEMS",
    "MAX_NAME",
    "bad_character",
    "integer_problem",
    "name_problem",
    "quote",
    "text_problem",
    "time_problem",
]

# Identifiers, senders, group names, references: stored, and some indexed
# (alerts (sender, identifier), documents (source, url)); B-tree rows top out near 2.7 kB.
MAX_NAME = 200
# Items of a list field (groups, references).
MAX_ITEMS = 100
# PostgreSQL integer and bigint.
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
# No alert we handle was issued before this; anything earlier is a mistake (or year 1).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# How far ahead of our clock a time of issue may be (clock skew, time zones).
FUTURE_SLACK = timedelta(days=1)
# Characters of a refused value quoted back.
QUOTE = 60

# Unicode categories never allowed in a name: controls (NUL, C1), format characters
# (bidi overrides, zero-width), surrogates (not encodable) and unassigned points.
_NAME_BANNED = frozenset({"Cc", "Cf", "Cs", "Cn"})
# In free text only what PostgreSQL or UTF-8 cannot hold, and the other C0/C1 controls.
_TEXT_BANNED = frozenset({"Cc", "Cs"})
_TEXT_ALLOWED = frozenset("\t\n\r")


def quote(value: object) -> str:
    """``repr(value)``, cut to :data:`QUOTE` characters: what a reason may echo back."""
    text = repr(value)
    return text if len(text) <= QUOTE else text[: QUOTE - 1] + "…"


def bad_character(text: str, *, name: bool = True) -> str | None:
    """The first character a name (``name``) or a free text may not contain, as ``U+0000``."""
    banned = _NAME_BANNED if name else _TEXT_BANNED
    for ch in text:
        if unicodedata.category(ch) in banned and (name or ch not in _TEXT_ALLOWED):
            return f"U+{ord(ch):04X}"
    return None


def name_problem(value: object, what: str, *, max_length: int = MAX_NAME) -> str | None:
    """``value`` as a name: a string of 1 to ``max_length`` printable characters, not blank."""
    if not isinstance(value, str) or not value.strip():
        return f"{what} must be a non-empty string"
    if len(value) > max_length:
        return f"{what} must be at most {max_length} characters (it has {len(value)})"
    bad = bad_character(value)
    if bad is not None:
        return f"{what} must not contain control or format characters ({bad})"
    return None


def text_problem(value: object, what: str, *, max_length: int) -> str | None:
    """``value`` as free text: a string of at most ``max_length`` characters, line breaks allowed."""
    if not isinstance(value, str):
        return f"{what} must be a string"
    if len(value) > max_length:
        return f"{what} is longer than {max_length} characters"
    bad = bad_character(value, name=False)
    if bad is not None:
        return f"{what} must not contain control characters ({bad})"
    return None


def time_problem(value: datetime, what: str, *, now: datetime | None = None) -> str | None:
    """A time of issue: with a zone, from :data:`EARLIEST` to a day after ``now``."""
    if value.tzinfo is None:
        return f"{what} has no UTC offset (e.g. +09:00)"
    latest = (now or datetime.now(UTC)) + FUTURE_SLACK
    try:
        inside = EARLIEST <= value <= latest
    except OverflowError:  # year 1 at +14:00 is before year 1 in UTC
        inside = False
    if not inside:
        return f"{what} {value.isoformat()} is out of range ({EARLIEST:%Y-%m-%d} to a day from now)"
    return None


def integer_problem(text: str, what: str, *, low: int = 0, high: int = BIGINT_MAX) -> str | None:
    """``text`` as a decimal integer from ``low`` to ``high`` (default: what a ``bigint`` id holds)."""
    # str.isdigit() is true for '²' and other digits int() refuses; compare to ASCII.
    body = text[1:] if text[:1] == "-" else text
    if not body or len(body) > 20 or not all("0" <= ch <= "9" for ch in body):
        return f"{what} must be an integer from {low} to {high}, not {quote(text)}"
    number = int(text)
    if not low <= number <= high:
        return f"{what} must be an integer from {low} to {high}, not {quote(text)}"
    return None
