"""PostgreSQL access: the embedded server, the connection pool and migrations.

With ``DATABASE_URL`` (or ``[database] url``) the service uses that server.
Without it, an embedded PostgreSQL is started with pgserver
(https://github.com/orm011/pgserver) in ``<state_dir>/pg``. pgserver's first
start in a fresh directory is not safe against a second process doing the same
at once (the second fails with ``FileExistsError``), so the first start is
serialised with an exclusive file lock; afterwards every process (daemon, CLI,
parallel tests) reuses the running server.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order
under an advisory lock, each in its own transaction, and recorded in
``schema_migrations``; ``schema.sql`` is the same schema in one file (a test
checks the two agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# What a database restart or pg_terminate_backend() looks like to a client:
# OperatorInterventionError covers admin_shutdown and cannot_connect_now.
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    # Seen on a pooled connection whose backend was terminated mid-operation.
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)

MIGRATION_LOCK = 0x6E756D617A75  # advisory lock key: "numazu"
_MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered file of ``migrations/``."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The packaged migrations, in order."""
    found = []
    for entry in resources.files("dispatcher.store.migrations").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    # Numbers are unique and increasing; a gap is allowed, since parallel branches take
    # their numbers in advance (0009 and 0010 may land after 0011).
    for before, mig in itertools.pairwise(found):
        if mig.version == before.version:
            raise RuntimeError(f"two migrations are numbered {mig.version:04d}")
    return found


def schema_sql() -> str:
    return resources.files("dispatcher.store").joinpath("schema.sql").read_text(encoding="utf-8")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_embedded: dict[Path, Any] = {}


def embedded_server_uri(state_dir: Path, database: str = "postgres") -> str:
    """Start (or reuse) the embedded PostgreSQL in ``state_dir/pg``; return its URI.

    Blocking: call it from a thread (``asyncio.to_thread``) in async code.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, containers); harmless here.
        warnings.simplefilter("ignore")
        import pgserver  # heavy import, only when embedded

    pgdata = (state_dir / "pg").resolve()
    with _file_lock(state_dir / "pgserver.lock"):
        server = _embedded.get(pgdata)
        if server is None:
            log.info("starting embedded PostgreSQL", extra={"pgdata": str(pgdata)})
            server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
            _embedded[pgdata] = server
        if database != "postgres":
            # _ident() admits only [A-Za-z0-9_], so interpolation is safe here.
            exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{_ident(database)}';")  # noqa: S608
            if "1 row" not in exists:
                server.psql(f'CREATE DATABASE "{_ident(database)}";')
        return str(server.get_uri(database))


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"invalid database name {name!r}")
    return name


async def resolve_dsn(url: str | None, state_dir: Path, database: str) -> str:
    """The DSN to use: ``url`` if given, else the embedded server's."""
    if url:
        return url
    return await asyncio.to_thread(embedded_server_uri, state_dir, database)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(dsn: str, **kw: Any) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(dsn, **kw)
    await _init_connection(conn)
    return conn


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool release hook: nothing to reset (see :func:`create_pool`)."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """The service's connection pool.

    Pooled connections carry no session state: nothing LISTENs on them (the
    outbox wake-ups have their own connection), nothing SETs a session
    variable (``dispatcher.quiet_update`` is set for one transaction only),
    and the one session advisory lock taken on them (:func:`dispatcher.store.locks.exclusive`)
    is released by its holder, which terminates the connection when it cannot. So a
    released connection skips asyncpg's reset query (``pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL``): a round trip on every use, paid mostly by
    the outbox workers, which take a connection for every claim and every
    completion. asyncpg still rolls back a transaction left open.
    """
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


async def ping(conn: asyncpg.Connection) -> None:
    """One round trip: the database answers (the systemd watchdog's check)."""
    await conn.fetchval("SELECT 1")


async def recreate_database(conn: asyncpg.Connection, name: str) -> None:
    """Drop database ``name`` (disconnecting its sessions) and create it empty."""
    await conn.execute(f'DROP DATABASE IF EXISTS "{_ident(name)}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{_ident(name)}"')


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied. Safe to run concurrently."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for mig in migrations():
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", mig.version, mig.name
                )
            log.info("applied migration", extra={"migration": f"{mig.version:04d}_{mig.name}"})
            applied.append(f"{mig.version:04d}_{mig.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied
