"""Domain model shared by sources, the dispatcher core and channels.

Frozen dataclasses and enums only: no I/O, no framework imports. The Alert uses
the CAP 1.2 vocabulary (https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html)
because the service publishes CAP and JMA's vocabulary maps onto it:

    JMA Status 通常 / 訓練 / 試験   -> Status.ACTUAL / EXERCISE / TEST
    JMA InfoType 発表 / 訂正 / 取消 -> MsgType.ALERT / UPDATE / CANCEL
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# Japan Standard Time, the time residents and operators read (Japan keeps no summer time).
JST = timezone(timedelta(hours=9), "JST")


class Status(enum.StrEnum):
    """CAP ``status``: whether an alert is real. Only ACTUAL reaches the public."""

    ACTUAL = "actual"
    EXERCISE = "exercise"
    TEST = "test"
    DRAFT = "draft"


class MsgType(enum.StrEnum):
    """CAP ``msgType``: a new alert, a correction of one, or its withdrawal."""

    ALERT = "alert"
    UPDATE = "update"
    CANCEL = "cancel"


class Severity(enum.StrEnum):
    """CAP ``severity``."""

    EXTREME = "extreme"
    SEVERE = "severe"
    MODERATE = "moderate"
    MINOR = "minor"
    UNKNOWN = "unknown"


class Urgency(enum.StrEnum):
    """CAP ``urgency``."""

    IMMEDIATE = "immediate"
    EXPECTED = "expected"
    FUTURE = "future"
    PAST = "past"
    UNKNOWN = "unknown"


class Certainty(enum.StrEnum):
    """CAP ``certainty``."""

    OBSERVED = "observed"
    LIKELY = "likely"
    POSSIBLE = "possible"
    UNLIKELY = "unlikely"
    UNKNOWN = "unknown"


class Priority(enum.IntEnum):
    """Queue order of deliveries: lower is sent first.

    大津波警報・津波警報, 特別警報, 緊急地震速報 and evacuation orders are CRITICAL;
    警報 are HIGH; information without a warning level is NORMAL; 注意報 and
    routine notices are LOW.
    """

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


class DeliveryState(enum.StrEnum):
    """Life of one delivery row: ``queued → sending → delivered | failed | superseded | expired``.

    The one list of the states in Python; ``delivery_state`` in ``dispatcher/store/schema.sql``
    is the same in the database.
    """

    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


# Languages residents can choose. "ja-easy" is やさしい日本語.
LANGUAGES: tuple[str, ...] = ("ja", "ja-easy", "en")


@dataclass(frozen=True, slots=True)
class Area:
    """One area an alert concerns.

    ``codes`` are JMA area codes (市町村等 such as ``2220300``, or 府県予報区,
    一次細分, まとめ地域, 津波予報区, 震央地名 codes) or district codes of a geo
    layer. ``polygons`` are CAP-style rings of (latitude, longitude) pairs;
    ``circles`` are (latitude, longitude, radius_km).
    """

    description: str
    codes: tuple[str, ...] = ()
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[tuple[float, float, float], ...] = ()
    # Family-specific facts about this area: e.g. {"intensity": "3"} for a
    # municipality in 震源・震度情報, {"warnings": "大雨警報,洪水注意報"} for VPWW54.
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """A normalised alert from any source, in CAP 1.2 terms.

    ``identifier`` is unique per ``sender``; a second arrival of the same pair
    is the same alert (the database enforces it). ``series_key`` groups the
    telegrams of one JMA series (title + office + status [+ event id]); the
    newest ``sent`` of a series wins. ``references`` lists identifiers of
    alerts an update or cancel replaces.
    """

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    event: str
    severity: Severity
    urgency: Urgency
    certainty: Certainty
    headline: str
    source: str
    priority: Priority = Priority.NORMAL
    references: tuple[str, ...] = ()
    description: str = ""
    instruction: str = ""
    areas: tuple[Area, ...] = ()
    expires: datetime | None = None
    series_key: str | None = None
    # The source's own kind of message, e.g. JMA's data type "VPWW54".
    kind: str = ""
    # Family-specific structured facts (magnitude, epicentre, max intensity…),
    # JSON-serialisable, used by templates.
    details: Mapping[str, Any] = field(default_factory=dict)
    # Where the document it was read from came from (feed entry URL, webhook id);
    # the document itself is stored once, in ``documents.content``.
    original_url: str | None = None
    # The address of its public page, minted by the service when it is stored
    # (``/alerts/<public_id>``): never a string a sender chose. Empty until stored.
    public_id: str = ""

    @property
    def area_codes(self) -> tuple[str, ...]:
        """Every code of every area, in order, without duplicates."""
        seen: dict[str, None] = {}
        for area in self.areas:
            for code in area.codes:
                seen.setdefault(code, None)
        return tuple(seen)

    @property
    def is_public(self) -> bool:
        """Only ``actual`` alerts may reach public channels; the rest are fenced."""
        return self.status is Status.ACTUAL


@dataclass(frozen=True, slots=True)
class Document:
    """A source document recorded together with its alert, in the alert's transaction.

    ``id`` is set when the source claimed the document before fetching it (JMA
    never fetches a telegram twice); without it the pipeline claims ``(source,
    url)`` itself (pushed documents such as broadcasts), so the claim, the alert
    and its deliveries commit together or not at all.
    """

    source: str
    url: str
    content: bytes | None = None
    kind: str = ""
    title: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where one delivery goes: a subscription's address on one channel."""

    delivery_id: int
    address: str
    language: str = "ja"
    subscription_id: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel sends for one alert in one language (``Channel.render``)."""

    text: str
    language: str
    subject: str = ""
    html: str | None = None
    link: str | None = None
    # Whether this is exercise / test traffic (rendered with a 訓練 marker).
    exercise: bool = False
    # Stable key for providers that accept one (LINE X-Line-Retry-Key,
    # Mastodon Idempotency-Key). Filled in by the dispatcher per delivery.
    idempotency_key: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def with_idempotency_key(self, key: str) -> Message:
        """This message carrying ``key`` (the dispatcher's per-delivery copy; cheaper than ``replace``)."""
        return Message(self.text, self.language, self.subject, self.html, self.link, self.exercise, key, self.extra)
