"""The sources the service knows, one line each: section name → the class that builds it.

A new source is a folder under ``sources/`` (its sources, and its config dataclass
beside them), one line here and its section in ``config/default.toml``; the daemon
builds whatever this registry and the configuration name (``dispatcher.app``), and
``dispatcher check-config`` builds the same without I/O. Lines are
:func:`~sources.base.entry` calls so that mypy checks each class's ``from_config``
against its ``config_class``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sources.base import SourceClass, entry, registry
from sources.broadcast.source import BroadcastSource
from sources.jma.feed import JmaSource

__all__ = ["REGISTRY"]

REGISTRY: Mapping[str, SourceClass[Any]] = registry(
    entry(JmaSource),  # [jma]: JMA's disaster XML feeds, polled
    entry(BroadcastSource),  # [broadcast]: the municipal broadcast system, pushed and polled
)
