"""The bot's own words: ``config/templates/bot/<language>.toml``, one file per language.

Hand-written, never machine-translated. Every language has every key (checked on load);
the strings are ``str.format`` templates. :meth:`UiTexts.multi` joins one key in every
language, for the few messages sent before the person chose one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import config

LANGUAGE_ORDER: tuple[str, ...] = ("ja", "ja-easy", "en", "pt", "vi", "zh")


class UiTextError(ValueError):
    """A bot text file is missing, unreadable or incomplete."""


def default_dir() -> Path:
    return Path(config.__file__).parent / "templates" / "bot"


class UiTexts:
    """Loaded bot texts by language and key."""

    def __init__(self, texts: Mapping[str, Mapping[str, str]]) -> None:
        self._texts = {lang: dict(t) for lang, t in texts.items()}
        if "ja" not in self._texts:
            raise UiTextError("bot texts: no ja")
        keys = set(self._texts["ja"])
        for lang, table in self._texts.items():
            missing = keys - set(table)
            if missing:
                raise UiTextError(f"bot texts {lang}: missing {', '.join(sorted(missing))}")

    @property
    def languages(self) -> Sequence[str]:
        return [lang for lang in LANGUAGE_ORDER if lang in self._texts]

    def text(self, language: str, key: str, /, **values: object) -> str:
        """``key`` in ``language`` (Japanese if the language is unknown), formatted with ``values``."""
        table = self._texts.get(language) or self._texts["ja"]
        return table[key].format(**values) if values else table[key]

    def multi(self, key: str) -> str:
        """``key`` in every language, one paragraph each (before a language is chosen)."""
        return "\n".join(self.text(lang, key) for lang in self.languages)

    def separator(self, language: str) -> str:
        return self.text(language, "separator")


def load_ui_texts(directory: Path | None = None) -> UiTexts:
    """Every ``<language>.toml`` of ``directory`` (default: ``config/templates/bot``)."""
    root = directory or default_dir()
    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGE_ORDER:
        path = root / f"{lang}.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UiTextError(f"{path}: {exc}") from exc
        table = data.get("bot")
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise UiTextError(f"{path}: [bot] must be a table of strings")
        texts[lang] = table
    return UiTexts(texts)
