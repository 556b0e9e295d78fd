"""Configuration schema and loading.

The packaged ``config/default.toml`` is read first; an operator's file (``--config``
or ``$DISPATCHER_CONFIG``) is laid over it. Every section is a frozen dataclass
below, and every channel section ``[channels.<name>]`` is validated against that
channel's own ``config_class``. Unknown or misspelt keys, wrong types and missing
files are rejected with a :class:`ConfigError` naming the file, the key and what
was expected; so are values outside what a field allows (its constraint in the
field's metadata, :mod:`dispatcher.constraints`), and a section's own cross-key
checks (``__post_init__``, ``ValueError`` or ``ConfigError``).

Secrets never live in the file: a secret field ``token`` (a dataclass field with
``repr=False``) is given as ``token_env = "NAME"`` (read from the environment) or
``token_file = "/path"`` (read from a file, e.g. a systemd credential). A plain
``token = "..."`` is accepted for local experiments only and logged as a warning.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from dispatcher.constraints import (
    at_least,
    between,
    greater_than,
    http_url,
    non_empty,
    one_of,
    problem,
    shaped_name,
    signing_secret,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

JMA_FEEDS = (
    "https://www.data.jma.go.jp/developer/xml/feed/regular.xml",
    "https://www.data.jma.go.jp/developer/xml/feed/extra.xml",
    "https://www.data.jma.go.jp/developer/xml/feed/eqvol.xml",
    "https://www.data.jma.go.jp/developer/xml/feed/other.xml",
)


class ConfigError(ValueError):
    """A configuration problem, phrased as ``file: [section] key: what is wrong``."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """[service]: who we are and where state lives."""

    name: str = "沼津市 防災情報配信"
    # JMA 市町村等 codes of the municipality (or municipalities) served.
    area_codes: tuple[str, ...] = ("2220300",)
    state_dir: Path = Path("var")
    public_url: str = field(default="http://127.0.0.1:8080", metadata=http_url())
    log_level: str = field(default="INFO", metadata=one_of(*LOG_LEVELS, ignore_case=True))
    log_format: str = field(default="text", metadata=one_of("text", "json"))


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """[database]: PostgreSQL. ``url`` empty means: ``$DATABASE_URL`` or embedded."""

    url: str = dataclasses.field(default="", repr=False)
    pool_min: int = field(default=2, metadata=at_least(0))
    pool_max: int = field(default=10, metadata=at_least(1))
    embedded_database: str = field(default="dispatcher", metadata=shaped_name(63))

    def __post_init__(self) -> None:
        if self.pool_min > self.pool_max:
            raise ConfigError(f"[database] pool_min ({self.pool_min}) must not exceed pool_max ({self.pool_max})")


@dataclass(frozen=True, slots=True)
class WebConfig:
    """[web]: the HTTP server (dashboard, public pages, webhooks)."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=non_empty())
    port: int = field(default=8080, metadata=between(0, 65535))
    # A client has this long to send a request's headers, counted from when it
    # connected or got its previous answer; an idle keep-alive connection is closed
    # after as long (aiohttp's keep-alive timer is both). Slowloris defence.
    header_timeout_seconds: float = field(default=10.0, metadata=greater_than(0))
    # And this long, after its headers, to send the whole body.
    body_timeout_seconds: float = field(default=30.0, metadata=greater_than(0))


