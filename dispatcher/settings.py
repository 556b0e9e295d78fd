"""The configuration of the service: which sections exist, whose schema each is, and ``load``.

The packaged ``config/default.toml`` is read first; an operator's file (``--config``
or ``$DISPATCHER_CONFIG``) is laid over it (:mod:`dispatcher.config` does the reading,
the type and constraint checks and the secrets). Each section's schema is a frozen
dataclass beside what it configures:

* ``[service]``, ``[database]``: here;
* ``[web]``: :class:`dispatcher.web.config.WebConfig`;
* ``[delivery]``: :class:`dispatcher.delivery_config.DeliveryConfig` (the outbox workers);
* ``[geo]``: :class:`dispatcher.targeting.GeoConfig`;
* ``[console]``: :class:`dispatcher.console.config.ConsoleConfig` (the staff console);
* ``[publication]``: :class:`dispatcher.publication.config.PublicationConfig`;
* ``[residents]``: :class:`dispatcher.residents.levels.ResidentDefaults` (the city's defaults for the bots);
* one section per source, named by the source registry (:data:`sources.registry.REGISTRY`):
  ``[jma]`` (:class:`sources.jma.config.JmaConfig`), ``[broadcast]``
  (:class:`sources.broadcast.config.BroadcastConfig`), in :attr:`Settings.sources`;
* ``[channels.<name>]``: the generic keys of :class:`ChannelSettings` plus the channel's
  own ``config_class`` (``channels.REGISTRY``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dispatcher.config import (
    ConfigError,
    Where,
    build_dataclass,
    check_type,
    known_keys,
    opt_positive,
    read_files,
    replaced_tables,
    suggest,
)
from dispatcher.console.config import ConsoleConfig
from dispatcher.constraints import at_least, http_url, one_of, shaped_name
from dispatcher.delivery_config import DeliveryConfig
from dispatcher.publication.config import PublicationConfig
from dispatcher.residents.levels import ResidentDefaults
from dispatcher.targeting import GeoConfig
from dispatcher.web.config import WebConfig
from sources.registry import REGISTRY as SOURCES

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
    """The whole configuration; ``sources`` maps each source's section name to its config object."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    web: WebConfig = field(default_factory=WebConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    geo: GeoConfig = field(default_factory=GeoConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    publication: PublicationConfig = field(default_factory=PublicationConfig)
    residents: ResidentDefaults = field(default_factory=ResidentDefaults)
    sources: Mapping[str, Any] = field(default_factory=lambda: {n: cls.config_class() for n, cls in SOURCES.items()})
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def enabled_channels(self) -> list[ChannelSettings]:
        return [c for c in self.channels.values() if c.enabled]

    def database_url(self) -> str | None:
        """The configured server, or None for the embedded one."""
        return self.database.url or os.environ.get("DATABASE_URL") or None


# The service's own sections; the sources' come from their registry.
_CORE: dict[str, type[Any]] = {
    "service": ServiceConfig,
    "database": DatabaseConfig,
    "web": WebConfig,
    "delivery": DeliveryConfig,
    "geo": GeoConfig,
    "console": ConsoleConfig,
    "publication": PublicationConfig,
    "residents": ResidentDefaults,
}
_CHANNEL_GENERIC = {
    "enabled",
    "rate_per_second",
    "per_recipient_interval",
    "batch_size",
    "window_requests",
    "window_seconds",
    "concurrency",
}


def section_classes() -> dict[str, type[Any]]:
    """Every top-level section and its dataclass: the service's, then each source's."""
    return {**_CORE, **{name: cls.config_class for name, cls in SOURCES.items()}}


def default_config_path() -> Path:
    return Path(str(resources.files("config") / "default.toml"))


def load(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Load the defaults and lay ``path`` (or ``$DISPATCHER_CONFIG``) over them."""
    env = os.environ if env is None else env
    files = [default_config_path()]
    chosen = path if path is not None else env.get("DISPATCHER_CONFIG")
    if chosen:
        files.append(Path(chosen))
    sections = section_classes()
    data, where = read_files(files, replaced_tables(sections))
    unknown = set(data) - set(sections) - {"channels"}
    for key in sorted(unknown):
        raise ConfigError(f"{where(key)}: unknown section [{key}]{suggest(key, [*sections, 'channels'])}")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{where(name)}: [{name}] must be a table")
        built[name] = build_dataclass(cls, raw, section=name, where=where, env=env)
    channels: dict[str, ChannelSettings] = {}
    raw_channels = data.get("channels", {})
    if not isinstance(raw_channels, dict):
        raise ConfigError(f"{where('channels')}: [channels] must be a table of channel sections")
    for cname, raw in raw_channels.items():
        channels[cname] = _build_channel(cname, raw, where, env)
    return Settings(
        **{name: built[name] for name in _CORE},
        sources={name: built[name] for name in SOURCES},
        channels=channels,
        files=tuple(str(f) for f in files),
    )


def _build_channel(name: str, raw: Any, where: Where, env: Mapping[str, str]) -> ChannelSettings:
    from channels import REGISTRY, load_channel_class

    section = f"channels.{name}"
    if name not in REGISTRY:
        raise ConfigError(f"{where(section)}: unknown channel [{section}]{suggest(name, list(REGISTRY))}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(section)}: [{section}] must be a table")
    generic = {k: v for k, v in raw.items() if k in _CHANNEL_GENERIC}
    own = {k: v for k, v in raw.items() if k not in _CHANNEL_GENERIC}
    enabled = check_type(generic.get("enabled", False), bool, section, "enabled", where)
    cls: Any = load_channel_class(name)
    options = None
    if enabled:
        options = build_dataclass(
            cls.config_class, own, section=section, where=where, env=env, extra_known=_CHANNEL_GENERIC
        )
    else:
        # A disabled channel may lack its secrets, but its keys must still exist.
        known = known_keys(cls.config_class) | _CHANNEL_GENERIC
        for key in own:
            if key not in known:
                raise ConfigError(
                    f"{where(section + '.' + key)}: [{section}] unknown key '{key}'{suggest(key, sorted(known))}"
                )
    window_requests = opt_positive(generic, "window_requests", int, section, where)
    window_seconds = opt_positive(generic, "window_seconds", float, section, where)
    if (window_requests is None) != (window_seconds is None):
        missing = "window_seconds" if window_seconds is None else "window_requests"
        raise ConfigError(
            f"{where(section)}: [{section}] sets a window budget without '{missing}'"
            " (window_requests = N, window_seconds = S: at most N requests in any S seconds)"
        )
    batch_size = opt_positive(generic, "batch_size", int, section, where)
    return ChannelSettings(
        name=name,
        enabled=enabled,
        rate_per_second=opt_positive(generic, "rate_per_second", float, section, where),
        per_recipient_interval=opt_positive(generic, "per_recipient_interval", float, section, where),
        batch_size=batch_size,
        rate_window=(window_requests, window_seconds) if window_requests is not None else None,
        concurrency=opt_positive(generic, "concurrency", int, section, where),
        options=options,
    )
