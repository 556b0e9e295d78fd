"""The language packs: one TOML file per language in ``config/templates/``, checked as it is read.

Each language is one TOML file in ``config/templates/`` (``ja.toml``, ``ja-easy.toml``,
``en.toml``), read with :mod:`tomllib` (https://toml.io/en/v1.0.0). A file has:

``[meta]``
    ``exercise_marker`` (put first in subject and text of exercise / test alerts),
    ``exercise_note``, ``datetime_format``, ``area_separator``, ``max_areas``,
    ``more_areas``, ``link_line``, ``ellipsis`` (all of them: :data:`META_DEFAULTS`);
    ``fallback`` and ``fallback_note``: a pack with templates for the main families only
    (``pt``, ``vi``, ``zh``) names the language (``en``) an alert it has no template of its
    own for is written in, after the note.
``[events]``
    JMA event name → the name residents read in this language (empty for ``ja``).
``[places]``, ``[intensity]``
    Area names and seismic intensity values (``5-`` → ``5弱`` / ``5 lower``).
``[aliases]``
    Event name → template key, for events sharing a template (震度速報 → 震源・震度情報).
``[templates.<key>]``
    ``subject`` and ``text`` per event; ``default`` is the fallback and ``取消`` is
    used for every cancellation.

Every format string is checked when the file is read (plain ``{name}`` placeholders
only), so rendering never raises.
"""

from __future__ import annotations

import importlib.resources
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

DEFAULT_LANGUAGE = "ja"

META_DEFAULTS: dict[str, Any] = {
    "exercise_marker": "【訓練】",
    "exercise_note": "",
    "datetime_format": "{year}年{month}月{day}日 {hour}時{minute}分",
    "area_separator": "、",
    "max_areas": 10,
    "more_areas": "ほか{count}地域",
    "others": "ほか{count}地域",
    "others_one": "",
    "level_format": "警戒レベル{level}",
    "depth_format": "約{km}km",
    "shallow": "ごく浅い",
    "time_format": "{hour}時{minute}分",
    "link_line": "{link}",
    "ellipsis": "…",
    # A pack with templates for the main families only (pt, vi, zh): an alert for which it
    # has only its default template is written in this language instead, after the note.
    "fallback": "",
    "fallback_note": "",
}


class TemplateError(ValueError):
    """A template file is malformed; the message names the file and the key."""


class Blank(dict[str, str]):
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


def fields(fmt: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]


def _check_format(fmt: str, where: str) -> None:
    """Reject what format_map cannot render safely, so compose never raises."""
    try:
        names = fields(fmt)
        for name in names:
            if not name.isidentifier():
                # Positional ({}) and attribute/index ({a.b}, {a[0]}) fields could
                # raise at render time or reach into objects: only plain names.
                raise TemplateError(f"{where}: placeholder {{{name}}} is not a plain name")
        fmt.format_map(Blank())
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


def parse_pack(language: str, data: Mapping[str, Any], where: str) -> LanguagePack:
    known = {"meta", "events", "places", "intensity", "aliases", "templates"}
    for key in data:
        if key not in known:
            raise TemplateError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    meta_raw = data.get("meta", {})
    if not isinstance(meta_raw, dict):
        raise TemplateError(f"{where}: [meta] must be a table")
    meta: dict[str, Any] = dict(META_DEFAULTS)
    for key, value in meta_raw.items():
        if key in ("language", "name"):
            continue
        if key not in META_DEFAULTS:
            raise TemplateError(f"{where}: unknown key meta.{key}")
        if not isinstance(value, type(META_DEFAULTS[key])):
            raise TemplateError(f"{where}: meta.{key} must be {type(META_DEFAULTS[key]).__name__}")
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


def load_packs(directory: Path | None = None) -> dict[str, LanguagePack]:
    """Every ``<language>.toml`` of ``directory`` (default: ``config/templates``), by language."""
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
        packs[language] = parse_pack(language, data, where)
    if DEFAULT_LANGUAGE not in packs:
        raise TemplateError(f"{root}: no {DEFAULT_LANGUAGE}.toml")
    return packs
