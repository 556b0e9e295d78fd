"""The outbox statements on their own, against real PostgreSQL."""

from __future__ import annotations

import asyncpg

from dispatcher.store import alerts as alert_store
from dispatcher.store import db, fanout, outbox
from tests.samples import make_alert

NUMAZU = "2220300"


async def test_running_the_fan_out_twice_queues_each_delivery_once(database: str) -> None:
    conn = await db.connect(database)
    try:
        ids = await conn.fetch("INSERT INTO subscribers (language) SELECT 'ja' FROM generate_series(1, 3) RETURNING id")
        await conn.executemany(
            "INSERT INTO subscriptions (subscriber_id, channel, address, areas) VALUES ($1, 'webhook', $2, $3)",
            [(r["id"], f"https://partner.example/{i}", [NUMAZU]) for i, r in enumerate(ids)],
        )

        async def fan_out(alert_id: int) -> int:
            return await fanout.fan_out(
                conn, alert_id=alert_id, priority=3, channels=["webhook"], target_codes=[NUMAZU], public=True
            )

        async with conn.transaction():
            alert_id = await alert_store.insert_alert(
                conn, make_alert("fan-out-twice"), target_codes=[NUMAZU], document_id=None
            )
            assert alert_id is not None
            assert await fan_out(alert_id) == 3
            # Same transaction, again: the fast path meets the unique constraint, the
            # savepoint keeps the transaction usable, the redo skips existing rows.
            assert await fan_out(alert_id) == 0
        # Another subscriber joins; a later run queues only the newcomer.
        sid = await conn.fetchval("INSERT INTO subscribers (language) VALUES ('en') RETURNING id")
        await conn.execute(
            "INSERT INTO subscriptions (subscriber_id, channel, address, areas) VALUES ($1, 'webhook', $2, $3)",
            sid,
            "https://partner.example/new",
            [NUMAZU],
        )
        assert await fan_out(alert_id) == 1
        rows = await conn.fetch("SELECT address, language FROM deliveries WHERE alert_id = $1", alert_id)
        assert sorted(r["address"] for r in rows) == sorted(
            [f"https://partner.example/{i}" for i in range(3)] + ["https://partner.example/new"]
        )
        events = await conn.fetchval(
            "SELECT count(*) FROM delivery_events e JOIN deliveries d ON d.id = e.delivery_id WHERE d.alert_id = $1",
            alert_id,
        )
        assert events == 4, "a rolled-back attempt must leave no event behind"
    finally:
        await conn.close()


async def test_complete_after_many_claims_still_finds_its_rows(database: str) -> None:
    # complete() looks its batch up by primary key; this guards the statement's
    # correctness (the fencing on state and attempt) across many batches.
    conn: asyncpg.Connection = await db.connect(database)
    try:
        ids = await conn.fetch(
            "INSERT INTO subscribers (language) SELECT 'ja' FROM generate_series(1, 300) RETURNING id"
        )
        await conn.copy_records_to_table(
            "subscriptions",
            records=[(r["id"], "webhook", f"https://p.example/{i}", [NUMAZU]) for i, r in enumerate(ids)],
            columns=["subscriber_id", "channel", "address", "areas"],
        )
        alert_id = await alert_store.insert_alert(conn, make_alert("complete"), target_codes=[NUMAZU], document_id=None)
        assert alert_id is not None
        await fanout.fan_out(
            conn, alert_id=alert_id, priority=3, channels=["webhook"], target_codes=[NUMAZU], public=True
        )
        written = 0
        while claimed := await outbox.claim(conn, "webhook", 50, 60):
            stale = outbox.Completion(claimed[0].id, "failed", error="late answer", claim=claimed[0].claim - 1)
            assert await outbox.complete(conn, [stale]) == 0, "an answer from an earlier claim must not be written"
            written += await outbox.complete(
                conn, [outbox.Completion(c.id, "delivered", spent=True, claim=c.claim) for c in claimed]
            )
        assert written == 300
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 300
    finally:
        await conn.close()


async def test_every_transition_is_logged_and_nothing_else(database: str) -> None:
    # The update trigger logs every row of a statement that updates deliveries;
    # lease renewal and a deleted subscription's cleanup mark themselves quiet
    # for exactly one statement (migration 0005).
    conn: asyncpg.Connection = await db.connect(database)
    try:
        sub = await conn.fetchval("INSERT INTO subscribers (language) VALUES ('ja') RETURNING id")
        sid = await conn.fetchval(
            "INSERT INTO subscriptions (subscriber_id, channel, address, areas) VALUES ($1, 'webhook', $2, $3)"
            " RETURNING id",
            sub,
            "https://p.example/log",
            [NUMAZU],
        )
        alert_id = await alert_store.insert_alert(conn, make_alert("log"), target_codes=[NUMAZU], document_id=None)
        assert alert_id is not None
        await fanout.fan_out(
            conn, alert_id=alert_id, priority=3, channels=["webhook"], target_codes=[NUMAZU], public=True
        )

        async def states() -> list[tuple[str, int]]:
            rows = await conn.fetch(
                "SELECT e.state::text, e.attempt FROM delivery_events e JOIN deliveries d ON d.id = e.delivery_id"
                " WHERE d.alert_id = $1 ORDER BY e.id",
                alert_id,
            )
            return [(r["state"], r["attempt"]) for r in rows]

        (first,) = await outbox.claim(conn, "webhook", 10, 60)
        async with conn.transaction():
            # Quiet, and only for itself: the completion in the same transaction is logged.
            assert await outbox.renew_leases(conn, [first.id], [first.claim], 60) == 1
            await outbox.complete(conn, [outbox.Completion(first.id, "queued", error="HTTP 503", spent=True, claim=1)])
        # Not "sending" any more: touches nothing, logs nothing.
        await outbox.renew_leases(conn, [first.id], [first.claim], 60)
        (second,) = await outbox.claim(conn, "webhook", 10, 60)
        await outbox.complete(conn, [outbox.Completion(second.id, "delivered", remote_id="r-1", spent=True, claim=2)])
        await conn.execute("DELETE FROM subscriptions WHERE id = $1", sid)
        assert await conn.fetchval("SELECT subscription_id FROM deliveries WHERE id = $1", first.id) is None
        assert await states() == [("queued", 0), ("sending", 1), ("queued", 1), ("sending", 2), ("delivered", 2)]
        detail = await conn.fetchval(
            "SELECT detail FROM delivery_events WHERE delivery_id = $1 AND state = 'queued' AND attempt = 1", first.id
        )
        assert detail == "HTTP 503"
    finally:
        await conn.close()
