"""The residents' conversation stored in PostgreSQL: settings, places, replies in the outbox, /stop."""

from __future__ import annotations

import asyncio

from channels.templates import Templates
from dispatcher.residents import REPLY_PRIORITY, Command, Press, Text, load_ui_texts
from dispatcher.residents.directory import GeoDirectory
from dispatcher.residents.service import ResidentService
from dispatcher.store import db
from geo import default_index


async def test_onboarding_is_stored_and_stop_deletes_everything(database: str) -> None:
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        service = ResidentService(
            pool, directory=GeoDirectory(default_index()), ui=load_ui_texts(), templates=Templates.load()
        )
        chat = "1001"
        for event in (
            Command("start"),
            Press("L:en"),
            Press("D:numazu-ooka"),
            Text("Heda"),
            Press("M:done"),
            Press("V:critical"),
            Press("Q:1320-420"),
        ):
            replies = await service.handle_event("telegram", chat, event)
            assert replies
        async with pool.acquire() as conn:
            sub = await conn.fetchrow(
                "SELECT s.id, s.areas, s.max_class, s.quiet_start, s.quiet_end, sub.language, s.active"
                " FROM subscriptions s JOIN subscribers sub ON sub.id = s.subscriber_id WHERE s.address = $1",
                chat,
            )
            assert sub["areas"] == ["numazu-ooka", "numazu-heda"]
            assert (sub["max_class"], sub["quiet_start"], sub["quiet_end"], sub["language"]) == (0, 1320, 420, "en")
            replies = await conn.fetch(
                "SELECT priority, reply, alert_id FROM deliveries WHERE address = $1 ORDER BY id", chat
            )
            assert all(r["alert_id"] is None and r["priority"] == REPLY_PRIORITY for r in replies)
            assert "All set" in replies[-1]["reply"]["text"]
        latest = await service.handle_event("telegram", chat, Command("latest"))
        assert "No alerts" in latest[-1].text
        # /latest: alerts for my places, and every broadcast of the city's last 24 h.
        from dispatcher.model import Area
        from dispatcher.pipeline import CodeTargeter, Pipeline
        from tests.samples import make_alert

        pipe = Pipeline(pool, targeter=CodeTargeter(), channels=[])
        await pipe.ingest(make_alert("mine", event="大雨警報", areas=(Area("大岡", ("numazu-ooka",)),)))
        await pipe.ingest(make_alert("other", event="洪水警報", areas=(Area("原", ("numazu-hara",)),)))
        await pipe.ingest(
            make_alert("loudspeaker", event="防災行政無線", source="broadcast", areas=(Area("原", ("numazu-hara",)),))
        )
        latest = await service.handle_event("telegram", chat, Command("latest"))
        text = latest[-1].text
        assert "Heavy Rain Warning" in text and "broadcast" in text and "Flood Warning" not in text, text
        await service.handle_event("telegram", chat, Command("stop"))
        async with pool.acquire() as conn:
            for table in ("subscriptions", "subscribers", "residents", "resident_places"):
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
            # Only the farewell is still queued for the chat.
            left = await conn.fetch("SELECT reply FROM deliveries WHERE address = $1 AND state = 'queued'", chat)
            assert [r["reply"]["text"][:9] for r in left] == ["Your data"]
    finally:
        await pool.close()


async def test_a_group_migrated_to_a_supergroup_is_followed_and_gets_the_message(database: str) -> None:
    from dispatcher.settings import ChannelSettings
    from dispatcher.store.subscribers import subscribe
    from tests.integration.test_delivery import FAST, engine, telegram, telegram_standin, wait_until
    from tests.samples import NUMAZU, make_alert

    conn = await db.connect(database)
    try:
        await subscribe(conn, channel="telegram", address="-4001", areas=[NUMAZU], language="en")
    finally:
        await conn.close()
    async with telegram_standin() as tg:
        tg.migrate("-4001", -1007770001)
        async with engine(database, FAST, [(telegram(tg), ChannelSettings("telegram", enabled=True))]) as (pipe, _w):
            await pipe.ingest(make_alert("migrated-1"))
            await wait_until(lambda: any(m.chat_id == "-1007770001" for m in tg.messages), 20, "the re-send")
    conn = await db.connect(database)
    try:
        assert await conn.fetchval("SELECT address FROM subscriptions") == "-1007770001"
        rows = await conn.fetch("SELECT address, state::text AS state FROM deliveries ORDER BY id")
        assert [(r["address"], r["state"]) for r in rows] == [("-4001", "failed"), ("-1007770001", "delivered")]
    finally:
        await conn.close()


