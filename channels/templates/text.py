"""Template text as residents get it: line by line, shortened to fit, times in JST.

A template is rendered with :meth:`str.format_map` over a mapping whose missing keys
render as empty text; a template line whose placeholders all rendered empty is
dropped, so "マグニチュード: {magnitude}" disappears when the magnitude is unknown.

**Shortening** keeps what a resident must read: when the text does not fit, the lines
made of the source's free text (``{headline}``, ``{description}``) are cut first, at a
line boundary and ending in the ellipsis; the place line, the instruction lines, the
"ほかN地域" line and the link stay. Only if those alone do not fit is the whole cut
from its end (:func:`truncate`), and the link still kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

from channels.templates.packs import Blank, fields

JST = timezone(timedelta(hours=9), "JST")

# Lines made of these placeholders are the source's free text: cut first when shortening.
_CUTTABLE = frozenset({"headline", "description"})
# Placeholders that name where, not what: a line with nothing else to say is dropped.
_CONTEXT = frozenset({"place"})
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_time(value: str, fmt: str, events: Mapping[str, str]) -> str:
    """An ISO date-time from a telegram by ``fmt`` in JST, else the text as the pack translates it."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return events.get(value, value)
    return format_sent(when if when.tzinfo else when.replace(tzinfo=JST), fmt)


def format_sent(sent: datetime, fmt: str) -> str:
    """Format ``sent`` in JST; a naive datetime is taken as UTC."""
    aware = sent if sent.tzinfo is not None else sent.replace(tzinfo=UTC)
    jst = aware.astimezone(JST)
    values = Blank(
        year=str(jst.year),
        month=str(jst.month),
        month2=f"{jst.month:02d}",
        month_abbr=_MONTH_ABBR[jst.month - 1],
        day=str(jst.day),
        hour=str(jst.hour),
        hour2=f"{jst.hour:02d}",
        minute=f"{jst.minute:02d}",
    )
    return fmt.format_map(values)


def render_lines(fmt: str, values: Mapping[str, str]) -> list[tuple[str, bool]]:
    """Rendered lines, each with whether it is the source's free text (cut first when shortening).

    Lines whose placeholders all came out empty are dropped, and so are lines
    whose only non-empty placeholder is the reader's place.
    """
    blank = Blank(values)
    lines: list[tuple[str, bool]] = []
    for line in fmt.split("\n"):
        names = fields(line)
        # "{place}: {place_tsunami}" says nothing when only the place is known.
        facts = [name for name in names if name not in _CONTEXT] or names
        if facts and not any(blank[name] for name in facts):
            continue
        lines.append((line.format_map(blank), any(name in _CUTTABLE for name in names)))
    return lines


def render(fmt: str, values: Mapping[str, str]) -> str:
    """Render line by line, dropping lines whose placeholders all came out empty."""
    return "\n".join(line for line, _ in render_lines(fmt, values))


def shorten(lines: list[tuple[str, bool]], max_length: int, *, tail: str, ellipsis: str) -> str:
    """Join ``lines`` plus ``tail`` within ``max_length``, cutting the free-text lines first.

    The free-text lines are cut from the last one back, each at a line boundary
    inside it and ending in ``ellipsis``; one that cannot keep a useful start is
    dropped. If the other lines alone do not fit, :func:`truncate` cuts the whole.
    """
    joiner = "\n" if tail else ""

    def size(ls: list[tuple[str, bool]]) -> int:
        return sum(len(t) for t, _ in ls) + max(0, len(ls) - 1) + len(joiner) + len(tail)

    work = list(lines)
    excess = size(work) - max_length
    for i in range(len(work) - 1, -1, -1):
        if excess <= 0:
            break
        text, cuttable = work[i]
        if not cuttable:
            continue
        keep = len(text) - excess - len(ellipsis)
        head = text[: max(0, keep)]
        cut = head.rfind("\n")
        head = head[:cut] if cut > 0 else head
        if len(head.strip()) < 8:  # not worth a line: drop it
            work.pop(i)
        else:
            work[i] = (head.rstrip() + ellipsis, True)
        excess = size(work) - max_length
    text = "\n".join(t for t, _ in work).strip()
    return truncate(text, max_length, tail=tail, ellipsis=ellipsis)


def truncate(text: str, max_length: int, *, tail: str = "", ellipsis: str = "…") -> str:
    """Fit ``text`` plus ``tail`` into ``max_length`` characters.

    Cuts at a line boundary and marks the cut with ``ellipsis``; ``tail`` (the
    link line) is always kept. Only when even the first line does not fit is it
    cut mid-line.
    """
    joiner = "\n" if tail else ""
    if len(text) + len(joiner) + len(tail) <= max_length:
        return f"{text}{joiner}{tail}"
    if len(tail) + len(ellipsis) + 1 > max_length:
        # No room for the link: a message without it is better than none.
        tail, joiner = "", ""
    budget = max_length - len(joiner) - len(tail) - len(ellipsis)
    head = text[:budget]
    cut = head.rfind("\n")
    if cut > 0:
        head = head[:cut]
    return f"{head.rstrip()}{ellipsis}{joiner}{tail}"[:max_length]
