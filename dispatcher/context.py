"""What the sources get from the service: :class:`ServiceContext`.

It is the :class:`sources.base.SourceContext` the daemon hands every source (and
``dispatcher ingest`` builds for files): ``emit`` into the pipeline, and the few
database hooks a source needs (claim and record a document, feed state, an
exclusive lock among daemons), so that no source imports :mod:`dispatcher.store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from dispatcher.model import Alert, Document
from dispatcher.pipeline import IngestResult, Pipeline
from dispatcher.store import documents, locks
from dispatcher.store.db import DB_ERRORS

if TYPE_CHECKING:
    from dispatcher.metrics import Metrics

log = logging.getLogger(__name__)

# About two minutes of waiting for the database before a source sees the error
# (and, for JMA, leaves the telegram to be fetched again on a later poll).
EMIT_ATTEMPTS = 16
# A request handler's caller is waiting: about a second, then 503.
IMPATIENT_ATTEMPTS = 3
# Fetches of one document before it is given up for good.
MAX_FETCH_ATTEMPTS = 5


class ServiceContext:
    """The :class:`sources.base.SourceContext` the sources get: the pipeline and the database hooks."""

    def __init__(self, pool: asyncpg.Pool, pipeline: Pipeline, *, metrics: Metrics | None = None) -> None:
        self.pool = pool
        self.pipeline = pipeline
        # Counts every poll's result per feed (/metrics); None outside the daemon.
        self.metrics = metrics

    async def emit(
        self, alert: Alert, *, document: Document | None = None, hold: bool = False, patient: bool = True
    ) -> IngestResult:
        """Hand ``alert`` to the pipeline; wait out a database outage rather than drop it.

        ``ingest`` is one transaction and deduplicates by (sender, identifier) and,
        for a pushed ``document``, by (source, url), so trying again after a lost
        connection is safe. ``patient`` sources (pollers) wait about two minutes;
        a request handler passes ``patient=False`` and answers 503 after a few
        seconds, so that its caller retries instead of waiting on an open request.
        """
        delay = 0.2
        attempts = EMIT_ATTEMPTS if patient else IMPATIENT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                return await self.pipeline.ingest(alert, document=document, hold=hold)
            except DB_ERRORS as exc:
                if attempt == attempts:
                    raise
                log.warning(
                    "database unavailable while storing an alert; retrying",
                    extra={"alert": alert.identifier, "attempt": attempt, "error": str(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    async def claim_document(self, source: str, url: str) -> int | None:
        async with self.pool.acquire() as conn:
            return await documents.claim_document(conn, source, url) or await documents.reclaim_failed_document(
                conn, source, url, max_attempts=MAX_FETCH_ATTEMPTS
            )

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
        async with self.pool.acquire() as conn:
            await documents.record_document(
                conn, doc_id, outcome=outcome, content=content, kind=kind, title=title, error=error
            )

    async def known_documents(self, source: str, urls: list[str]) -> set[str]:
        async with self.pool.acquire() as conn:
            return await documents.known_documents(conn, source, urls)

    async def failed_fetches(self, source: str, urls: list[str]) -> Mapping[str, int]:
        async with self.pool.acquire() as conn:
            return await documents.failed_fetches(conn, source, urls)

    async def feed_state(self, url: str) -> Mapping[str, Any]:
        async with self.pool.acquire() as conn:
            return await documents.feed_state(conn, url)

    async def save_feed_state(
        self, url: str, *, status: int | None, etag: str | None, last_modified: str | None, error: str | None
    ) -> int:
        if self.metrics is not None:
            self.metrics.poll(url, status=status, error=error)
        async with self.pool.acquire() as conn:
            return await documents.save_feed_state(
                conn, url, status=status, etag=etag, last_modified=last_modified, error=error
            )

    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        return locks.exclusive(self.pool, name)
