"""The Source protocols and the shape of the source registry: how alerts enter the service.

A source is either *polled* (``poll(ctx)`` on its :class:`Schedule`, run by the
dispatcher with apscheduler 3.x, https://apscheduler.readthedocs.io/en/3.x/) or *pushed*
(it contributes aiohttp routes and handles requests). Either way it hands each alert to
``ctx.emit``, which returns once the alert is durable in PostgreSQL and waits when the
pipeline is busy; it never drops.

Each source owns one configuration section: the class registered for it
(:class:`SourceClass`, listed in :data:`sources.registry.REGISTRY`) names the section,
its config dataclass, and builds its sources from it without I/O, so
``dispatcher check-config`` builds what ``dispatcher run`` builds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from dispatcher.model import Alert, Document

C = TypeVar("C")


class Emitted(Protocol):
    """What became of an emitted alert: ``outcome`` (``queued``, ``held``, ``duplicate``,
    ``replay``, ``stale``), its ``alert_id`` when stored, and the deliveries it queued."""

    @property
    def outcome(self) -> str: ...

    @property
    def alert_id(self) -> int | None: ...

    @property
    def deliveries(self) -> int: ...


class SourceContext(Protocol):
    """What the dispatcher offers a source."""

    async def emit(
        self, alert: Alert, *, document: Document | None = None, hold: bool = False, patient: bool = True
    ) -> Emitted:
        """Store ``alert`` with ``document`` and fan it out, in one transaction; returns what became of it.

        With a ``document`` not yet claimed (``document.id`` None), the claim of
        ``(source, url)`` is part of that transaction: the result's ``outcome`` is
        ``replay`` when it was received already. Raises ``ValueError``
        (``dispatcher.validate.InvalidAlert``) when a field cannot be stored;
        ``patient=False`` gives up on a database outage after about a second.
        """
        ...

    async def claim_document(self, source: str, url: str) -> int | None:
        """Record that ``url`` is about to be fetched; None if it was already."""
        ...

    async def record_document(
        self,
        doc_id: int,
        *,
        outcome: str,
        content: bytes | None = None,
        kind: str | None = None,
        title: str | None = None,
        error: str | None = None,
    ) -> None:
        """Store what became of a claimed document (parsed, unsupported, error…)."""
        ...

    async def known_documents(self, source: str, urls: list[str]) -> set[str]:
        """Which of ``urls`` were already fetched (successfully or for good)."""
        ...

    async def failed_fetches(self, source: str, urls: list[str]) -> Mapping[str, int]:
        """Those of ``urls`` whose last fetch failed, with the attempts the database counted."""
        ...

    async def feed_state(self, url: str) -> Mapping[str, Any]:
        """Conditional-GET state of a feed: etag, last_modified, consecutive_failures…"""
        ...

    async def save_feed_state(
        self, url: str, *, status: int | None, etag: str | None, last_modified: str | None, error: str | None
    ) -> int:
        """Record a poll; returns the number of consecutive failures (0 after a success)."""
        ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Across all daemon instances, at most one holds ``name``; yields whether we do."""
        ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every ``every`` seconds; in whole minutes, at ``offset`` seconds past the minute (JMA: :20)."""

    every: float
    offset: float = 0.0


@runtime_checkable
class PolledSource(Protocol):
    """A source the scheduler polls."""

    # The scheduler's job id and the source's name in logs.
    name: str
    schedule: Schedule

    async def poll(self, ctx: SourceContext) -> object: ...


@runtime_checkable
class PushedSource(Protocol):
    """A source that receives requests on the daemon's web server."""

    name: str

    def routes(self, ctx: SourceContext) -> list[Any]:
        """aiohttp ``RouteDef``s to add to the application."""
        ...


Source = PolledSource | PushedSource


@dataclass(frozen=True, slots=True)
class SourceSetup:
    """What building a source may know besides its own section (nothing that needs I/O).

    ``channels`` are the enabled channels' names, ``web`` whether the web server runs
    (a pushed source is served by it), ``districts`` the geo layer's districts (code →
    name), loaded when first asked for.
    """

    channels: Collection[str]
    web: bool
    districts: Callable[[], Mapping[str, str]]


class SourceClass(Protocol[C]):
    """What the registry holds: a class that owns configuration section ``[section]``.

    ``from_config`` builds the section's sources (none when it is disabled): polled
    ones carry their schedule, pushed ones their routes. It does no I/O and raises
    ``ValueError`` for a configuration it cannot run with.
    """

    @property
    def section(self) -> str: ...

    @property
    def config_class(self) -> type[C]: ...

    def from_config(self, config: C, setup: SourceSetup) -> Sequence[Source]: ...


def entry(cls: SourceClass[C]) -> SourceClass[Any]:
    """``cls`` as a registry entry; mypy checks that its ``from_config`` takes its ``config_class``."""
    return cls


def registry(*classes: SourceClass[Any]) -> dict[str, SourceClass[Any]]:
    """Section name → source class; a section claimed twice is a programming error."""
    out: dict[str, SourceClass[Any]] = {}
    for cls in classes:
        if cls.section in out:
            raise ValueError(f"source section [{cls.section}] is registered twice")
        out[cls.section] = cls
    return out
