"""Geographic targeting end to end on a real PostgreSQL: subscribe, ingest, fan out.

Subscribers share a location (matched once against the packaged layers) or choose
districts by name; alerts name JMA codes, CAP polygons or hazard zones; the deliveries
the real pipeline queues say who was reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from shapely.geometry import box

from dispatcher.locations import relocate_all, subscribe_location
from dispatcher.model import Alert, Area, Status
from dispatcher.pipeline import Outcome, Pipeline
from dispatcher.store import db
from dispatcher.store.subscribers import audience, subscribe
from dispatcher.targeting import default_targeter, resolve_choices
from geo import Feature, GeoIndex, Layer, default_index
from sources.jma.codes import CITY_CODE_TYPE, FORECAST_CODE_TYPE
from tests.samples import make_alert as sample_alert

REPO = Path(__file__).resolve().parents[2]
HEDA = (34.970, 138.800)  # ~2 km inland of every boundary of 戸田 (see tests/unit/test_geo.py)
MISHIMA = (35.118, 138.918)  # 三島市
HEDA_RING = ((34.98, 138.79), (34.98, 138.81), (34.96, 138.81), (34.96, 138.79), (34.98, 138.79))
STATION_RING = ((35.105, 138.855), (35.105, 138.865), (35.098, 138.865), (35.098, 138.855), (35.105, 138.855))

CAP_HEDA = f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>numazu-heda-1</identifier><sender>bousai@city.numazu.example</sender>
  <sent>2024-06-01T10:00:00+09:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>ja-JP</language><event>土砂災害</event><urgency>Immediate</urgency>
    <severity>Extreme</severity><certainty>Likely</certainty><headline>戸田地区に避難指示</headline>
    <area><areaDesc>戸田</areaDesc><polygon>{" ".join(f"{la},{lo}" for la, lo in HEDA_RING)}</polygon></area>
  </info>
</alert>
"""


@pytest.fixture(scope="module")
def index() -> GeoIndex:
    return default_index()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database, min_size=1, max_size=3)
    yield p
    await p.close()


def make_alert(identifier: str, *areas: Area, status: Status = Status.ACTUAL) -> Alert:
    return sample_alert(
        identifier,
        sender="test@numazu",
        sent=datetime(2024, 6, 1, 1, 0, tzinfo=UTC),
        status=status,
        event="テスト",
        areas=areas,
    )


async def reached(pool: asyncpg.Pool, index: GeoIndex, alert: Alert) -> set[str]:
    """Addresses the real pipeline queues deliveries for."""
    pipeline = Pipeline(pool, targeter=default_targeter(index=index), channels=["telegram"])
    result = await pipeline.ingest(alert)
    assert result.outcome is Outcome.QUEUED, result
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT address FROM deliveries WHERE alert_id = $1", result.alert_id)
    assert len(rows) == result.deliveries
    return {r["address"] for r in rows}


def inside(feature: Feature) -> tuple[float, float]:
    p = feature.geometry.representative_point()
    return (p.y, p.x)


async def locate(conn: asyncpg.Connection, index: GeoIndex, address: str, point: tuple[float, float]) -> int:
    return await subscribe_location(conn, channel="telegram", address=address, lat=point[0], lon=point[1], index=index)


async def test_cap_polygon_reaches_heda_not_the_centre(pool: asyncpg.Pool, index: GeoIndex) -> None:
    async with pool.acquire() as conn:
        await locate(conn, index, "heda", HEDA)
        await locate(conn, index, "station", (35.1019, 138.8597))
        row = await conn.fetchrow("SELECT * FROM subscriptions WHERE address = 'heda'")
    assert row["areas"] == ["numazu-heda"] and row["located_areas"] == ["numazu-heda"]
    assert (row["latitude"], row["longitude"], row["layers_version"]) == (*HEDA, index.version)

    assert await reached(pool, index, make_alert("cap-heda", Area("戸田", polygons=(HEDA_RING,)))) == {"heda"}
    assert await reached(pool, index, make_alert("cap-centre", Area("駅", polygons=(STATION_RING,)))) == {"station"}