@dataclass(frozen=True, slots=True)
class JmaConfig:
    """[jma]: polling of the JMA disaster XML Atom feeds."""

    enabled: bool = True
    feeds: tuple[str, ...] = field(default=JMA_FEEDS, metadata=http_url(each=True))
    # Cron-like: every ``poll_seconds`` at ``poll_offset_seconds`` past the minute.
    # Whole minutes become a cron minute step, which stops at 30 (*/60 is no step).
    poll_seconds: int = field(default=60, metadata=between(1, 1800))
    poll_offset_seconds: int = field(default=20, metadata=between(0, 59))
    fetch_concurrency: int = field(default=4, metadata=at_least(1))
    timeout_seconds: float = field(default=10.0, metadata=greater_than(0))
    user_agent: str = field(
        default="numazu-dispatcher/0.1 (+https://www.city.numazu.shizuoka.jp/)", metadata=non_empty()
    )
    # Long feeds for catching up, in the order of ``feeds``; empty: derived by
    # inserting ``_l`` before ``.xml`` (eqvol.xml → eqvol_l.xml), as JMA names them.
    long_feeds: tuple[str, ...] = field(default=(), metadata=http_url(each=True))
    # How far back the high-frequency feeds reach (JMA: at least ten minutes);
    # after a longer gap since the last successful poll, the long feeds are read.
    catchup_window_seconds: int = field(default=600, metadata=at_least(0))
    # Never catch up further back than this.
    catchup_max_age_seconds: int = field(default=21600, metadata=at_least(0))

    def __post_init__(self) -> None:
        if self.long_feeds and len(self.long_feeds) != len(self.feeds):
            raise ConfigError(
                f"[jma] long_feeds must name one long feed per feed, in order "
                f"({len(self.long_feeds)} given for {len(self.feeds)} feeds), or be empty to derive them"
            )


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """[delivery]: the outbox workers."""

    # Most deliveries one claim takes (a channel claims at most about a second of
    # its rate): fewer, larger claims cost PostgreSQL less per delivery.
    batch_size: int = field(default=250, metadata=at_least(1))
    # Fallback poll when no NOTIFY arrives (seconds).
    poll_interval: float = field(default=2.0, metadata=greater_than(0))
    # Retries are bounded by time: a delivery is retried until its alert expires or,
    # for an alert without expiry, until this many seconds after the alert came in.
    max_age: float = field(default=86400.0, metadata=at_least(60))
    backoff_base: float = field(default=2.0, metadata=greater_than(0))
    backoff_max: float = field(default=600.0, metadata=greater_than(0))
    # How long a claimed delivery may stay "sending" before another worker
    # assumes its owner died and re-queues it. Below a second, leases expire
    # between two renewals and live work is sent twice.
    lease_seconds: float = field(default=60.0, metadata=at_least(1))
    concurrency: int = field(default=32, metadata=at_least(1))
    shutdown_grace: float = field(default=10.0, metadata=at_least(0))


@dataclass(frozen=True, slots=True)
class GeoConfig:
    """[geo]: the district and hazard-zone layers used for targeting (empty = packaged).

    ``districts`` is a GeoJSON file of the city's official districts; the packaged file
    is an ILLUSTRATIVE partition (``config/geo/README.md``). ``hazards`` is a PLATEAU
    folder (``udx/lsld``, ``udx/fld``…). After changing either, run ``dispatcher relocate``.
    """

    districts: str = ""
    district_code_property: str = "code"
    district_name_property: str = "name"
    hazards: str = ""


