"""One issuance, one message: JMA's parallel documents of one warning reach a person once.

Real telegrams of the shared data that JMA issued together (same office and report
time: VPWW53 + VPWW54, VPWW53 + VPNO50 + VPWW50, R06 element telegrams, VPNO50 +
VPWW55) go the JMA source's own path (claim, parse, store, fan out) into daemons on a
real PostgreSQL, which deliver them to a Telegram Bot API stand-in. Each issuance has
its own resident, following a municipality all its documents name. They arrive in
order, in reverse, all at once, split between two daemons, and across a restart; the
resident hears each issuance once, and again only when a later document raises the
警戒レベル for their place (dispatcher/folding.py): 福井's VPNO50 (特別警報 switched to
警報, no level) arriving before the VPWW55 that gives 福井市 レベル４ is heard, and the
レベル４ after it; the other way round, the レベル４ alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from dispatcher.app import Service
from dispatcher.folding import area_level
from dispatcher.settings import load
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store.subscribers import subscribe
from dispatcher.targeting import default_targeter
from sources.jma.feed import ingest_document
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed

# (documents of one issuance, the municipality its resident follows). One issuance per
# series: a later issuance of a series would also reach the earlier one's residents as
# its update, which is right, but not what this counts.
ISSUANCES: list[tuple[list[str], str]] = [
    (["official_samples/15_13_01_161226_VPWW53.xml", "official_samples/15_13_01_161226_VPWW54.xml"], "1342100"),
    (
        [
            "official_samples/15_08_01_130412_VPWW53.xml",
            "official_samples/62_01_01_130412_VPNO50.xml",
            "official_samples/15_08_01_130412_VPWW50.xml",
        ],
        "2920100",
    ),
    (["official_samples/15_10_03_160628_VPWW53.xml", "official_samples/62_02_01_130906_VPNO50.xml"], "2820100"),
    (
        [
            "live_2026/18_00_01_260830_VPNO50_switch.xml",
            "live_2026/18_00_01_260830_VPWW55_fukui_downgrade.xml",
        ],
        "1820100",
    ),
    (["live_2026/vpww58_wind_advisory.xml", "live_2026/vpww59_wave_advisory.xml"], "1340100"),
]


def _level_for(data: bytes, name: str, code: str) -> int | None:
    """The level a document gives the place of a resident following ``code`` (0: no level), None: not reached.

    The place is found as the pipeline finds it (the most specific area whose expansion
    holds the code), so a prefecture-wide notice reaches a municipality's resident too.
    """
    outcome = parse_telegram(data, url=name)
    if not isinstance(outcome, Parsed):
        return None
    places = default_targeter().places(outcome.alert)
    if code not in places.codes:
        return None
    place = places.places[places.codes.index(code)]
    return area_level(outcome.alert.areas[place]) or 0 if place >= 0 else 0


def expected_messages(docs: Sequence[tuple[bytes, str]], code: str) -> int:
    """Once for the first document naming the place, once more for each that raises its level."""
    heard: int | None = None
    count = 0
    for data, name in docs:
        level = _level_for(data, name, code)
        if level is None:
            continue
        if heard is None or level > heard:
            count += 1
            heard = level
    return count


CONFIG = """
[service]
state_dir = "{state}"
[web]
enabled = false
[jma]
enabled = false
[delivery]
poll_interval = 0.2
[channels.telegram]
enabled = true
token_env = "TELEGRAM_TOKEN"
base_url = "{base_url}"
"""


class Daemons:
    def __init__(self, dsn: str, tmp: Path, standin: TelegramStandIn) -> None:
        self.dsn = dsn
        self.tmp = tmp
        self.standin = standin
        self.running: list[Service] = []
        self.urls = 0

    async def start(self) -> Service:
        cfg = self.tmp / f"d{len(self.running)}.toml"
        cfg.write_text(CONFIG.format(state=self.tmp, base_url=self.standin.base_url), encoding="utf-8")
        service = Service(load(cfg, env={"TELEGRAM_TOKEN": "42:TEST"}), dsn=self.dsn)
        await service.start()
        self.running.append(service)
        return service

    async def ingest(self, service: Service, data: bytes, name: str) -> str:
        assert service.context is not None
        self.urls += 1
        doc_id = await service.context.claim_document("jma", f"http://127.0.0.1/{self.urls}/{name}")
        assert doc_id is not None
        return await ingest_document(service.context, doc_id, data, name)

    async def stop_all(self) -> None:
        for service in self.running:
            await service.stop()
        self.running.clear()


@pytest.fixture
async def daemons(database: str, tmp_path: Path) -> AsyncIterator[Daemons]:
    standin = TelegramStandIn()
    await standin.start()
    conn = await asyncpg.connect(database)
    try:
        for i, (_docs, code) in enumerate(ISSUANCES):
            await subscribe(conn, channel="telegram", address=str(500000 + i), areas=[code])
    finally:
        await conn.close()
    d = Daemons(database, tmp_path, standin)
    yield d
    await d.stop_all()
    await standin.stop()


async def _settled(dsn: str, timeout: float = 30.0) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending')"):
            assert time.monotonic() < deadline, "deliveries did not settle"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def _documents(shared: Path, order: str) -> list[list[tuple[bytes, str]]]:
    out = []
    for names, _code in ISSUANCES:
        docs = [((shared / "jma" / n).read_bytes(), Path(n).name) for n in names]
        out.append(docs[::-1] if order == "reverse" else docs)
    return out


@pytest.mark.parametrize("order", ["forward", "reverse", "together", "two-daemons", "restart"])
async def test_each_issuance_reaches_its_resident_once(daemons: Daemons, shared_data: Path, order: str) -> None:
    groups = _documents(shared_data, order)
    first = await daemons.start()
    second = await daemons.start() if order == "two-daemons" else first
    if order in ("forward", "reverse"):
        for docs in groups:
            for data, name in docs:
                await daemons.ingest(first, data, name)
    elif order in ("together", "two-daemons"):
        await asyncio.gather(
            *(
                daemons.ingest(first if i % 2 == 0 else second, data, name)
                for docs in groups
                for i, (data, name) in enumerate(docs)
            )
        )
    else:  # restart: the first document of each issuance, a new daemon, the rest
        for docs in groups:
            await daemons.ingest(first, *docs[0])
        await _settled(daemons.dsn)
        await daemons.stop_all()
        first = await daemons.start()
        for docs in groups:
            for data, name in docs[1:]:
                await daemons.ingest(first, data, name)
    await _settled(daemons.dsn)
    await asyncio.sleep(0.3)
    by_chat: dict[str, int] = {}
    for m in daemons.standin.messages:
        by_chat[m.chat_id] = by_chat.get(m.chat_id, 0) + 1
    for i, (docs, (_names, code)) in enumerate(zip(groups, ISSUANCES, strict=True)):
        if order in ("together", "two-daemons"):
            # Arrival order is up to the race: at least once, at most once per level raised in some order.
            assert (
                1
                <= by_chat.get(str(500000 + i), 0)
                <= max(expected_messages(docs, code), expected_messages(docs[::-1], code))
            ), (i, by_chat)
        else:
            assert by_chat.get(str(500000 + i), 0) == expected_messages(docs, code), (order, i, by_chat)
    conn = await asyncpg.connect(daemons.dsn)
    try:
        folded = await conn.fetch("SELECT id, details->'siblings' AS siblings FROM alerts WHERE issuance IS NOT NULL")
    finally:
        await conn.close()
    assert any(r["siblings"] for r in folded), "later documents are linked to their siblings"


async def test_typhoon_analysis_is_stored_but_not_pushed(database: str, shared_data: Path) -> None:
    """VPTW60 台風解析・予報情報 carries details.push = False: on the site, not on phones nor in posts."""
    from dataclasses import replace

    from dispatcher.pipeline import Outcome, Pipeline
    from dispatcher.store import db

    data = (shared_data / "jma" / "live_2026" / "vptw60_typhoon.xml").read_bytes()
    outcome = parse_telegram(data, url="vptw60_typhoon.xml")
    assert isinstance(outcome, Parsed) and outcome.alert.details["push"] is False
    pool = await db.create_pool(database, min_size=1, max_size=2)
    try:
        # A channel that posts once per alert would carry anything public, areas or not.
        pipeline = Pipeline(pool, targeter=default_targeter(), channels=["webhook"], broadcast_channels=["webhook"])
        stored = await pipeline.ingest(outcome.alert)
        assert stored.outcome is Outcome.QUEUED and stored.deliveries == 0
        pushed = replace(outcome.alert, identifier="typhoon-pushed", details={**outcome.alert.details, "push": True})
        assert (await pipeline.ingest(pushed)).deliveries == 1, "what push = False holds back"
    finally:
        await pool.close()


async def test_each_resident_reads_their_own_place_first(daemons: Daemons, shared_data: Path) -> None:
    """[jma-r06] 5: a resident of 小笠原村 reads 小笠原村 first, not 千代田区、中央区、港区…"""
    service = await daemons.start()
    data = (shared_data / "jma" / "official_samples" / "15_13_01_161226_VPWW53.xml").read_bytes()
    await daemons.ingest(service, data, "15_13_01_161226_VPWW53.xml")
    await _settled(daemons.dsn)
    [message] = [m for m in daemons.standin.messages if m.chat_id == "500000"]
    head = message.text.splitlines()[:3]
    assert any(line.startswith("小笠原村") for line in head), head
    assert "千代田区" not in "\n".join(head)
