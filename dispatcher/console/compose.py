"""A composed message → the Alert it sends, its retraction, and the previews of what each channel will send.

Where a message goes is a list of tokens: district codes of the geo layer (in the
layer's order), ``zone:<kind>`` (every hazard zone of that kind: "土砂災害警戒区域 全域")
and ``city`` (市内全域: every district and the city's JMA code, as the broadcast
system's ``all``). Its words are the author's, per language (``texts``); the alert
carries them in ``details["texts"]`` and names the channels' ``console`` template,
which frames them (:mod:`channels.templates`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from channels.lengths import LIMITS
from dispatcher.console.messages import MessageKind, Retraction
from dispatcher.model import LANGUAGES, Alert, Area, Message, MsgType, Status
from geo import GeoIndex

JST = timezone(timedelta(hours=9))
SOURCE = "console"
CITY = "city"
ZONE = "zone:"
CITY_CODE = "2220300"
MAX_TEXT = 2000
MAX_HEADLINE = 200
LANGUAGE_NAMES = {"ja": "日本語", "ja-easy": "やさしい日本語", "en": "English"}
CITY_NAMES = {"ja": "沼津市", "ja-easy": "ぬまづし", "en": "Numazu City"}
CITY_LABELS = {"ja": "市内全域", "ja-easy": "ぬまづしの ぜんぶ", "en": "all of Numazu City"}
SEPARATORS = {"ja": "、", "ja-easy": "、", "en": ", "}
ZONE_LABELS: dict[str, dict[str, str]] = {
    "landslide": {
        "ja": "土砂災害警戒区域 全域",
        "ja-easy": "がけくずれの きけんな ところ ぜんぶ",
        "en": "all landslide warning zones",
    },
    "flood": {
        "ja": "洪水浸水想定区域 全域",
        "ja-easy": "こうずいで みずに つかる ところ ぜんぶ",
        "en": "all flood inundation zones",
    },
    "tsunami": {
        "ja": "津波浸水想定区域 全域",
        "ja-easy": "つなみで みずに つかる ところ ぜんぶ",
        "en": "all tsunami inundation zones",
    },
    "storm_surge": {
        "ja": "高潮浸水想定区域 全域",
        "ja-easy": "たかしおで みずに つかる ところ ぜんぶ",
        "en": "all storm surge zones",
    },
    "inland_flood": {
        "ja": "内水浸水想定区域 全域",
        "ja-easy": "まちの なかで みずに つかる ところ ぜんぶ",
        "en": "all inland flooding zones",
    },
}


class Renderer(Protocol):
    """What the previews need of a channel (``channels.base.Channel``)."""

    @property
    def name(self) -> str: ...

    @property
    def max_text_length(self) -> int: ...

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message: ...

    def measure(self, text: str) -> int: ...


def zone_kinds(geo: GeoIndex) -> list[tuple[str, int]]:
    """The hazard-zone kinds of the layers, with how many zones each has."""
    counts: dict[str, int] = {}
    for layer in geo.hazards:
        for zone in layer:
            counts[zone.kind] = counts.get(zone.kind, 0) + 1
    return list(counts.items())


def clean_areas(tokens: Sequence[str], geo: GeoIndex) -> list[str]:
    """The known tokens of ``tokens``, each once, in a fixed order: city, districts (layer order), zones."""
    wanted = set(tokens)
    out = [CITY] if CITY in wanted else []
    out += [d.code for d in geo.districts if d.code in wanted]
    out += [ZONE + kind for kind, _n in zone_kinds(geo) if ZONE + kind in wanted]
    return out


def area_label(token: str, geo: GeoIndex, language: str = "ja") -> str:
    if token == CITY:
        return CITY_LABELS.get(language, CITY_LABELS["ja"])
    if token.startswith(ZONE):
        kind = token[len(ZONE) :]
        return ZONE_LABELS.get(kind, {}).get(language) or ZONE_LABELS.get(kind, {}).get("ja") or kind
    district = geo.districts.get(token)
    if district is None:
        return token
    if language == "en":
        return str(district.properties.get("name_en") or district.name)
    return district.name


def area_names(tokens: Sequence[str], geo: GeoIndex, language: str = "ja") -> str:
    """Where the message goes, as residents of ``language`` read it: 戸田、西浦 / Heda, Nishiura."""
    if CITY in tokens:
        return area_label(CITY, geo, language)
    return SEPARATORS.get(language, "、").join(area_label(t, geo, language) for t in tokens)


def to_areas(tokens: Sequence[str], geo: GeoIndex, level: int | None = None) -> tuple[Area, ...]:
    """The alert's areas: one per district or zone kind; the whole city as the city and all its districts."""
    details = {"level": str(level)} if level else {}
    if CITY in tokens:
        return (Area("沼津市", (CITY_CODE, *(d.code for d in geo.districts)), details=details),)
    areas: list[Area] = []
    for token in tokens:
        if token.startswith(ZONE):
            kind = token[len(ZONE) :]
            ids = tuple(z.code for layer in geo.hazards for z in layer if z.kind == kind)
            areas.append(Area(area_label(token, geo), ids, details={**details, "zone_kind": kind}))
        elif geo.districts.get(token) is not None:
            areas.append(Area(area_label(token, geo), (token,), details=details))
    return tuple(areas)


