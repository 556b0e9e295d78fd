"""The residents' conversation: its vocabulary (events, replies, the resident's settings). Pure data.

The rules are :mod:`dispatcher.residents.conversation`; the API is described in the
package docstring (:mod:`dispatcher.residents`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dispatcher.residents.levels import Level

LANGUAGES: tuple[str, ...] = ("ja", "ja-easy", "en", "pt", "vi", "zh")
# Shown on the language buttons, each in its own language.
LANGUAGE_NAMES: dict[str, str] = {
    "ja": "日本語",
    "ja-easy": "やさしい日本語",
    "en": "English",
    "pt": "Português",
    "vi": "Tiếng Việt",
    "zh": "中文",
}
MAX_PLACES = 5
# LINE quick replies take at most 13 items; Telegram keyboards are held to the same.
MAX_BUTTONS = 13
# Telegram callback_data and a sensible LINE postback: at most 64 bytes of UTF-8.
MAX_DATA_BYTES = 64
DISTRICTS_PER_PAGE = 8
# Quiet-hour choices offered (start, end) in minutes after midnight, Japan time.
QUIET_CHOICES: tuple[tuple[int, int], ...] = ((21 * 60, 6 * 60), (22 * 60, 7 * 60), (23 * 60, 6 * 60))


class Step(enum.StrEnum):
    """Where the conversation is: what a typed text means."""

    LANGUAGE = "language"
    PLACES = "places"
    LEVEL = "level"
    QUIET = "quiet"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class Place:
    """One of a resident's places: a label and the codes it follows.

    A district chosen from the list follows its code; a shared location follows the
    district and hazard zones found there. ``lat``/``lon`` are kept only when the
    resident asked to keep the point (None otherwise).
    """

    label: str
    codes: tuple[str, ...]
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class Quiet:
    """Quiet hours, minutes after midnight Japan time; ``start > end`` spans midnight."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < 1440 and 0 <= self.end < 1440) or self.start == self.end:
            raise ValueError(f"bad quiet hours {self.start}-{self.end}")

    def label(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}–{self.end // 60:02d}:{self.end % 60:02d}"


@dataclass(frozen=True, slots=True)
class Resident:
    """Everything the service keeps about one resident on one channel address.

    ``language`` None: not chosen yet. ``onboarded``: the first run through language,
    places, level and quiet hours is over (later choices go back to the settings).
    ``pending_point``: the last shared location, waiting for "keep the point?" (the
    index of its place, lat, lon); any other event drops it.
    """

    channel: str
    address: str
    language: str | None = None
    places: tuple[Place, ...] = ()
    level: Level = Level.ALL
    quiet: Quiet | None = None
    step: Step = Step.LANGUAGE
    onboarded: bool = False
    pending_point: tuple[int, float, float] | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code the resident's places follow, without duplicates."""
        return tuple(dict.fromkeys(c for p in self.places for c in p.codes))

    @property
    def lang(self) -> str:
        return self.language or "ja"


# -- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Follow:
    """The resident opened the bot (Telegram /start is a :class:`Command`; LINE follow)."""


@dataclass(frozen=True, slots=True)
class Unfollow:
    """The resident blocked or left the bot: everything about them is deleted, nothing sent."""


@dataclass(frozen=True, slots=True)
class Text:
    """A typed text that is not a command."""

    text: str


@dataclass(frozen=True, slots=True)
class Command:
    """``/name arg`` (name without the slash, lower case): start, places, settings, latest, test, stop, help."""

    name: str
    arg: str = ""


@dataclass(frozen=True, slots=True)
class SharedLocation:
    """A location the resident shared."""

    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Press:
    """A button press (Telegram callback_data, LINE postback data)."""

    data: str


Event = Follow | Unfollow | Text | Command | SharedLocation | Press


# -- what comes out ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Button:
    """A button: its label and the data its press sends back (<= 64 bytes UTF-8)."""

    label: str
    data: str

    def __post_init__(self) -> None:
        if len(self.data.encode()) > MAX_DATA_BYTES:
            raise ValueError(f"button data over {MAX_DATA_BYTES} bytes: {self.data!r}")


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to the resident: text and at most :data:`MAX_BUTTONS` buttons.

    ``columns``: buttons per keyboard row (Telegram). ``edit``: this replaces the
    message whose button was pressed (a keyboard page), where the provider can.
    """

    text: str
    buttons: tuple[Button, ...] = ()
    columns: int = 2
    edit: bool = False

    def __post_init__(self) -> None:
        if len(self.buttons) > MAX_BUTTONS:
            raise ValueError(f"{len(self.buttons)} buttons: at most {MAX_BUTTONS}")

    def rows(self) -> list[list[Button]]:
        """The buttons in rows of ``columns``."""
        n = max(1, self.columns)
        return [list(self.buttons[i : i + n]) for i in range(0, len(self.buttons), n)]


class Request(enum.StrEnum):
    """Work the adapter does with I/O and answers with a ``*_reply`` function of this module."""

    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`handle` decided.

    ``resident`` None: delete everything about the resident (/stop, unfollow).
    ``changed``: the settings differ from before (store them). ``request``: the
    adapter must also answer it (``Request.LATEST`` → :func:`latest_reply`).
    """

    resident: Resident | None
    replies: tuple[Reply, ...] = ()
    changed: bool = False
    request: Request | None = None


# -- the geography the conversation needs ------------------------------------


@dataclass(frozen=True, slots=True)
class District:
    """A district residents can pick: its code and names."""

    code: str
    name: str
    name_en: str = ""

    def label(self, language: str) -> str:
        """Japanese name for ja, ja-easy and zh (kanji read there); the English one otherwise."""
        if language in ("ja", "ja-easy", "zh") or not self.name_en:
            return self.name
        return self.name_en


@dataclass(frozen=True, slots=True)
class PointMatch:
    """What a shared location lies in: its district (None: outside the city) and hazard zones."""

    district: District | None
    zone_codes: tuple[str, ...] = ()
    zone_kinds: tuple[str, ...] = ()


class Directory(Protocol):
    """The districts and the point matching the conversation uses (in memory; see ``directory.py``)."""

    def districts(self) -> Sequence[District]: ...

    def locate(self, lat: float, lon: float) -> PointMatch: ...

    def search(self, text: str) -> Sequence[District]: ...


# -- answers to requests -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatestItem:
    """One past alert for /latest: when (already formatted), its headline in the resident's language, link."""

    when: str
    headline: str
    link: str = ""
