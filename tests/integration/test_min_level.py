"""A subscriber who chose "警戒レベル4 and above" gets no レベル3 alert, and always one without a level."""

from __future__ import annotations

from dispatcher.model import Area
from dispatcher.pipeline import CodeTargeter, Pipeline
from dispatcher.store import db
from dispatcher.store.subscribers import subscribe
from tests.samples import NUMAZU, make_alert


async def test_min_level_filters_the_fan_out(database: str) -> None:
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            strict = await subscribe(conn, channel="email", address="strict@example.jp", areas=[NUMAZU])
            await subscribe(conn, channel="email", address="all@example.jp", areas=[NUMAZU])
            await conn.execute("UPDATE subscriptions SET min_level = 4 WHERE id = $1", strict)
        pipeline = Pipeline(pool, targeter=CodeTargeter(), channels=["email"])

        async def reached(identifier: str, details: dict[str, str]) -> set[str]:
            result = await pipeline.ingest(make_alert(identifier, areas=(Area("沼津市", (NUMAZU,), details=details),)))
            async with pool.acquire() as conn:
                rows = await conn.fetch("SELECT address FROM deliveries WHERE alert_id = $1", result.alert_id)
            return {r["address"] for r in rows}

        assert await reached("l3", {"level": "3"}) == {"all@example.jp"}
        assert await reached("l4", {"level": "4"}) == {"all@example.jp", "strict@example.jp"}
        assert await reached("none", {}) == {"all@example.jp", "strict@example.jp"}
        # Two areas of different levels (the places path): the subscriber's own place decides.
        two = make_alert(
            "two",
            areas=(
                Area("静岡県", ("220000",), details={"level": "5"}),
                Area("沼津市", (NUMAZU,), details={"level": "3"}),
            ),
        )
        result = await pipeline.ingest(two)
        async with pool.acquire() as conn:
            got = {
                r["address"]
                for r in await conn.fetch("SELECT address FROM deliveries WHERE alert_id = $1", result.alert_id)
            }
        assert got == {"all@example.jp"}
    finally:
        await pool.close()