async def test_district_channels_get_each_alert_of_their_district_once(database: str) -> None:
    import dataclasses

    from channels.telegram import TelegramConfig
    from dispatcher.model import Area
    from dispatcher.residents.wiring import district_follows
    from dispatcher.settings import ChannelSettings, load
    from dispatcher.store import residents as store
    from tests.integration.test_delivery import FAST, engine, telegram, telegram_standin, wait_until
    from tests.samples import make_alert

    settings = load(None, env={})
    config = TelegramConfig(token="42:X", district_channels={"numazu-heda": "-100500", "all": "@numazu_bousai"})
    follows = district_follows(settings, config)
    assert follows["-100500"] == ["numazu-heda"] and "2220300" in follows["@numazu_bousai"]
    conn = await db.connect(database)
    try:
        await store.sync_district_channels(conn, "telegram", follows)
        await store.sync_district_channels(conn, "telegram", follows)  # again at the next start: no change
        assert await conn.fetchval("SELECT count(*) FROM subscriptions WHERE district_channel") == 2
    finally:
        await conn.close()
    async with telegram_standin() as tg:
        channel = telegram(tg)
        async with engine(database, FAST, [(channel, ChannelSettings("telegram", enabled=True))]) as (pipe, _w):
            await pipe.ingest(make_alert("heda-1", areas=(Area("戸田", ("numazu-heda",)),)))
            await pipe.ingest(make_alert("hara-1", areas=(Area("原", ("numazu-hara",)),)))
            await wait_until(lambda: len(tg.messages) >= 3, 20, "three posts")
            await asyncio.sleep(0.5)
    assert sorted(m.chat_id for m in tg.messages) == ["-100500", "@numazu_bousai", "@numazu_bousai"]
    conn = await db.connect(database)
    try:
        await store.sync_district_channels(conn, "telegram", {"-100500": ["numazu-heda"]})
        assert [r["address"] for r in await conn.fetch("SELECT address FROM subscriptions")] == ["-100500"]
    finally:
        await conn.close()
    assert dataclasses.is_dataclass(config)


async def test_quiet_until_across_midnight(database: str) -> None:
    conn = await db.connect(database)
    try:

        async def until(start: int, end: int, at: str) -> str | None:
            value = await conn.fetchval(
                "SELECT to_char(quiet_until($1, $2, $3::text::timestamptz) AT TIME ZONE 'Asia/Tokyo', 'MM-DD HH24:MI')",
                start,
                end,
                at,
            )
            return value if value is None else str(value)

        assert await until(1320, 420, "2026-12-04 23:30+09") == "12-05 07:00"
        assert await until(1320, 420, "2026-12-05 06:59+09") == "12-05 07:00"
        assert await until(1320, 420, "2026-12-05 07:00+09") is None
        assert await until(1320, 420, "2026-12-05 12:00+09") is None
        assert await until(60, 300, "2026-12-05 02:00+09") == "12-05 05:00"
        assert await until(60, 300, "2026-12-04 17:30+00") == "12-05 05:00"  # 02:30 JST
    finally:
        await conn.close()


async def test_a_kept_point_is_matched_again_when_the_layers_change(database: str) -> None:
    from dispatcher.residents import SharedLocation
    from dispatcher.residents.service import relocate_kept_points

    pool = await db.create_pool(database, min_size=1, max_size=2)
    index = default_index()
    try:
        service = ResidentService(pool, directory=GeoDirectory(index), ui=load_ui_texts(), templates=Templates.load())
        for event in (Command("start"), Press("L:en"), SharedLocation(35.098, 138.86), Press("K:1")):
            await service.handle_event("telegram", "77", event)
        async with pool.acquire() as conn:
            # As if the point had been matched with older layers that put it elsewhere.
            await conn.execute("UPDATE resident_places SET codes = '{numazu-heda}', layers_version = 'geo-old'")
            await conn.execute("UPDATE subscriptions SET areas = '{numazu-heda}'")
            assert await relocate_kept_points(conn, index) == 1
            assert await conn.fetchval("SELECT areas FROM subscriptions") == ["numazu-chushin"]
            assert await relocate_kept_points(conn, index) == 0
    finally:
        await pool.close()