@dataclass(frozen=True, slots=True)
class BroadcastConfig:
    """[broadcast]: the municipal broadcast system (同報系防災行政無線), ``sources/broadcast/``.

    The webhook (``POST /hooks/broadcast``) is served when ``secret`` is set, the
    transcript feed is polled when ``feed_url`` is. ``groups`` maps loudspeaker groups to
    district codes (``all`` is built in: the whole city); ``routes`` maps a broadcast
    category to the only channels that carry it.
    """

    enabled: bool = False
    # The HMAC-SHA256 key the console signs with: at least 32 bytes.
    secret: str = field(default="", repr=False, metadata=signing_secret())
    # CAP senders accepted (empty: any sender holding the secret).
    senders: tuple[str, ...] = field(default=(), metadata=shaped_name(each=True))
    # Sender of JSON bodies without one, and of feed entries.
    default_sender: str = field(default="bousai-musen.city.numazu.shizuoka.jp", metadata=shaped_name())
    # Not above what the CAP parser reads (sources.cap.MAX_BYTES, 5 MB).
    max_body_bytes: int = field(default=262144, metadata=between(1024, 4 * 1024 * 1024))
    max_skew_seconds: int = field(default=300, metadata=between(1, 3600))
    feed_url: str = field(default="", metadata=http_url(empty=True))
    feed_poll_seconds: int = field(default=60, metadata=between(1, 1800))
    feed_timeout_seconds: float = field(default=10.0, metadata=greater_than(0))
    hold_emergency: bool = False
    hold_ordinary: bool = True
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.enabled and not self.secret and not self.feed_url:
            raise ConfigError("[broadcast] enabled = true needs secret_env / secret_file (webhook) or feed_url")
        if "all" in self.groups:
            raise ConfigError("[broadcast.groups] 'all' is built in (the whole city) and cannot be redefined")


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """[channels.<name>]: generic keys every channel has, plus its own ``options``."""

    name: str
    enabled: bool = False
    rate_per_second: float | None = None
    per_recipient_interval: float | None = None
    batch_size: int | None = None
    # (window_requests, window_seconds): at most that many requests in any such window.
    rate_window: tuple[int, float] | None = None
    # Requests in flight at once (default: the channel's, else [delivery] concurrency).
    concurrency: int | None = None
    options: Any = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    web: WebConfig = field(default_factory=WebConfig)
    jma: JmaConfig = field(default_factory=JmaConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    geo: GeoConfig = field(default_factory=GeoConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def enabled_channels(self) -> list[ChannelSettings]:
        return [c for c in self.channels.values() if c.enabled]

    def database_url(self) -> str | None:
        """The configured server, or None for the embedded one."""
        return self.database.url or os.environ.get("DATABASE_URL") or None


_SECTIONS: dict[str, type[Any]] = {
    "service": ServiceConfig,
    "database": DatabaseConfig,
    "web": WebConfig,
    "jma": JmaConfig,
    "delivery": DeliveryConfig,
    "geo": GeoConfig,
    "broadcast": BroadcastConfig,
}
# Operator-defined mappings: a later file's table replaces the earlier one.
REPLACED_TABLES = frozenset({"broadcast.groups", "broadcast.routes"})
_CHANNEL_GENERIC = {
    "enabled",
    "rate_per_second",
    "per_recipient_interval",
    "batch_size",
    "window_requests",
    "window_seconds",
    "concurrency",
}


def default_config_path() -> Path:
    return Path(str(resources.files("config") / "default.toml"))


def load(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Load the defaults and lay ``path`` (or ``$DISPATCHER_CONFIG``) over them."""
    env = os.environ if env is None else env
    files = [default_config_path()]
    chosen = path if path is not None else env.get("DISPATCHER_CONFIG")
    if chosen:
        files.append(Path(chosen))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for f in files:
        data = _read_toml(f)
        _merge(merged, data, origin, str(f))
    return _build_settings(merged, origin, env, tuple(str(f) for f in files))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _merge(into: dict[str, Any], new: Mapping[str, Any], origin: dict[str, str], file: str, prefix: str = "") -> None:
    """Deep-merge ``new`` into ``into``, remembering which file set each key.

    Tables that are data rather than settings (:data:`REPLACED_TABLES`) are
    replaced whole, so an operator's mapping does not inherit the examples.
    """
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict) and dotted not in REPLACED_TABLES:
            _merge(into[key], value, origin, file, dotted + ".")
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


def _build_settings(
    data: dict[str, Any], origin: dict[str, str], env: Mapping[str, str], files: tuple[str, ...]
) -> Settings:
    def where(key: str) -> str:
        # A key names the file that set it; a section, the last file touching it.
        if key in origin and not isinstance(_lookup(data, key), dict):
            return origin[key]
        touching = {f for k, f in origin.items() if k == key or k.startswith(key + ".")}
        return next((f for f in reversed(files) if f in touching), files[-1])

    unknown = set(data) - set(_SECTIONS) - {"channels"}
    for key in sorted(unknown):
        raise ConfigError(f"{where(key)}: unknown section [{key}]{_suggest(key, [*_SECTIONS, 'channels'])}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{where(name)}: [{name}] must be a table")
        sections[name] = build_dataclass(cls, raw, section=name, where=where, env=env)
    channels: dict[str, ChannelSettings] = {}
    raw_channels = data.get("channels", {})
    if not isinstance(raw_channels, dict):
        raise ConfigError(f"{where('channels')}: [channels] must be a table of channel sections")
    for cname, raw in raw_channels.items():
        channels[cname] = _build_channel(cname, raw, where, env)
    return Settings(**sections, channels=channels, files=files)


def _build_channel(name: str, raw: Any, where: Any, env: Mapping[str, str]) -> ChannelSettings:
    from channels import REGISTRY, load_channel_class

    section = f"channels.{name}"
    if name not in REGISTRY:
        raise ConfigError(f"{where(section)}: unknown channel [{section}]{_suggest(name, list(REGISTRY))}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(section)}: [{section}] must be a table")
    generic = {k: v for k, v in raw.items() if k in _CHANNEL_GENERIC}
    own = {k: v for k, v in raw.items() if k not in _CHANNEL_GENERIC}
    enabled = _check_type(generic.get("enabled", False), bool, section, "enabled", where)
    cls: Any = load_channel_class(name)
    options = None
    if enabled:
        options = build_dataclass(
            cls.config_class, own, section=section, where=where, env=env, extra_known=_CHANNEL_GENERIC
        )
    else:
        # A disabled channel may lack its secrets, but its keys must still exist.
        known = _known_keys(cls.config_class) | _CHANNEL_GENERIC
        for key in own:
            if key not in known:
                raise ConfigError(
                    f"{where(section + '.' + key)}: [{section}] unknown key '{key}'{_suggest(key, sorted(known))}"
                )
    window_requests = _opt_positive(generic, "window_requests", int, section, where)
    window_seconds = _opt_positive(generic, "window_seconds", float, section, where)
    if (window_requests is None) != (window_seconds is None):
        missing = "window_seconds" if window_seconds is None else "window_requests"
        raise ConfigError(
            f"{where(section)}: [{section}] sets a window budget without '{missing}'"
            " (window_requests = N, window_seconds = S: at most N requests in any S seconds)"
        )
    batch_size = _opt_positive(generic, "batch_size", int, section, where)
    return ChannelSettings(
        name=name,
        enabled=enabled,
        rate_per_second=_opt_positive(generic, "rate_per_second", float, section, where),
        per_recipient_interval=_opt_positive(generic, "per_recipient_interval", float, section, where),
        batch_size=batch_size,
        rate_window=(window_requests, window_seconds) if window_requests is not None else None,
        concurrency=_opt_positive(generic, "concurrency", int, section, where),
        options=options,
    )


def _opt_positive(raw: Mapping[str, Any], key: str, kind: type[Any], section: str, where: Any) -> Any:
    """``raw[key]`` checked to be a positive ``kind`` (float accepts int), or None when absent."""
    if key not in raw:
        return None
    value = kind(_check_type(raw[key], kind, section, key, where))
    if value <= 0:
        raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key} must be positive, not {raw[key]!r}")
    return value


def _known_keys(cls: type[Any]) -> set[str]:
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
    where: Any,
    env: Mapping[str, str],
    extra_known: set[str] | frozenset[str] = frozenset(),
) -> T:
    """Build ``cls`` from a TOML table, checking keys and types; secrets via _env/_file."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = _known_keys(cls) | set(extra_known)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in extra_known:
            continue
        if key not in known:
            raise ConfigError(
                f"{where(section + '.' + key)}: [{section}] unknown key '{key}'"
                + _suggest(key, sorted(known - set(extra_known)))
            )
        if key.endswith(("_env", "_file")) and key not in fields:
            base = key.rsplit("_", 1)[0]
            values[base] = _read_secret(key, value, section, where, env)
            _check_allowed(fields[base], values[base], value, section, key, where)
            continue
        if not fields[key].repr and value:
            log.warning("secret given in plain text in configuration", extra={"section": section, "key": key})
        values[key] = _check_type(value, hints[key], section, key, where)
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


def _check_allowed(f: dataclasses.Field[Any], value: Any, given: Any, section: str, key: str, where: Any) -> None:
    """Refuse ``value`` (as typed; ``given`` as written) when ``f``'s constraint does not allow it."""
    wrong = problem(f, value)
    if wrong is None:
        return
    if not f.repr:
        # A secret: say how it was given, never what it is.
        raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key}: {wrong}")
    raise ConfigError(f"{where(section + '.' + key)}: [{section}] {key} = {given!r}: {wrong}")


def _read_secret(key: str, value: Any, section: str, where: Any, env: Mapping[str, str]) -> str:
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


def _check_type(value: Any, hint: Any, section: str, key: str, where: Any) -> Any:
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
                return _check_type(value, arg, section, key, where)
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
        items = [_check_type(v, item, section, key, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise fail("a table")
        if len(args) != 2:
            return dict(value)
        # Typed tables such as [broadcast.groups] (str → list of codes): check each entry.
        return {
            _check_type(k, args[0], section, key, where): _check_type(v, args[1], section, f"{key}.{k}", where)
            for k, v in value.items()
        }
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise fail("one of " + ", ".join(map(repr, args)))
        return value
    return value


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(sorted(choices))})" if choices else ""
