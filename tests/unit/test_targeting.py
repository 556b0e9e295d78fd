"""Targeting without a database: alert areas → target codes, subscriber choices → codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.model import Alert, Area, Certainty
from dispatcher.targeting import GeoExpander, default_targeter, resolve_choices
from geo import GeoIndex, Layer, default_index, load_index
from sources.jma.codes import CITY_CODE_TYPE, FORECAST_CODE_TYPE, TSUNAMI_CODE_TYPE
from tests.samples import make_alert

HEDA_RING = ((34.98, 138.79), (34.98, 138.81), (34.96, 138.81), (34.96, 138.79), (34.98, 138.79))


@pytest.fixture(scope="module")
def index() -> GeoIndex:
    return default_index()


def alert(*areas: Area) -> Alert:
    return make_alert(
        "t-1",
        sent=datetime(2024, 6, 1, tzinfo=UTC),
        event="test",
        certainty=Certainty.OBSERVED,
        areas=areas,
    )


@pytest.mark.parametrize(
    ("code", "code_type"),
    [("2220300", CITY_CODE_TYPE), ("220030", FORECAST_CODE_TYPE), ("220000", FORECAST_CODE_TYPE)],
)
def test_jma_codes_for_numazu_reach_every_district(index: GeoIndex, code: str, code_type: str) -> None:
    targets, unknown = default_targeter(index=index).target_codes(
        alert(Area("沼津", (code,), details={"code_type": code_type}))
    )
    assert set(index.districts.codes) <= set(targets)
    assert "2220300" in targets
    assert unknown == []


def test_tsunami_region_of_shizuoka_reaches_numazu(index: GeoIndex) -> None:
    a = alert(Area("静岡県", ("380",), details={"code_type": TSUNAMI_CODE_TYPE}))
    targets, unknown = default_targeter(index=index).target_codes(a)
    assert "numazu-heda" in targets and unknown == []


def test_neighbouring_municipality_selects_no_district(index: GeoIndex) -> None:
    targets, unknown = default_targeter(index=index).target_codes(alert(Area("三島市", ("2220600",))))
    assert targets == ["2220600"]
    assert unknown == []


def test_cap_polygon_over_heda(index: GeoIndex) -> None:
    codes, recognised = GeoExpander(index).expand(alert(Area("戸田", polygons=(HEDA_RING,))))
    assert codes == {"numazu-heda", "2220300"}  # and 沼津市 as a whole: it is part of the city
    assert recognised == set()


def test_zone_name_selects_zone_ids_and_unknown_codes_are_reported(index: GeoIndex) -> None:
    zone = index.hazards[0].features[0]
    targets, unknown = default_targeter(index=index).target_codes(alert(Area("zone", (zone.name, "nowhere-17"))))
    assert zone.code in targets
    assert unknown == ["nowhere-17"]


def test_resolve_choices(index: GeoIndex) -> None:
    assert resolve_choices(["戸田", "Heda", "numazu-hara", "2220300"], index) == [
        "numazu-heda",
        "numazu-hara",
        "2220300",
    ]
    with pytest.raises(ValueError, match="'atlantis'"):
        resolve_choices(["戸田", "atlantis"], index)


def test_version_is_stable_and_changes_with_the_layers(index: GeoIndex) -> None:
    again = load_index()
    assert again.version == index.version
    fewer = GeoIndex(
        municipalities=index.municipalities,
        districts=Layer("districts", index.districts.features[:-1]),
        hazards=index.hazards,
    )
    assert fewer.version != index.version