def prefill(
    kind: MessageKind | Retraction, tokens: Sequence[str], geo: GeoIndex, **extra: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """(headline, text) per language the form starts with for ``tokens``; ``extra``: more values per language."""
    out = {}
    for language in LANGUAGES:
        values = {"areas": area_names(tokens, geo, language), "city": CITY_NAMES[language]}
        values.update({k: v.get(language) or v.get("ja", "") for k, v in extra.items()})
        out[language] = kind.prefill(language, values)
    return out


@dataclass(frozen=True, slots=True)
class Draft:
    """What a compose form says: the kind, where, the words per language, until when."""

    kind: str
    areas: tuple[str, ...]
    texts: Mapping[str, tuple[str, str]]
    expires: datetime | None
    problems: tuple[str, ...] = ()

    def stored_texts(self) -> dict[str, dict[str, str]]:
        """``texts`` as stored: languages with a headline only."""
        return {lang: {"headline": h, "text": t} for lang, (h, t) in self.texts.items() if h.strip()}


def parse_expiry(text: str) -> datetime | None:
    """A ``datetime-local`` value, read as JST; None when it is not one."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=JST)


def check_draft(draft: Draft, *, known_kind: bool, now: datetime, max_hours: float) -> list[str]:
    """What is wrong with ``draft`` (an empty list: it may be submitted)."""
    problems = list(draft.problems)
    if not known_kind:
        problems.append(f"unknown kind of message {draft.kind!r}")
    if not draft.areas:
        problems.append("choose at least one district (on the map or in the list), a zone, or the whole city")
    headline, text = draft.texts.get("ja", ("", ""))
    if not headline.strip() or not text.strip():
        problems.append("the Japanese headline and text are required")
    for lang, (h, t) in draft.texts.items():
        if len(h) > MAX_HEADLINE or len(t) > MAX_TEXT:
            problems.append(
                f"{LANGUAGE_NAMES.get(lang, lang)}: at most {MAX_HEADLINE} characters of headline and"
                f" {MAX_TEXT} of text"
            )
    if draft.expires is None:
        problems.append("the expiry must be a date and time (JST)")
    elif draft.expires <= now:
        problems.append("the expiry is in the past: give a time after now")
    elif draft.expires > now + timedelta(hours=max_hours):
        problems.append(f"the expiry may be at most {max_hours:g} hours ahead")
    return problems


@dataclass(frozen=True, slots=True)
class Origin:
    """Who made the message, for the alert's details and the audit log."""

    message_id: int
    exercise: bool
    sender: str
    sender_name: str
    people: Mapping[str, str] = field(default_factory=dict)


def identifier(message_id: int) -> str:
    return f"console-{message_id}"


def build_alert(
    draft: Draft,
    kind: MessageKind,
    geo: GeoIndex,
    origin: Origin,
    *,
    sent: datetime,
    replaces: str | None = None,
) -> Alert:
    """The Alert a message sends when approved (an update when it ``replaces`` an alert's identifier)."""
    texts = draft.stored_texts()
    ja = texts["ja"]
    details: dict[str, Any] = {
        "template": "console",
        "texts": texts,
        "message_id": origin.message_id,
        "kind": kind.key,
        "areas": list(draft.areas),
        "sender_name": origin.sender_name,
        **origin.people,
    }
    return Alert(
        identifier=identifier(origin.message_id),
        sender=origin.sender,
        sent=sent,
        status=Status.EXERCISE if origin.exercise else Status.ACTUAL,
        msg_type=MsgType.UPDATE if replaces else MsgType.ALERT,
        event=kind.event,
        severity=kind.severity,
        urgency=kind.urgency,
        certainty=kind.certainty,
        headline=ja["headline"],
        source=SOURCE,
        priority=kind.priority,
        references=(replaces,) if replaces else (),
        description=ja["text"],
        areas=to_areas(draft.areas, geo, kind.level),
        expires=draft.expires,
        kind=SOURCE,
        details=details,
    )


def retraction_alert(original: Alert, texts: Mapping[str, tuple[str, str]], *, sent: datetime, by: str) -> Alert:
    """The 取消/誤報 of ``original``: a cancel naming it, to the same areas, with the same source and sender."""
    stored = {lang: {"headline": h, "text": t} for lang, (h, t) in texts.items() if h.strip()}
    expires = max(original.expires or sent, sent + timedelta(hours=1))
    details = {**original.details, "texts": stored, "cancelled_by": by, "retracts": original.identifier}
    return replace(
        original,
        identifier=f"{original.identifier}-cancel",
        sent=sent,
        msg_type=MsgType.CANCEL,
        references=(original.identifier,),
        headline=stored["ja"]["headline"],
        description=stored["ja"]["text"],
        expires=min(expires, sent + timedelta(hours=24)),
        details=details,
        public_id="",
    )


@dataclass(frozen=True, slots=True)
class Preview:
    """What one channel will send in one language, and its length as the provider counts it."""

    channel: str
    language: str
    subject: str
    text: str
    length: int
    limit: int
    unit: str = "characters"

    @property
    def over(self) -> bool:
        return self.length > self.limit


def preview_alert(alert: Alert, now: datetime) -> Alert:
    """``alert`` with a public id of the real one's length, so that the previewed link is as long as the sent one."""
    return replace(alert, public_id=now.astimezone(JST).strftime("%Y%m%d") + "-xxxxxxxx")


def previews(alert: Alert, renderers: Mapping[str, Renderer], now: datetime) -> list[Preview]:
    """Every enabled channel's message in every language, rendered by the channel itself."""
    shown = preview_alert(alert, now)
    out = []
    for name, channel in renderers.items():
        for language in LANGUAGES:
            message = channel.render(shown, language)
            limit = LIMITS.get(name)
            out.append(
                Preview(
                    name,
                    language,
                    message.subject,
                    message.text,
                    channel.measure(message.text),
                    channel.max_text_length,
                    limit.unit if limit else "characters",
                )
            )
    return out


def reference_counts(text: str, enabled: Sequence[str]) -> list[Preview]:
    """How the providers not enabled here would count ``text`` (for staff preparing for them)."""
    return [
        Preview(name, "ja", "", "", rule.measure(text), rule.maximum, rule.unit)
        for name, rule in LIMITS.items()
        if name not in enabled
    ]
