"""JMA series in PostgreSQL: stale telegrams, 訂正/取消, tsunami lifting, exercises, unknown types.

Real telegrams from ``shared_data`` go through the JMA source's document path
(``claim_document`` → ``ingest_document`` → ``ctx.emit``) into the real
pipeline on a real database. Where the data set has no real example (no
supported-type 訂正, no 訓練/試験 telegram, no 2026 message type) a real
telegram is changed in memory, and the test says so.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dispatcher.context import ServiceContext
from dispatcher.pipeline import Pipeline
from dispatcher.status import format_table
from dispatcher.store import db
from dispatcher.store.reports import documents_summary, recent_alerts
from dispatcher.store.subscribers import subscribe
from dispatcher.targeting import default_targeter
from sources.jma.feed import ingest_document

IWATE_2008 = "jma/official_samples/32-35_06_0{}_{}_VXSE53.xml"  # 岩手・宮城内陸地震 (JMA's sample series)
OSHU = "0321500"  # 奥州市, listed in every VXSE53 of that series
NUMAZU = "2220300"
WAJIMA = "1720400"  # 輪島市, on the coast of 津波予報区 360 石川県能登
NOTO_VXSE53 = "jma/live_noto2024/WInfoL.xml"
REPO = Path(__file__).resolve().parents[2]


class Jma:
    """The JMA source's view of the service: a ServiceContext on a real pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.ctx = ServiceContext(pool, Pipeline(pool, targeter=default_targeter(), channels=["telegram"]))
        self.n = 0

    async def ingest(self, data: bytes, name: str) -> str:
        self.n += 1
        doc_id = await self.ctx.claim_document("jma", f"http://127.0.0.1/data/{self.n}/{name}")
        assert doc_id is not None
        return await ingest_document(self.ctx, doc_id, data, name)

    async def alert(self, name_or_event: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT a.*, a.state::text AS st, a.msg_type::text AS mt, a.status::text AS stt FROM alerts a"
                " JOIN documents d ON d.id = a.document_id WHERE d.url LIKE '%/' || $1 ORDER BY a.id DESC LIMIT 1",
                name_or_event,
            )
        assert row is not None, name_or_event
        return row

    async def deliveries(self, alert_id: int) -> dict[str, str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT address, state::text AS state FROM deliveries WHERE alert_id = $1", alert_id
            )
        return {r["address"]: r["state"] for r in rows}

    async def sent(self, alert_id: int, address: str) -> None:
        """What a worker does once the provider accepted the message."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = 1, updated_at = now()"
                " WHERE alert_id = $1 AND address = $2 AND state = 'queued'",
                alert_id,
                address,
            )


@pytest.fixture
async def jma(database: str) -> AsyncIterator[Jma]:
    pool = await db.create_pool(database, min_size=1, max_size=4)
    try:
        yield Jma(pool)
    finally:
        await pool.close()


async def add(jma: Jma, address: str, areas: list[str], *, test_recipient: bool = False) -> None:
    async with jma.pool.acquire() as conn:
        await subscribe(conn, channel="telegram", address=address, areas=areas, test_recipient=test_recipient)


def sample(shared_data: Path, n: int) -> tuple[bytes, str]:
    rev = "100915" if n == 6 else "240613"
    path = shared_data / IWATE_2008.format(n, rev)
    return path.read_bytes(), path.name


async def test_older_telegram_of_a_series_arriving_late_is_stale_and_sends_nothing(jma: Jma, shared_data: Path) -> None:
    await add(jma, "1", [OSHU])
    assert await jma.ingest(*sample(shared_data, 5)) == "alert"  # 09:01
    assert await jma.ingest(*sample(shared_data, 4)) == "alert"  # 08:53, arriving after it
    newer, older = await jma.alert(sample(shared_data, 5)[1]), await jma.alert(sample(shared_data, 4)[1])
    assert newer["st"] == "active" and await jma.deliveries(newer["id"]) == {"1": "queued"}
    assert older["st"] == "stale" and await jma.deliveries(older["id"]) == {}


async def test_cancel_supersedes_what_is_queued_and_reaches_who_got_the_original(jma: Jma, shared_data: Path) -> None:
    await add(jma, "got-it", [OSHU])
    await add(jma, "still-queued", [OSHU])
    await jma.ingest(*sample(shared_data, 3))
    original = await jma.alert(sample(shared_data, 3)[1])
    await jma.sent(original["id"], "got-it")

    assert await jma.ingest(*sample(shared_data, 6)) == "alert"  # InfoType 取消
    cancel = await jma.alert(sample(shared_data, 6)[1])
    assert cancel["mt"] == "cancel" and list(cancel["refs"]) == [original["series_key"]]
    original = await jma.alert(sample(shared_data, 3)[1])
    assert original["st"] == "cancelled" and original["replaced_by"] == cancel["id"]
    assert await jma.deliveries(original["id"]) == {"got-it": "delivered", "still-queued": "superseded"}
    assert await jma.deliveries(cancel["id"]) == {"got-it": "queued"}


async def test_correction_becomes_an_update_of_the_alert_it_corrects(jma: Jma, shared_data: Path) -> None:
    await add(jma, "numazu", [NUMAZU])
    real = (shared_data / NOTO_VXSE53).read_bytes()
    await jma.ingest(real, "WInfoL.xml")
    original = await jma.alert("WInfoL.xml")
    await jma.sent(original["id"], "numazu")
    # No 訂正 of a supported type is in the data set: the real telegram, re-issued as one.
    corrected = real.replace("<InfoType>発表</InfoType>".encode(), "<InfoType>訂正</InfoType>".encode()).replace(
        b"<ReportDateTime>2024-01-01T16:24:00+09:00</ReportDateTime>",
        b"<ReportDateTime>2024-01-01T16:30:00+09:00</ReportDateTime>",
    )
    assert corrected.count("訂正".encode()) == real.count("訂正".encode()) + 1 and b"16:30:00" in corrected
    await jma.ingest(corrected, "WInfoL-corrected_VXSE53.xml")
    update = await jma.alert("WInfoL-corrected_VXSE53.xml")
    assert update["mt"] == "update" and list(update["refs"]) == [original["series_key"]]
    assert (await jma.alert("WInfoL.xml"))["st"] == "superseded"
    assert await jma.deliveries(update["id"]) == {"numazu": "queued"}


async def test_noto_major_tsunami_warning_and_its_lifting_reach_the_same_subscribers(
    jma: Jma, shared_data: Path
) -> None:
    await add(jma, "wajima", [WAJIMA])
    await add(jma, "numazu", [NUMAZU])
    await jma.ingest((shared_data / "jma/live_noto2024/TsunamiAlarm.xml").read_bytes(), "TsunamiAlarm.xml")
    warning = await jma.alert("TsunamiAlarm.xml")
    assert warning["event"] == "大津波警報" and "360" in warning["area_codes"]
    assert WAJIMA in warning["target_codes"] and NUMAZU not in warning["target_codes"]
    assert await jma.deliveries(warning["id"]) == {"wajima": "queued"}
    await jma.sent(warning["id"], "wajima")

    lifting = (shared_data / "jma/live_noto2024/canceledTsunamiAlarm.xml").read_bytes()
    await jma.ingest(lifting, "canceledTsunamiAlarm.xml")
    lifted = await jma.alert("canceledTsunamiAlarm.xml")
    # JMA lifts with a 発表 whose Head/Title is 津波予報, in the same series; the event says it is
    # a lifting (issue 11 item 4: it was 津波予報).
    assert lifted["event"] == "津波注意報解除" and lifted["series_key"] == warning["series_key"]
    assert (await jma.alert("TsunamiAlarm.xml"))["st"] == "superseded"
    assert await jma.deliveries(lifted["id"]) == {"wajima": "queued"}


@pytest.mark.parametrize(("status", "cap"), [("訓練", "exercise"), ("試験", "test")])
async def test_exercise_and_test_telegrams_reach_only_test_recipients(
    jma: Jma, shared_data: Path, status: str, cap: str
) -> None:
    await add(jma, "resident", [NUMAZU])
    await add(jma, "duty-officer", [NUMAZU], test_recipient=True)
    # No 訓練/試験 telegram is in the data set: a real one with its Control/Status changed.
    real = (shared_data / NOTO_VXSE53).read_bytes()
    drill = real.replace("<Status>通常</Status>".encode(), f"<Status>{status}</Status>".encode())
    assert drill != real
    assert await jma.ingest(drill, f"drill_{cap}_VXSE53.xml") == "alert"
    alert = await jma.alert(f"drill_{cap}_VXSE53.xml")
    assert alert["stt"] == cap
    assert await jma.deliveries(alert["id"]) == {"duty-officer": "queued"}


async def test_unknown_message_type_is_stored_counted_and_shown(jma: Jma, shared_data: Path, database: str) -> None:
    real = (shared_data / NOTO_VXSE53).read_bytes()
    # A made-up title in the style of JMA's 2026 warnings reorganisation.
    future = real.replace(
        "<Title>震源・震度に関する情報</Title>".encode(), "<Title>気象防災速報（Ｒ０８）</Title>".encode()
    )
    assert future != real
    assert await jma.ingest(future, "20260601000000_0_VPZZ99_010000.xml") == "unsupported"
    async with jma.pool.acquire() as conn:
        doc = await conn.fetchrow("SELECT outcome, title, kind, size FROM documents")
        summary = await documents_summary(conn)
        shown = format_table(await recent_alerts(conn), documents=summary)
        alerts = await conn.fetchval("SELECT count(*) FROM alerts")
    assert doc["outcome"] == "unsupported" and doc["title"] == "気象防災速報（Ｒ０８）" and doc["size"] == len(future)
    assert alerts == 0 and summary == {"unsupported": 1}
    assert "unsupported 1" in shown

    # And the operator's command shows it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        "status",
        cwd=REPO,
        env={"DATABASE_URL": database, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert "unsupported 1" in stdout.decode()