@pytest.mark.parametrize(
    ("code", "code_type"),
    [("2220300", CITY_CODE_TYPE), ("220030", FORECAST_CODE_TYPE), ("220000", FORECAST_CODE_TYPE)],
)
async def test_jma_codes_reach_every_district(pool: asyncpg.Pool, index: GeoIndex, code: str, code_type: str) -> None:
    async with pool.acquire() as conn:
        for district in index.districts:
            await locate(conn, index, district.code, inside(district))
        await subscribe(conn, channel="telegram", address="city", areas=["2220300"])
        await subscribe(conn, channel="telegram", address="by-name", areas=resolve_choices(["戸田"], index))
        await locate(conn, index, "mishima", MISHIMA)
    alert = make_alert(f"jma-{code}", Area("沼津", (code,), details={"code_type": code_type}))
    assert await reached(pool, index, alert) == {*index.districts.codes, "city", "by-name"}


async def test_neighbouring_municipality_is_not_reached(pool: asyncpg.Pool, index: GeoIndex) -> None:
    async with pool.acquire() as conn:
        await locate(conn, index, "mishima", MISHIMA)
        await locate(conn, index, "heda", HEDA)
        row = await conn.fetchrow("SELECT areas, located_areas FROM subscriptions WHERE address = 'mishima'")
    assert row["areas"] == [] and row["located_areas"] == []
    everywhere = make_alert("all-districts", Area("沼津市", tuple(index.districts.codes)))
    assert await reached(pool, index, everywhere) == {"heda"}
    jma = make_alert("jma-city", Area("沼津市", ("2220300",), details={"code_type": CITY_CODE_TYPE}))
    assert await reached(pool, index, jma) == {"heda"}
    # A circle around 三島市 reaching into central Numazu selects Numazu's districts it
    # touches; the resident of 三島市 inside it is not a resident of any of them.
    async with pool.acquire() as conn:
        await locate(conn, index, "station", (35.1019, 138.8597))
    circle = make_alert("circle", Area("三島駅周辺", circles=((MISHIMA[0], MISHIMA[1], 7.0),)))
    assert await reached(pool, index, circle) == {"station"}


async def test_hazard_zone_alert_reaches_only_residents_of_the_zone(pool: asyncpg.Pool, index: GeoIndex) -> None:
    landslide = next(layer for layer in index.hazards if layer.features[0].kind == "landslide")
    zone = landslide.features[0]
    in_zone = inside(zone)
    district = index.locate(*in_zone).districts[0]
    # A point of the same district outside every zone.
    outside = next(
        (lat, lon)
        for lat in (in_zone[0] + d for d in (0.01, -0.01, 0.02, -0.02))
        for lon in (in_zone[1] + d for d in (0.01, -0.01, 0.02, -0.02))
        if (loc := index.locate(lat, lon)).districts == (district,) and not loc.zones
    )
    async with pool.acquire() as conn:
        await locate(conn, index, "in-zone", in_zone)
        await locate(conn, index, "same-district", outside)
        row = await conn.fetchrow("SELECT areas FROM subscriptions WHERE address = 'in-zone'")
    assert row["areas"][0] == district.code and zone.code in row["areas"]
    assert await reached(pool, index, make_alert("zone-id", Area(zone.name, (zone.code,)))) == {"in-zone"}
    assert await reached(pool, index, make_alert("district", Area(district.name, (district.code,)))) == {
        "in-zone",
        "same-district",
    }


