"""Resident-facing message text from per-language templates, never machine translation.

Each language is one TOML file in ``config/templates/`` (``ja.toml``, ``ja-easy.toml``,
``en.toml``), read with :mod:`tomllib` (https://toml.io/en/v1.0.0). A file has:

``[meta]``
    ``exercise_marker`` (put first in subject and text of exercise / test alerts),
    ``exercise_note``, ``datetime_format``, ``area_separator``, ``max_areas``,
    ``more_areas``, ``link_line``, ``ellipsis``.
``[events]``
    JMA event name → the name residents read in this language (empty for ``ja``).
``[places]``, ``[intensity]``
    Area names and seismic intensity values (``5-`` → ``5弱`` / ``5 lower``).
``[aliases]``
    Event name → template key, for events sharing a template (震度速報 → 震源・震度情報).
``[templates.<key>]``
    ``subject`` and ``text`` per event; ``default`` is the fallback and ``取消`` is
    used for every cancellation.

Templates are rendered with :meth:`str.format_map` over a mapping whose missing keys
render as empty text; a template line whose placeholders all rendered empty is
dropped, so "マグニチュード: {magnitude}" disappears when the magnitude is unknown.
Placeholders are listed in :data:`PLACEHOLDERS`; every key of ``alert.details`` and of
the areas' ``details`` is also available under its own name.
"""

from __future__ import annotations

import importlib.resources
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dispatcher.model import Alert, Message, MsgType

JST = timezone(timedelta(hours=9), "JST")

DEFAULT_LANGUAGE = "ja"

# The city's own JMA area codes: when an alert lists several municipalities (震度
# 情報 lists every one that shook), Numazu's own details win for {intensity}.
LOCAL_AREA_CODES: tuple[str, ...] = ("2220300", "22203")

PLACEHOLDERS: dict[str, str] = {
    "headline": "JMA / source headline, verbatim",
    "description": "source description, verbatim",
    "instruction": "source instruction, verbatim",
    "event": "source event name, verbatim (e.g. 津波警報)",
    "event_name": "event name in this language ([events] table, else the original)",
    "areas": "area descriptions in this language, joined by meta.area_separator",
    "area_count": "number of areas",
    "sent": "sent time in JST by meta.datetime_format",
    "identifier": "alert identifier",
    "kind": "source message kind (e.g. VXSE53)",
    "max_intensity": "details['max_intensity'] via [intensity]",
    "intensity": "area details 'intensity' (Numazu's first) via [intensity]",
    "magnitude": "details['magnitude']",
    "epicenter": "details['epicenter'] (or 'epicentre', 'hypocenter')",
    "depth": "details['depth']",
    "warnings": "details / area details 'warnings' (comma separated), translated",
}

# Names the source may use for the same fact; the first spelling is canonical.
_DETAIL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "epicenter": ("epicentre", "hypocenter", "hypocentre"),
    "max_intensity": ("maxint", "max_int"),
}

_META_DEFAULTS: dict[str, Any] = {
    "exercise_marker": "【訓練】",
    "exercise_note": "",
    "datetime_format": "{year}年{month}月{day}日 {hour}時{minute}分",
    "area_separator": "、",
    "max_areas": 10,
    "more_areas": "ほか{count}地域",
    "link_line": "{link}",
    "ellipsis": "…",
}

_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class TemplateError(ValueError):
    """A template file is malformed; the message names the file and the key."""


