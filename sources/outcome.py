"""What a parser makes of one document: :class:`Parsed`, :class:`Unsupported` or :class:`Failed`.

One outcome type for every parser that turns a document from outside into
``dispatcher.model.Alert`` (the JMA telegram parser, ``sources.jma.parser``, and the CAP
1.2 parser, ``sources.cap``): a parser never raises for bad input, it answers with one
of these. A source stores every document whatever its outcome (``documents``), delivers
only what was parsed, and reports the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dispatcher.model import Alert, Certainty, MsgType, Priority, Severity, Status, Urgency

__all__ = ["UNRATED", "Failed", "ParseOutcome", "Parsed", "Rating", "Unsupported", "describe"]


@dataclass(frozen=True, slots=True)
class Rating:
    """CAP severity / urgency / certainty and the dispatcher's queue priority."""

    severity: Severity
    urgency: Urgency
    certainty: Certainty
    priority: Priority


# Nothing known about how alarming a document is.
UNRATED = Rating(Severity.UNKNOWN, Urgency.UNKNOWN, Certainty.UNKNOWN, Priority.NORMAL)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A document normalised to an Alert; ``problems`` lists parts it could not use (a bad CAP shape)."""

    alert: Alert
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A well-formed document of a kind we do not disseminate (yet): stored and reported, not delivered.

    ``kind`` is what the document is: a JMA data-type code (``VPWW54``, ``feed`` for
    an Atom feed) or a CAP version (``1.0``, ``""`` when not CAP at all). What the
    envelope said is kept where the format has it, so that a report can name the
    series and an unknown but alarming new type (2026's 危険警報) can be reported
    loudly: ``rating`` is what the severity table makes of its title.
    """

    kind: str
    reason: str
    title: str = ""
    series_key: str | None = None
    head_title: str = ""
    sent: datetime | None = None
    status: Status | None = None
    msg_type: MsgType | None = None
    rating: Rating = UNRATED


@dataclass(frozen=True, slots=True)
class Failed:
    """The input could not be read as what the parser reads (unsafe, malformed, incomplete)."""

    error: str


ParseOutcome = Parsed | Unsupported | Failed


def describe(outcome: Unsupported | Failed) -> str:
    """Why ``outcome`` is not an alert, in one line."""
    return outcome.reason if isinstance(outcome, Unsupported) else outcome.error