async def test_relocate_all_after_a_layer_change(pool: asyncpg.Pool, index: GeoIndex) -> None:
    west, south, east, north = index.districts.bounds
    middle = (west + east) / 2
    halves = Layer(
        "districts",
        [
            Feature("west", "西", "district", box(west, south, middle, north)),
            Feature("east", "東", "district", box(middle, south, east, north)),
        ],
    )
    changed = GeoIndex(municipalities=index.municipalities, districts=halves, hazards=index.hazards)
    assert changed.version != index.version
    async with pool.acquire() as conn:
        heda = await subscribe_location(
            conn, channel="telegram", address="heda", lat=HEDA[0], lon=HEDA[1], index=index, areas=["2220300"]
        )
        # Chose 戸田 by name and lives there: the choice must survive the relocation.
        chooser = await subscribe_location(
            conn, channel="telegram", address="chooser", lat=HEDA[0], lon=HEDA[1], index=index, areas=["numazu-heda"]
        )
        station = await locate(conn, index, "station", (35.1019, 138.8597))
        for i in range(4):
            await locate(conn, index, f"more-{i}", (35.10 + i * 0.001, 138.86))
        plain = await subscribe(conn, channel="telegram", address="plain", areas=["2220300"])
        assert await relocate_all(conn, index) == 0
        assert await relocate_all(conn, changed, batch_size=2) == 7
        assert await relocate_all(conn, changed) == 0
        rows = {
            r["id"]: r for r in await conn.fetch("SELECT id, areas, located_areas, layers_version FROM subscriptions")
        }
    assert (rows[heda]["areas"], rows[heda]["located_areas"]) == (["2220300", "west"], ["west"])
    assert (rows[chooser]["areas"], rows[chooser]["located_areas"]) == (["numazu-heda", "west"], ["west"])
    assert (rows[station]["areas"], rows[station]["located_areas"]) == (["east"], ["east"])
    assert rows[heda]["layers_version"] == changed.version
    assert (rows[plain]["areas"], rows[plain]["layers_version"]) == (["2220300"], None)
    # A district's alert reaches its followers and whoever follows the whole city ("plain").
    assert await reached(pool, changed, make_alert("west", Area("西", ("west",)))) == {"heda", "chooser", "plain"}


async def test_audience_counts_what_the_fan_out_queues(pool: asyncpg.Pool, index: GeoIndex) -> None:
    async with pool.acquire() as conn:
        await locate(conn, index, "heda", HEDA)
        await subscribe(conn, channel="telegram", address="city", areas=["2220300"])
        await subscribe(conn, channel="telegram", address="tester", areas=["numazu-heda"], test_recipient=True)
        await subscribe(conn, channel="telegram", address="gone", areas=["numazu-heda"])
        await conn.execute("UPDATE subscriptions SET active = false WHERE address = 'gone'")
    for status, expected in ((Status.ACTUAL, {"heda", "city", "tester"}), (Status.EXERCISE, {"tester"})):
        alert = make_alert(f"count-{status}", Area("沼津市", ("2220300",)), status=status)
        targets, _ = default_targeter(index=index).target_codes(alert)
        async with pool.acquire() as conn:
            counted = await audience(conn, targets, public=alert.is_public)
        assert await reached(pool, index, alert) == expected
        assert counted == {"telegram": len(expected)}


def run_audience(database: str, path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "DISPATCHER_CONFIG"} | {"DATABASE_URL": database}
    proc = subprocess.run(
        [sys.executable, "-m", "dispatcher", "audience", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


async def test_audience_cli_on_jma_and_cap(
    database: str, pool: asyncpg.Pool, index: GeoIndex, shared_data: Path, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        await locate(conn, index, "heda", HEDA)
        await locate(conn, index, "station", (35.1019, 138.8597))
        await subscribe(conn, channel="email", address="city@x", areas=["2220300"])
        await locate(conn, index, "mishima", MISHIMA)

    # A real 震源・震度情報 of 2024-01-01 (Noto) that names 沼津市 (2220300).
    jma = run_audience(database, shared_data / "jma" / "live_noto2024" / "WInfoL.xml")
    assert jma["event"] == "震源・震度情報"
    assert [d["code"] for d in jma["districts"]] == list(index.districts.codes)  # type: ignore[attr-defined]
    assert {"code": "2220300", "name": "沼津市"} in jma["municipalities"]  # type: ignore[operator]
    assert jma["subscribers"] == 3 and jma["by_channel"] == {"telegram": 2, "email": 1}

    cap_file = tmp_path / "heda.xml"
    cap_file.write_text(CAP_HEDA, encoding="utf-8")
    cap = run_audience(database, cap_file)
    assert cap["event"] == "土砂災害"
    assert cap["districts"] == [{"code": "numazu-heda", "name": "戸田"}]
    assert cap["municipalities"] == [] and cap["unknown"] == []
    # The resident located in 戸田, and the e-mail subscriber of 沼津市 as a whole.
    assert cap["subscribers"] == 2 and cap["by_channel"] == {"telegram": 1, "email": 1}