class _Blank(dict[str, str]):
    """A format mapping where a missing placeholder renders as empty text."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Template:
    """Subject and text of one event in one language."""

    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class LanguagePack:
    """Everything loaded from one ``config/templates/<language>.toml``."""

    language: str
    meta: Mapping[str, Any]
    templates: Mapping[str, Template]
    events: Mapping[str, str] = field(default_factory=dict)
    places: Mapping[str, str] = field(default_factory=dict)
    intensity: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)


def _fields(fmt: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]


def _check_format(fmt: str, where: str) -> None:
    """Reject what format_map cannot render safely, so compose never raises."""
    try:
        names = _fields(fmt)
        for name in names:
            if not name.isidentifier():
                # Positional ({}) and attribute/index ({a.b}, {a[0]}) fields could
                # raise at render time or reach into objects: only plain names.
                raise TemplateError(f"{where}: placeholder {{{name}}} is not a plain name")
        fmt.format_map(_Blank())
    except (ValueError, IndexError, KeyError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"{where}: bad format string: {exc}") from exc


def _str_table(data: Mapping[str, Any], table: str, where: str) -> dict[str, str]:
    raw = data.get(table, {})
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: [{table}] must be a table")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise TemplateError(f"{where}: {table}.{key!r} must be a string")
    return dict(raw)


def _parse_pack(language: str, data: Mapping[str, Any], where: str) -> LanguagePack:
    known = {"meta", "events", "places", "intensity", "aliases", "templates"}
    for key in data:
        if key not in known:
            raise TemplateError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    meta_raw = data.get("meta", {})
    if not isinstance(meta_raw, dict):
        raise TemplateError(f"{where}: [meta] must be a table")
    meta: dict[str, Any] = dict(_META_DEFAULTS)
    for key, value in meta_raw.items():
        if key in ("language", "name"):
            continue
        if key not in _META_DEFAULTS:
            raise TemplateError(f"{where}: unknown key meta.{key}")
        if not isinstance(value, type(_META_DEFAULTS[key])):
            raise TemplateError(f"{where}: meta.{key} must be {type(_META_DEFAULTS[key]).__name__}")
        if isinstance(value, str):
            _check_format(value, f"{where}: meta.{key}")
        meta[key] = value

    raw_templates = data.get("templates", {})
    if not isinstance(raw_templates, dict):
        raise TemplateError(f"{where}: [templates] must be a table")
    templates: dict[str, Template] = {}
    for key, entry in raw_templates.items():
        if not isinstance(entry, dict):
            raise TemplateError(f"{where}: templates.{key} must be a table")
        unknown = set(entry) - {"subject", "text"}
        if unknown:
            raise TemplateError(f"{where}: templates.{key}: unknown key(s) {sorted(unknown)}")
        subject, text = entry.get("subject"), entry.get("text")
        if not isinstance(subject, str) or not isinstance(text, str):
            raise TemplateError(f"{where}: templates.{key} needs string 'subject' and 'text'")
        _check_format(subject, f"{where}: templates.{key}.subject")
        _check_format(text, f"{where}: templates.{key}.text")
        templates[key] = Template(subject=subject, text=text.strip("\n"))
    if "default" not in templates:
        raise TemplateError(f"{where}: templates.default is missing (the fallback)")

    aliases = _str_table(data, "aliases", where)
    for event, target in aliases.items():
        if target not in templates:
            raise TemplateError(f"{where}: aliases.{event!r} names unknown template {target!r}")
    return LanguagePack(
        language=language,
        meta=meta,
        templates=templates,
        events=_str_table(data, "events", where),
        places=_str_table(data, "places", where),
        intensity=_str_table(data, "intensity", where),
        aliases=aliases,
    )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def format_sent(sent: datetime, fmt: str) -> str:
    """Format ``sent`` in JST; a naive datetime is taken as UTC."""
    aware = sent if sent.tzinfo is not None else sent.replace(tzinfo=UTC)
    jst = aware.astimezone(JST)
    values = _Blank(
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


def _render(fmt: str, values: Mapping[str, str]) -> str:
    """Render line by line, dropping lines whose placeholders all came out empty."""
    blank = _Blank(values)
    lines: list[str] = []
    for line in fmt.split("\n"):
        names = _fields(line)
        if names and not any(blank[name] for name in names):
            continue
        lines.append(line.format_map(blank))
    return "\n".join(lines)


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


class Templates:
    """All language packs; :meth:`compose` turns an alert into (subject, text)."""

    def __init__(
        self,
        packs: Mapping[str, LanguagePack],
        *,
        local_area_codes: Iterable[str] = LOCAL_AREA_CODES,
    ) -> None:
        if DEFAULT_LANGUAGE not in packs:
            raise TemplateError(f"no templates for the default language {DEFAULT_LANGUAGE!r}")
        self._packs = dict(packs)
        self._local_codes = tuple(local_area_codes)

    @classmethod
    def load(cls, directory: Path | None = None) -> Templates:
        """Read every ``<language>.toml`` of ``directory`` (default: ``config/templates``)."""
        root: Traversable | Path = (
            directory if directory is not None else importlib.resources.files("config").joinpath("templates")
        )
        packs: dict[str, LanguagePack] = {}
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".toml") or not entry.is_file():
                continue
            language = entry.name.removesuffix(".toml")
            where = f"{entry}"
            try:
                data = tomllib.loads(entry.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise TemplateError(f"{where}: {exc}") from exc
            packs[language] = _parse_pack(language, data, where)
        if DEFAULT_LANGUAGE not in packs:
            raise TemplateError(f"{root}: no {DEFAULT_LANGUAGE}.toml")
        return cls(packs)

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages with a template file, the default first."""
        return (DEFAULT_LANGUAGE, *sorted(k for k in self._packs if k != DEFAULT_LANGUAGE))

    def pack(self, language: str) -> LanguagePack:
        """The pack for ``language``, falling back to Japanese."""
        return self._packs.get(language) or self._packs[DEFAULT_LANGUAGE]

    def template_key(self, alert: Alert, language: str) -> str:
        """Which template renders ``alert``: exact event, alias, prefix, family, default."""
        pack = self.pack(language)
        keys = pack.templates
        event = alert.event.strip()
        if alert.msg_type is MsgType.CANCEL and "取消" in keys:
            return "取消"
        if event in keys:
            return event
        if event in pack.aliases:
            return pack.aliases[event]
        # "*氾濫危険情報" matches 狩野川氾濫危険情報: river forecasts start with the river.
        for pattern, target in pack.aliases.items():
            if pattern.startswith("*") and event.endswith(pattern[1:]):
                return target
        # 噴火警報（居住地域） and 緊急地震速報（警報） share their family's template.
        prefixed = [k for k in keys if k not in ("default", "取消") and event.startswith(k)]
        if prefixed:
            return max(prefixed, key=len)
        for suffix in ("特別警報", "警報", "注意報"):
            if event.endswith(suffix) and suffix in keys:
                return suffix
        return "default"

    def values(self, alert: Alert, language: str) -> dict[str, str]:
        """The placeholder values for ``alert`` in ``language``."""
        pack = self.pack(language)
        meta = pack.meta
        values: dict[str, str] = {}

        local = [a for a in alert.areas if any(c in self._local_codes for c in a.codes)]
        for area in (*local, *alert.areas):
            for key, value in area.details.items():
                values.setdefault(key, _as_text(value))
        # Alert-wide facts override area facts of the same name.
        for key, value in alert.details.items():
            values[key] = _as_text(value)
        for canonical, synonyms in _DETAIL_SYNONYMS.items():
            if not values.get(canonical):
                values[canonical] = next((values[s] for s in synonyms if values.get(s)), "")
        for key in ("max_intensity", "intensity"):
            if values.get(key):
                values[key] = pack.intensity.get(values[key], values[key])
        if values.get("warnings"):
            items = [w.strip() for w in values["warnings"].split(",") if w.strip()]
            values["warnings"] = meta["area_separator"].join(pack.events.get(w, w) for w in items)

        names = [pack.places.get(a.description, a.description) for a in alert.areas]
        names = list(dict.fromkeys(n for n in names if n))
        limit = max(1, int(meta["max_areas"]))
        areas = meta["area_separator"].join(names[:limit])
        if len(names) > limit:
            more = meta["more_areas"].format_map(_Blank(count=str(len(names) - limit)))
            areas = f"{areas}{meta['area_separator']}{more}"

        headline, description = alert.headline.strip(), alert.description.strip()
        # JMA's body text often repeats the headline first; say it once.
        if headline and description.startswith(headline):
            description = description[len(headline) :].lstrip()
        values.update(
            headline=headline,
            description=description,
            instruction=alert.instruction.strip(),
            event=alert.event,
            event_name=pack.events.get(alert.event) or alert.event,
            areas=areas,
            area_count=str(len(names)),
            sent=format_sent(alert.sent, meta["datetime_format"]),
            identifier=alert.identifier,
            kind=alert.kind,
        )
        return values

    def compose(self, alert: Alert, language: str, *, max_length: int, link: str | None) -> tuple[str, str]:
        """Render ``alert`` in ``language`` (unknown → ja) as (subject, text).

        Exercise and test alerts start both subject and text with the exercise
        marker. ``text`` ends with the link line when ``link`` is given and is cut
        at a line boundary, ending with the ellipsis, to fit ``max_length``.
        """
        pack = self.pack(language)
        meta = pack.meta
        template = pack.templates[self.template_key(alert, pack.language)]
        values = self.values(alert, pack.language)
        # A subject whose last placeholder was empty must not end in a dangling ":".
        subject = " ".join(template.subject.format_map(_Blank(values)).split()).rstrip(" :：")
        text = _render(template.text, values).strip()
        if not alert.is_public:
            marker = meta["exercise_marker"]
            subject = f"{marker}{subject}"
            note = meta["exercise_note"]
            text = f"{marker}{note}\n{text}" if note else f"{marker}{text}"
        tail = _render(meta["link_line"], _Blank(link=link)) if link else ""
        return subject, truncate(text, max_length, tail=tail, ellipsis=meta["ellipsis"])


def alert_link(public_url: str, alert: Alert) -> str:
    """The public page of ``alert`` on the service's own site (its public id, never the sender's identifier).

    An alert that was not stored has no page yet: the link is the site itself.
    """
    base = public_url.rstrip("/")
    return f"{base}/alerts/{quote(alert.public_id, safe='')}" if alert.public_id else f"{base}/"


def render_message(templates: Templates, alert: Alert, language: str, *, max_length: int, public_url: str) -> Message:
    """The :class:`Message` most channels send: composed text plus the alert's link."""
    link = alert_link(public_url, alert)
    subject, text = templates.compose(alert, language, max_length=max_length, link=link)
    known = language if language in templates.languages else DEFAULT_LANGUAGE
    return Message(
        text=text,
        language=known,
        subject=subject,
        link=link,
        exercise=not alert.is_public,
        extra={"alert_identifier": alert.identifier, "event": alert.event},
    )
