"""``schema.sql`` and the numbered migrations must describe the same schema."""

from __future__ import annotations

from typing import Any

import asyncpg

from dispatcher.store import db

CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY 1""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'schema_migrations' ORDER BY 1, 2""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1""",
    "functions": """
        SELECT proname, pg_get_function_arguments(oid), prosrc FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "enums": """
        SELECT t.typname, e.enumlabel, e.enumsortorder FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'public'::regnamespace ORDER BY 1, 3""",
}


async def fingerprint(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {name: [tuple(r) for r in await conn.fetch(q)] for name, q in CATALOG_QUERIES.items()}
    finally:
        await conn.close()


async def test_migrations_and_schema_sql_agree(database: str, empty_database: str) -> None:
    # `database` was built by applying every migration; build the other from schema.sql.
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(db.schema_sql())
    finally:
        await conn.close()
    migrated, declared = await fingerprint(database), await fingerprint(empty_database)
    assert migrated["columns"], "the migrated schema is empty"
    for part in CATALOG_QUERIES:
        assert migrated[part] == declared[part], f"{part} differ between migrations/ and schema.sql"


async def test_migrate_is_idempotent_and_recorded(database: str) -> None:
    conn = await db.connect(database)
    try:
        assert await db.migrate(conn) == []
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == [m.version for m in db.migrations()]


async def test_concurrent_migrations_apply_once(empty_database: str) -> None:
    import asyncio

    conns = [await db.connect(empty_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(db.migrate(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(f"{m.version:04d}_{m.name}" for m in db.migrations())


def test_migrations_are_numbered_in_order() -> None:
    migs = db.migrations()
    versions = [m.version for m in migs]
    # Unique and increasing from 1; branches take their numbers in advance, so a gap may wait for its merge.
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert all(m.sql.strip() for m in migs)


async def test_links_sent_before_public_ids_keep_their_alert(empty_database: str) -> None:
    """Migration 0006: a link that carried a sender's identifier still opens the alert it was sent for."""
    from dispatcher.store import alerts as alert_store

    conn = await db.connect(empty_database)
    try:
        for mig in db.migrations():
            if mig.version >= 6:
                break
            await conn.execute(mig.sql)
        insert = (
            "INSERT INTO alerts (identifier, sender, source, sent, status, msg_type, event, severity, urgency,"
            " certainty, priority) VALUES ($1, $2, 'broadcast', now(), 'actual', 'alert', $3, 'severe',"
            " 'immediate', 'observed', 0) RETURNING id"
        )
        first = await conn.fetchval(insert, "REL-0001", "bousai-musen.example", "避難指示")
        # Before 0006 another sender could reuse the identifier (and took the page over).
        await conn.fetchval(insert, "REL-0001", "attacker.example", "偽の情報")
        await conn.execute(
            "INSERT INTO documents (source, url, outcome) VALUES ('broadcast', 'urn:broadcast:x:lost', 'parsed')"
        )
        for mig in db.migrations():
            if mig.version >= 6:
                await conn.execute(mig.sql)
        linked = await alert_store.public_alert(conn, "REL-0001")
        assert linked is not None and linked["id"] == first and linked["event"] == "避難指示"
        ids = [r["public_id"] for r in await conn.fetch("SELECT public_id FROM alerts")]
        assert len(set(ids)) == 2 and all(len(i) == 17 for i in ids)
        # The broadcast marked parsed without its alert (the old intake's window) can be received again.
        assert await conn.fetchval("SELECT outcome FROM documents WHERE url = 'urn:broadcast:x:lost'") == "error"
    finally:
        await conn.close()
