"""Integration fixtures: a real PostgreSQL and fresh databases per test.

``$DATABASE_URL`` (a server where we may create databases) is used when set;
otherwise an embedded PostgreSQL (pgserver) is started for the session. Each
test gets its own database cloned from a migrated template, so tests are
isolated and fast.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dispatcher.demo import with_database
from dispatcher.store import db

TEMPLATE = "dispatcher_test_template"


@pytest.fixture(scope="session")
async def pg_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """DSN of a maintenance database on the test server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    state = Path(tmp_path_factory.mktemp("pgstate"))
    yield await db.resolve_dsn(None, state, "postgres")


@pytest.fixture(scope="session")
async def template_db(pg_server: str) -> str:
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    dsn = with_database(pg_server, TEMPLATE)
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE


@contextlib.asynccontextmanager
async def _scratch_database(server: str, prefix: str, template: str | None = None) -> AsyncIterator[str]:
    name = prefix + uuid.uuid4().hex[:12]
    clause = f" TEMPLATE {template}" if template else ""
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    try:
        yield with_database(server, name)
    finally:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture
async def database(pg_server: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test; its DSN."""
    async with _scratch_database(pg_server, "t_", template_db) as dsn:
        yield dsn


@pytest.fixture
async def empty_database(pg_server: str) -> AsyncIterator[str]:
    """A fresh database without any schema."""
    async with _scratch_database(pg_server, "e_") as dsn:
        yield dsn
