"""The city's message templates for the console: ``config/console/messages.toml`` (its comments are the format).

:func:`load_messages` reads the packaged file and, laid over it, ``[console] messages``;
every format string is checked as it is read (only the placeholders the file's header
names), so filling one in never fails. :meth:`MessageKind.prefill` gives the headline and
text a form starts with, per language.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dispatcher.model import LANGUAGES, Certainty, Priority, Severity, Urgency

KIND_PLACEHOLDERS = frozenset({"areas", "city"})
RETRACTION_PLACEHOLDERS = KIND_PLACEHOLDERS | {"event", "headline"}
DEFAULT_LANGUAGE = "ja"


class MessagesError(ValueError):
    """The message templates file is malformed; the message names the file and the key."""


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Wording:
    """A headline and a text in one language, with placeholders."""

    headline: str
    text: str

    def fill(self, values: Mapping[str, str]) -> tuple[str, str]:
        blank = _Blank(values)
        return self.headline.format_map(blank).strip(), self.text.format_map(blank).strip()


@dataclass(frozen=True, slots=True)
class MessageKind:
    """One kind of message staff compose (避難指示, 給水…)."""

    key: str
    label: str
    event: str
    severity: Severity
    urgency: Urgency
    certainty: Certainty
    priority: Priority
    expires_hours: float
    wording: Mapping[str, Wording]
    level: int | None = None

    def prefill(self, language: str, values: Mapping[str, str]) -> tuple[str, str]:
        """(headline, text) the form starts with in ``language`` (Japanese when it has none)."""
        wording = self.wording.get(language) or self.wording[DEFAULT_LANGUAGE]
        return wording.fill(values)


@dataclass(frozen=True, slots=True)
class Retraction:
    """A prepared 取消 or 誤報 of a sent message."""

    key: str
    label: str
    wording: Mapping[str, Wording]

    def prefill(self, language: str, values: Mapping[str, str]) -> tuple[str, str]:
        wording = self.wording.get(language) or self.wording[DEFAULT_LANGUAGE]
        return wording.fill(values)


@dataclass(frozen=True, slots=True)
class Messages:
    """Every kind (in the file's order) and every retraction."""

    kinds: Mapping[str, MessageKind]
    retractions: Mapping[str, Retraction]

    def kind(self, key: str) -> MessageKind | None:
        return self.kinds.get(key)


def _check(text: Any, where: str, allowed: frozenset[str]) -> str:
    if not isinstance(text, str):
        raise MessagesError(f"{where}: must be a string")
    try:
        names = {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise MessagesError(f"{where}: {exc}") from None
    wrong = sorted(n for n in names if n not in allowed)
    if wrong:
        raise MessagesError(f"{where}: unknown placeholder {{{wrong[0]}}} (allowed: {', '.join(sorted(allowed))})")
    return text


def _wording(table: Mapping[str, Any], where: str, allowed: frozenset[str]) -> dict[str, Wording]:
    out: dict[str, Wording] = {}
    for language in LANGUAGES:
        entry = table.get(language)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise MessagesError(f"{where}.{language}: must be a table with headline and text")
        out[language] = Wording(
            _check(entry.get("headline", ""), f"{where}.{language}.headline", allowed),
            _check(entry.get("text", ""), f"{where}.{language}.text", allowed),
        )
    if DEFAULT_LANGUAGE not in out or not out[DEFAULT_LANGUAGE].headline:
        raise MessagesError(f"{where}: a Japanese ({DEFAULT_LANGUAGE}) headline is required")
    return out


def _enum(cls: Any, value: Any, where: str) -> Any:
    try:
        return cls[value.upper()] if cls is Priority else cls(value)
    except (KeyError, ValueError, AttributeError):
        allowed = ", ".join(m.name.lower() for m in cls) if cls is Priority else ", ".join(m.value for m in cls)
        raise MessagesError(f"{where}: {value!r} is not one of {allowed}") from None


def _kind(key: str, t: Mapping[str, Any], where: str) -> MessageKind:
    level = t.get("level")
    if level is not None and (not isinstance(level, int) or not 1 <= level <= 5):
        raise MessagesError(f"{where}.level: 警戒レベル is 1-5, not {level!r}")
    hours = t.get("expires_hours", 12)
    if not isinstance(hours, int | float) or not 0 < hours <= 24:
        raise MessagesError(f"{where}.expires_hours: must be more than 0 and at most 24, not {hours!r}")
    return MessageKind(
        key=key,
        label=str(t.get("label") or key),
        event=str(t.get("event") or key),
        severity=_enum(Severity, t.get("severity", "moderate"), f"{where}.severity"),
        urgency=_enum(Urgency, t.get("urgency", "expected"), f"{where}.urgency"),
        certainty=_enum(Certainty, t.get("certainty", "observed"), f"{where}.certainty"),
        priority=_enum(Priority, t.get("priority", "normal"), f"{where}.priority"),
        expires_hours=float(hours),
        wording=_wording(t, where, KIND_PLACEHOLDERS),
        level=level,
    )


def _read(path: Path | Any) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MessagesError(f"{path}: {exc}") from None


def load_messages(extra: str | Path | None = None) -> Messages:
    """The packaged templates with ``extra``'s laid over them (a kind or retraction given there replaces ours)."""
    packaged = resources.files("config") / "console" / "messages.toml"
    data = _read(packaged)
    files = [str(packaged)]
    if extra:
        more = _read(Path(extra))
        files.append(str(extra))
        for section in ("kinds", "retractions"):
            data.setdefault(section, {}).update(more.get(section, {}))
    where = files[-1]
    kinds = {k: _kind(k, t, f"{where}: [kinds.{k}]") for k, t in data.get("kinds", {}).items()}
    retractions = {
        k: Retraction(k, str(t.get("label") or k), _wording(t, f"{where}: [retractions.{k}]", RETRACTION_PLACEHOLDERS))
        for k, t in data.get("retractions", {}).items()
    }
    if not kinds:
        raise MessagesError(f"{where}: no [kinds] of messages")
    if not retractions:
        raise MessagesError(f"{where}: no [retractions]")
    return Messages(kinds, retractions)
