"""Generic loading of TOML configuration files into frozen dataclasses.

Files are read in order (https://docs.python.org/3/library/tomllib.html) and each is
laid over the ones before it (:func:`read_files`), remembering which file set each key,
so that every error names the file, the section, the key and what was expected.
:func:`build_dataclass` turns one table into its section's dataclass: unknown keys are
refused with a did-you-mean, values are checked against the field's type and against
the constraint in its metadata (:mod:`dispatcher.constraints`), and a section's own
cross-key checks (``__post_init__``, raising ``ValueError`` or :class:`ConfigError`)
are reported with the file.

Secrets never live in the file: a secret field ``token`` (a dataclass field with
``repr=False``) is given as ``token_env = "NAME"`` (read from the environment) or
``token_file = "/path"`` (read from a file, e.g. a systemd credential). A plain
``token = "..."`` is accepted for local experiments only and logged as a warning.

Nothing here knows a section: which sections exist, and whose schema each is, is
:mod:`dispatcher.settings`'s business.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dispatcher.constraints import REPLACED_WHOLE, problem

__all__ = [
    "ConfigError",
    "Where",
    "build_dataclass",
    "check_type",
    "known_keys",
    "opt_positive",
    "read_files",
    "replaced_tables",
    "suggest",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
# Which file a dotted key (``web.port``) or a section (``web``) comes from.
Where = Callable[[str], str]


class ConfigError(ValueError):
    """A configuration problem, phrased as ``file: [section] key: what is wrong``."""


def read_files(files: Sequence[Path], replaced: frozenset[str] = frozenset()) -> tuple[dict[str, Any], Where]:
    """The files merged in order, and where each key was set."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for f in files:
        _merge(merged, read_toml(f), origin, str(f), replaced)
    names = [str(f) for f in files]

    def where(key: str) -> str:
        # A key names the file that set it; a section, the last file touching it.
        if key in origin and not isinstance(_lookup(merged, key), dict):
            return origin[key]
        touching = {f for k, f in origin.items() if k == key or k.startswith(key + ".")}
        return next((f for f in reversed(names) if f in touching), names[-1])

    return merged, where


def replaced_tables(sections: Mapping[str, type[Any]]) -> frozenset[str]:
    """Dotted names (``broadcast.groups``) of the fields marked to be replaced whole."""
    return frozenset(
        f"{name}.{f.name}"
        for name, cls in sections.items()
        for f in dataclasses.fields(cls)
        if f.metadata.get(REPLACED_WHOLE)
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _merge(
    into: dict[str, Any],
    new: Mapping[str, Any],
    origin: dict[str, str],
    file: str,
    replaced: frozenset[str],
    prefix: str = "",
) -> None:
    """Deep-merge ``new`` into ``into``, remembering which file set each key.

    Tables that are data rather than settings (``replaced``, dotted names: fields
    marked :func:`dispatcher.constraints.replaced_whole`) are replaced whole, so an
    operator's mapping does not inherit the examples.
    """
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict) and dotted not in replaced:
            _merge(into[key], value, origin, file, replaced, dotted + ".")
        else:
            into[key] = value
            origin[dotted] = file
            if isinstance(value, dict):
                for sub in _flatten(value, dotted + "."):
                    origin[sub] = file


def _flatten(d: Mapping[str, Any], prefix: str) -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out.extend(_flatten(v, prefix + k + "."))
    return out


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def known_keys(cls: type[Any]) -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        keys.add(f.name)
        if not f.repr:
            keys |= {f.name + "_env", f.name + "_file"}
    return keys


def build_dataclass(
    cls: type[T],
    raw: Mapping[str, Any],
    *,
    section: str,
    where: Where,
    env: Mapping[str, str],
    extra_known: set[str] | frozenset[str] = frozenset(),
) -> T:
    """Build ``cls`` from a TOML table, checking keys and types; secrets via _env/_file."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = known_keys(cls) | set(extra_known)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in extra_known:
            continue
        if key not in known:
            raise ConfigError(
                f"{where(section + '.' + key)}: [{section}] unknown key '{key}'"
                + suggest(key, sorted(known - set(extra_known)))
            )
        if key.endswith(("_env", "_file")) and key not in fields:
            base = key.rsplit("_", 1)[0]
            values[base] = _read_secret(key, value, section, where, env)
            _check_allowed(fields[base], values[base], value, section, key, where)
            continue
        if not fields[key].repr and value:
            log.warning("secret given in plain text in configuration", extra={"section": section, "key": key})
        values[key] = check_type(value, hints[key], section, key, where)
        _check_allowed(fields[key], values[key], value, section, key, where)
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            hint = f" (or {name}_env / {name}_file)" if not f.repr else ""
            raise ConfigError(f"{where(section)}: [{section}] missing required key '{name}'{hint}")
    try:
        return cls(**values)
    except ConfigError as exc:
        # A section's own cross-key check (``__post_init__``): name the file too.
        raise ConfigError(f"{where(section)}: {exc}") from None
    except ValueError as exc:
        # The same from a class outside this module (a channel's config): its message
        # names no section, so add it.
        raise ConfigError(f"{where(section)}: [{section}] {exc}") from None


def _check_allowed(f: dataclasses.Field[Any], value: Any, given: Any, section: str, key: str, where: Where) -> None:
    """Refuse ``value`` (as typed; ``given`` as written) when ``f``'s constraint does not allow it."""
    wrong = problem(f, value)
    if wrong is None:
        return
    if not f.repr:
        # A secret: say how it was given, never what it is.
        raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key}: {wrong}")
    raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key} = {given!r}: {wrong}")


def _read_secret(key: str, value: Any, section: str, where: Where, env: Mapping[str, str]) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key} must be a string")
    if key.endswith("_env"):
        if value not in env:
            raise ConfigError(
                f"{where(section + '.' + key)}: [{section}] {key}: environment variable {value} is not set"
            )
        return env[value]
    try:
        return Path(value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{where(section + '.' + key)}: [{section}] {key}: cannot read {value}: {exc.strerror}"
        ) from None


def check_type(value: Any, hint: Any, section: str, key: str, where: Where) -> Any:
    """Coerce TOML values to the field's type, or explain what was expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> ConfigError:
        return ConfigError(
            f"{where(section + '.' + key)}: [{section}] {key} = {value!r}: "
            f"expected {expected}, got {type(value).__name__}"
        )

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, section, key, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if errors else fail(str(hint))
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise fail("a path (string)")
        return Path(value)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise fail("a list")
        item = args[0] if args else Any
        items = [check_type(v, item, section, key, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise fail("a table")
        if len(args) != 2:
            return dict(value)
        # Typed tables such as [broadcast.groups] (str → list of codes): check each entry.
        return {
            check_type(k, args[0], section, key, where): check_type(v, args[1], section, f"{key}.{k}", where)
            for k, v in value.items()
        }
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise fail("one of " + ", ".join(map(repr, args)))
        return value
    return value


def opt_positive(raw: Mapping[str, Any], key: str, kind: type[Any], section: str, where: Where) -> Any:
    """``raw[key]`` checked to be a positive ``kind`` (float accepts int), or None when absent."""
    if key not in raw:
        return None
    value = kind(check_type(raw[key], kind, section, key, where))
    if value <= 0:
        raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key} must be positive, not {raw[key]!r}")
    return value


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(sorted(choices))})" if choices else ""
