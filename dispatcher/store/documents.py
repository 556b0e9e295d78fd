"""Source documents and feed state in PostgreSQL: what was fetched or pushed, and how feeds were polled.

"Have we seen this?" is answered by the unique constraint ``documents (source,
url)``, never by memory: a poller claims an entry before fetching it
(:func:`claim_document`), so no instance fetches it twice, and a pushed document is
claimed in the transaction that stores its alert (:func:`take_document`).
``feed_state`` keeps each feed's conditional-GET validators and its consecutive
failures across restarts.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import asyncpg

from dispatcher.model import Document


def compress(data: bytes) -> bytes:
    """A document's content as ``documents.content`` stores it (zlib)."""
    return zlib.compress(data, 6)


def decompress(data: bytes) -> bytes:
    """A document's content as received, from ``documents.content``."""
    return zlib.decompress(data)


async def claim_document(conn: asyncpg.Connection, source: str, url: str) -> int | None:
    """Record that ``url`` is about to be fetched; None if it already was (or is being)."""
    row = await conn.fetchrow(
        "INSERT INTO documents (source, url) VALUES ($1, $2) ON CONFLICT (source, url) DO NOTHING RETURNING id",
        source,
        url,
    )
    return None if row is None else int(row["id"])


async def known_documents(conn: asyncpg.Connection, source: str, urls: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT url FROM documents WHERE source = $1 AND url = ANY($2::text[]) AND outcome <> 'fetch_failed'",
        source,
        urls,
    )
    return {r["url"] for r in rows}


async def failed_fetches(conn: asyncpg.Connection, source: str, urls: list[str]) -> dict[str, int]:
    """Those of ``urls`` whose last fetch failed, with the attempts spent on them."""
    rows = await conn.fetch(
        "SELECT url, attempts FROM documents WHERE source = $1 AND url = ANY($2::text[]) AND outcome = 'fetch_failed'",
        source,
        urls,
    )
    return {r["url"]: int(r["attempts"]) for r in rows}


async def reclaim_failed_document(conn: asyncpg.Connection, source: str, url: str, max_attempts: int) -> int | None:
    """A document whose fetch failed may be tried again, a bounded number of times.

    So may one left ``pending`` for over five minutes: its claimer died between
    claiming and recording it (the fetch itself has a timeout far below that).
    """
    row = await conn.fetchrow(
        "UPDATE documents SET outcome = 'pending', received_at = now(),"
        " attempts = attempts + CASE WHEN outcome = 'pending' THEN 1 ELSE 0 END"
        " WHERE source = $1 AND url = $2 AND attempts < $3"
        " AND (outcome = 'fetch_failed' OR (outcome = 'pending' AND received_at < now() - interval '5 minutes'))"
        " RETURNING id",
        source,
        url,
        max_attempts,
    )
    return None if row is None else int(row["id"])


async def take_document(conn: asyncpg.Connection, doc: Document) -> int | None:
    """The documents row ``doc`` is recorded in: its claimed id, or a claim made now.

    A pushed document is claimed inside the transaction that stores its alert, so a
    failure anywhere releases the claim with everything else. A row left by an
    earlier attempt that stored no alert (its outcome is not ``parsed``) is taken
    over; a ``parsed`` one means the document was already received: None.
    """
    if doc.id is not None:
        return doc.id
    row = await conn.fetchrow(
        "INSERT INTO documents (source, url) VALUES ($1, $2)"
        " ON CONFLICT (source, url) DO UPDATE SET received_at = now(), outcome = 'pending', error = NULL"
        " WHERE documents.outcome <> 'parsed'"
        " RETURNING id",
        doc.source,
        doc.url,
    )
    return None if row is None else int(row["id"])


async def record_document(
    conn: asyncpg.Connection,
    doc_id: int,
    *,
    outcome: str,
    content: bytes | None = None,
    kind: str | None = None,
    title: str | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE documents SET outcome = $2, content = COALESCE($3, content), size = COALESCE($4, size),"
        " kind = COALESCE($5, kind), title = COALESCE($6, title), error = $7,"
        " attempts = attempts + CASE WHEN $2 = 'fetch_failed' THEN 1 ELSE 0 END WHERE id = $1",
        doc_id,
        outcome,
        compress(content) if content is not None else None,
        len(content) if content is not None else None,
        kind,
        title,
        error,
    )


async def document_alert(conn: asyncpg.Connection, doc_id: int) -> asyncpg.Record | None:
    """What became of a document: its alert (id, public id, state, deliveries so far) or its error."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT a.id, a.public_id, a.state::text AS state, d.error,"
        " (SELECT count(*) FROM deliveries WHERE alert_id = a.id) AS deliveries"
        " FROM documents d LEFT JOIN alerts a ON a.document_id = d.id WHERE d.id = $1",
        doc_id,
    )
    return row


async def feed_state(conn: asyncpg.Connection, url: str) -> Mapping[str, Any]:
    """The feed's row (etag, last_modified, consecutive_failures…); empty before its first poll."""
    row = await conn.fetchrow("SELECT * FROM feed_state WHERE url = $1", url)
    return dict(row) if row else {}


async def save_feed_state(
    conn: asyncpg.Connection,
    url: str,
    *,
    status: int | None,
    etag: str | None,
    last_modified: str | None,
    error: str | None,
) -> int:
    """Record a poll of ``url``; return its consecutive failures (0 after a success)."""
    return int(
        await conn.fetchval(
            """
            INSERT INTO feed_state (url, etag, last_modified, last_polled, last_status, last_error,
                                    consecutive_failures)
            VALUES ($1, $2, $3, now(), $4, $5, CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END)
            ON CONFLICT (url) DO UPDATE SET etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
                last_polled = now(), last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error,
                consecutive_failures = CASE WHEN $5::text IS NULL THEN 0
                                            ELSE feed_state.consecutive_failures + 1 END
            RETURNING consecutive_failures
            """,
            url,
            etag,
            last_modified,
            status,
            error,
        )
    )
