"""The Source protocols: how alerts enter the service.

A source is either *polled* (``poll(ctx)``, scheduled by the dispatcher with
apscheduler) or *pushed* (it contributes aiohttp routes and handles requests).
Either way it hands each alert to ``ctx.emit``, which returns once the alert is
durable in PostgreSQL and waits when the pipeline is busy; it never drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

from dispatcher.model import Alert, Document


class SourceContext(Protocol):
    """What the dispatcher offers a source."""

    async def emit(
        self, alert: Alert, *, document: Document | None = None, hold: bool = False, patient: bool = True
    ) -> Any:
        """Store ``alert`` with ``document`` and fan it out, in one transaction; returns the pipeline's result.

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


@runtime_checkable
class PolledSource(Protocol):
    """A source the scheduler polls."""

    name: str

    async def poll(self, ctx: SourceContext) -> object: ...


@runtime_checkable
class PushedSource(Protocol):
    """A source that receives requests on the daemon's web server."""

    name: str

    def routes(self, ctx: SourceContext) -> list[Any]:
        """aiohttp ``RouteDef``s to add to the application."""
        ...
