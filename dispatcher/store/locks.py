"""PostgreSQL advisory locks: who among the daemons sharing one database does a thing.

https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS

* :func:`exclusive`: a session lock, tried and not waited for (pollers, the subscriber
  relocation): at most one daemon holds a name at a time, the others skip.
* :func:`serialise`: a transaction lock, waited for (the pipeline's "newest telegram of
  a series wins" and the folding of an issuance's parallel documents): decisions about
  one key are taken one at a time, whatever daemon took the documents.

Migrations take their own lock (:data:`dispatcher.store.db.MIGRATION_LOCK`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of ``name`` (its first eight bytes)."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "big", signed=True)


@contextlib.asynccontextmanager
async def exclusive(pool: asyncpg.Pool, name: str) -> AsyncIterator[bool]:
    """Try the session lock ``name`` on a connection of ``pool``; yield whether we hold it.

    Held until the block ends. The pool does not reset connections
    (:func:`dispatcher.store.db.create_pool`): a lock that cannot be released goes
    away with its session, so the connection is terminated then.
    """
    key = lock_key(name)
    async with pool.acquire() as conn:
        got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        try:
            yield got
        finally:
            if got:
                try:
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)
                except BaseException:
                    conn.terminate()
                    raise


async def serialise(conn: asyncpg.Connection, key: str) -> None:
    """Wait for the transaction lock on ``key``: held by this transaction until it ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)
