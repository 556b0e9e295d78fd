"""Geographic targeting against the real layers: N03 municipalities, PLATEAU zones, CAP."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import shapely
from lxml import etree
from shapely.geometry import Point, shape

from dispatcher.model import Area
from geo import (
    GeoIndex,
    LayerError,
    default_index,
    load_geojson,
    load_index,
    load_plateau_gml,
    packaged_dir,
    resolve_areas,
)
from geo.cli import locate_json
from sources.cap import parse_cap_circle, parse_cap_polygon

REPO = Path(__file__).resolve().parents[2]
STATION = (35.1019, 138.8597)  # 沼津駅
# 戸田: the harbour village (34.969, 138.785) lies only ~0.8 km inside the 1%-simplified
# coast, so the tests use a point ~2 km inland of every boundary, checked below.
HEDA_VILLAGE = (34.969, 138.785)
HEDA = (34.970, 138.800)
MISHIMA = (35.118, 138.918)  # 三島市
SURUGA_BAY = (34.95, 138.70)


@pytest.fixture(scope="module")
def index() -> GeoIndex:
    return default_index()


# ---------------------------------------------------------------------------
# packaged layers


def test_packaged_layers_load(index: GeoIndex) -> None:
    assert len(index.municipalities) == 43
    assert index.municipalities.get("22203") is not None
    assert index.municipalities.get("22203").name == "沼津市"  # type: ignore[union-attr]
    assert 8 <= len(index.districts) <= 13
    assert index.illustrative
    assert "NOT official" in index.districts.metadata["note"]
    kinds = {layer.features[0].kind: len(layer) for layer in index.hazards}
    assert kinds == {"landslide": 81, "flood": 3, "tsunami": 3}
    assert set(index.district_jma_codes) == {"2220300"}


def test_packaged_copies_are_unchanged(shared_data: Path) -> None:
    assert (packaged_dir() / "shizuoka_municipalities.geojson").read_bytes() == (
        shared_data / "geo" / "N03-21_22_210101.geojson.json"
    ).read_bytes()
    src = shared_data / "hazard" / "plateau_numazu_2021"
    for path in src.rglob("*"):
        if path.is_file():
            copy = packaged_dir() / "plateau_numazu_2021" / path.relative_to(src)
            assert copy.read_bytes() == path.read_bytes(), path


def test_numazu_city_polygon_and_heda(index: GeoIndex) -> None:
    city = index.municipalities.get("22203")
    assert city is not None and city.geometry.geom_type == "MultiPolygon"
    heda = index.districts.get("numazu-heda")
    assert heda is not None
    point = Point(HEDA[1], HEDA[0])
    # Well inside both the simplified city polygon and the 戸田 district (> ~2 km).
    assert city.geometry.contains(point)
    assert heda.geometry.exterior.distance(point) > 0.02
    assert city.geometry.boundary.distance(point) > 0.02


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_districts", REPO / "scripts" / "make_districts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_districts_partition_the_city_and_are_reproducible(index: GeoIndex) -> None:
    script = _load_script()
    source = packaged_dir() / "shizuoka_municipalities.geojson"
    text = script.dumps(script.build(source))
    assert text == (packaged_dir() / "numazu_districts.geojson").read_text(encoding="utf-8")
    city = index.municipalities.get("22203")
    assert city is not None
    union = shapely.union_all(index.districts.geometries)
    assert abs(union.area - city.geometry.area) / city.geometry.area < 1e-4
    assert abs(sum(g.area for g in index.districts.geometries) - union.area) / union.area < 1e-4
    codes = [f.code for f in index.districts]
    assert len(set(codes)) == len(codes)
    for feature in index.districts:
        assert feature.properties["jma_code"] == "2220300"
        assert feature.properties["name_en"]


# ---------------------------------------------------------------------------
# locate


def test_station_is_central_numazu(index: GeoIndex) -> None:
    loc = index.locate(*STATION)
    assert loc.municipality_code == "22203"
    assert loc.district_codes == ("numazu-chushin",)


def test_heda_is_its_own_district(index: GeoIndex) -> None:
    loc = index.locate(*HEDA)
    assert loc.municipality_code == "22203"
    assert loc.district_codes == ("numazu-heda",)
    assert loc.districts[0].name == "戸田"
    assert index.locate(*HEDA_VILLAGE).district_codes == ("numazu-heda",)


def test_mishima_has_no_numazu_district(index: GeoIndex) -> None:
    loc = index.locate(*MISHIMA)
    assert loc.municipality_code == "22206"
    assert loc.district_codes == ()


def test_sea_matches_nothing(index: GeoIndex) -> None:
    loc = index.locate(*SURUGA_BAY)
    assert loc.municipality is None
    assert loc.district_codes == () and loc.zones == ()


def test_point_in_real_landslide_zone(index: GeoIndex) -> None:
    layer = next(layer for layer in index.hazards if layer.features[0].kind == "landslide")
    zone = next(z for z in layer if z.properties.get("zoneName") == "八重団地")
    point = zone.geometry.representative_point()
    loc = index.locate(point.y, point.x)
    assert zone.code in loc.zone_ids
    assert "landslide" in loc.zone_kinds
    assert loc.municipality_code == "22203" and len(loc.district_codes) == 1
    assert zone.properties["areaType_label"] == "土砂災害特別警戒区域（指定済）"
    assert zone.properties["disasterType_label"] == "急傾斜地の崩落"
    assert zone.properties["location"] == "沼津市下香貫八重"


def test_locate_rejects_bad_coordinates(index: GeoIndex) -> None:
    with pytest.raises(ValueError, match="finite"):
        index.locate(float("nan"), 138.0)
    with pytest.raises(ValueError, match="range"):
        index.locate(95.0, 138.0)


def test_locate_many_agrees_with_locate(index: GeoIndex) -> None:
    rng = np.random.default_rng(20240101)
    city = index.municipalities.get("22203")
    assert city is not None
    x0, y0, x1, y1 = city.geometry.bounds
    zone_pts = np.array([z.geometry.representative_point().coords[0] for layer in index.hazards for z in layer])
    lons = np.concatenate([rng.uniform(x0, x1, 2500), rng.uniform(137.4, 139.2, 500), zone_pts[:, 0]])
    lats = np.concatenate([rng.uniform(y0, y1, 2500), rng.uniform(34.5, 35.7, 500), zone_pts[:, 1]])
    result = index.locate_many(lats, lons)
    districts = result.districts.codes(result.n)
    municipality = result.municipality
    zone_sets: list[set[str]] = [set() for _ in range(result.n)]
    for hits in result.zones:
        for p, f in zip(hits.points, hits.features, strict=True):
            zone_sets[p].add(hits.layer.features[f].code)
    assert (result.district >= 0).sum() > 1000  # the sample really exercises districts
    assert sum(bool(s) for s in zone_sets) >= len(zone_pts)
    for i in range(result.n):
        loc = index.locate(float(lats[i]), float(lons[i]))
        assert loc.district_codes[:1] == ((districts[i],) if districts[i] else ())
        expected = index.municipalities.features[municipality[i]].code if municipality[i] >= 0 else None
        assert loc.municipality_code == expected
        assert set(loc.zone_ids) == zone_sets[i]


# ---------------------------------------------------------------------------
# resolve


def _brute_force_districts(index: GeoIndex, geometry: Any) -> set[str]:
    return {f.code for f in index.districts if f.geometry.intersects(geometry)}


def test_cap_polygon_across_city_boundary_selects_only_touched_districts(index: GeoIndex) -> None:
    # From central Numazu east across the city boundary into 清水町 and 三島市.
    text = "35.095,138.855 35.095,138.950 35.112,138.950 35.112,138.855 35.095,138.855"
    ring = parse_cap_polygon(text)
    coverage = resolve_areas([Area("沼津駅東側から三島市", polygons=(ring,))], index)
    expected = _brute_force_districts(index, shapely.Polygon([(lon, lat) for lat, lon in ring]))
    assert set(coverage.district_codes) == expected
    assert "numazu-chushin" in expected
    assert not {"numazu-heda", "numazu-nishiura", "numazu-ashitaka"} & expected
    assert len(expected) < len(index.districts)
    assert coverage.unknown == ()


def test_real_cap_files_outside_japan_cover_nothing(shared_data: Path, index: GeoIndex) -> None:
    areas = []
    for path in sorted((shared_data / "cap").glob("*.xml")):
        root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
        for el in root.iter("{*}polygon"):
            if el.text and el.text.strip():
                areas.append(Area(path.name, polygons=(parse_cap_polygon(el.text),)))
        for el in root.iter("{*}circle"):
            if el.text and el.text.strip():
                areas.append(Area(path.name, circles=(parse_cap_circle(el.text),)))
    assert len(areas) >= 8
    coverage = resolve_areas(areas, index)
    assert coverage.empty
    assert coverage.unknown == ()


def test_cap_circles(index: GeoIndex) -> None:
    lat, lon = STATION
    small = resolve_areas([Area("駅", circles=((lat, lon, 0.3),))], index)
    assert small.district_codes == ("numazu-chushin",)
    point = resolve_areas([Area("戸田", circles=((HEDA[0], HEDA[1], 0.0),))], index)
    assert point.district_codes == ("numazu-heda",)
    large = resolve_areas([Area("広域", circles=((lat, lon, 60.0),))], index)
    assert set(large.district_codes) == {f.code for f in index.districts}
    # A 5 km circle at sea reaches the coast of 静浦/内浦 but not 愛鷹 in the north.
    bay = resolve_areas([Area("湾", circles=((35.03, 138.84, 5.0),))], index)
    assert bay.district_codes and "numazu-ashitaka" not in bay.district_codes


def test_codes_zone_names_and_municipality_codes(index: GeoIndex) -> None:
    landslide = next(layer for layer in index.hazards if layer.features[0].kind == "landslide")
    zone = landslide.features[0]
    coverage = resolve_areas(
        [
            Area("district", codes=("numazu-heda",)),
            Area("zone by id", codes=(zone.code,)),
            Area("zone by number", codes=("103-Ⅰ-0648",)),
            Area("unknown", codes=("9999999", "220030")),
        ],
        index,
    )
    assert coverage.district_codes == ("numazu-heda",)
    assert zone.code in coverage.zone_ids
    assert coverage.unknown == ("9999999", "220030")
    by_name = resolve_areas([Area("八重", codes=("八重",))], index)
    assert len(by_name.zone_ids) >= 2  # several zones share the name 八重
    whole_city = resolve_areas([Area("沼津市", codes=("2220300",))], index)
    assert len(whole_city.district_codes) == len(index.districts)
    expanded = resolve_areas([Area("東部", codes=())], index, municipality_codes=["2220300", "2220600"])
    assert len(expanded.district_codes) == len(index.districts)
    other_city = resolve_areas([], index, municipality_codes=["2220600"])
    assert other_city.empty


def test_bad_shapes_are_reported_not_raised(index: GeoIndex) -> None:
    coverage = resolve_areas(
        [
            Area(
                "bad",
                polygons=(
                    ((35.1, 138.86), (35.1, 138.86), (35.1, 138.86)),
                    ((95.0, 138.0), (35.0, 138.0), (35.0, 139.0), (95.0, 138.0)),
                    ((35.1, 138.85), (35.1, 138.87), (35.1, 138.89), (35.1, 138.85)),
                ),
                circles=((35.1, 138.86, -1.0), (float("nan"), 138.0, 1.0)),
            )
        ],
        index,
    )
    assert coverage.empty
    assert len(coverage.unknown) == 5
    assert any("fewer than 3 distinct points" in u for u in coverage.unknown)
    assert any("out of range" in u for u in coverage.unknown)
    assert any("negative radius" in u for u in coverage.unknown)
    with pytest.raises(ValueError):
        parse_cap_polygon("35.1;138.8 35.2,138.9")


def test_locate_json_is_json(index: GeoIndex) -> None:
    layer = next(layer for layer in index.hazards if layer.features[0].kind == "landslide")
    point = layer.features[0].geometry.representative_point()
    data = locate_json(point.y, point.x, index)
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["municipality"] == {"code": "22203", "name": "沼津市"}
    assert data["districts_illustrative"] is True
    assert data["zones"][0]["kind"] == "landslide"
    assert data["zones"][0]["attributes"]["areaType_label"].startswith("土砂災害")


# ---------------------------------------------------------------------------
# loader validation


def _write_geojson(tmp_path: Path, features: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "layer.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", **extra, "features": features}), encoding="utf-8")
    return path


def _feature(code: str, ring: list[list[float]], geometry_type: str = "Polygon") -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": f"name-{code}"},
        "geometry": {"type": geometry_type, "coordinates": [ring]},
    }


SQUARE = [[138.80, 35.10], [138.81, 35.10], [138.81, 35.11], [138.80, 35.11], [138.80, 35.10]]


def _load(path: Path, **kwargs: Any) -> Any:
    return load_geojson(path, code_property="code", name_property="name", kind="district", **kwargs)


def test_valid_geojson_loads(tmp_path: Path) -> None:
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::6668"}}
    layer = _load(_write_geojson(tmp_path, [_feature("a", SQUARE)], crs=crs, note="x"))
    assert layer.codes == ("a",) and layer.metadata == {"note": "x"}


def test_unclosed_ring_names_feature(tmp_path: Path) -> None:
    path = _write_geojson(tmp_path, [_feature("ok", SQUARE), _feature("open", SQUARE[:-1])])
    with pytest.raises(LayerError, match=r"#1 code=open name=name-open: polygon 0 ring 0 is not closed") as err:
        _load(path)
    assert str(path) in str(err.value)


def test_bow_tie_is_repaired_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bow_tie = [[138.80, 35.10], [138.81, 35.11], [138.81, 35.10], [138.80, 35.11], [138.80, 35.10]]
    path = _write_geojson(tmp_path, [_feature("bow", bow_tie)])
    with caplog.at_level(logging.WARNING, logger="geo.layers"):
        layer = _load(path)
    assert layer.features[0].geometry.is_valid
    assert any("repaired" in r.getMessage() and "code=bow" in r.getMessage() for r in caplog.records)
    with pytest.raises(LayerError, match=r"code=bow .*invalid geometry: Self-intersection"):
        _load(path, repair=False)


def test_unrepairable_geometry_is_rejected(tmp_path: Path) -> None:
    flat = [[138.80, 35.10], [138.81, 35.11], [138.82, 35.12], [138.81, 35.11], [138.80, 35.10]]
    with pytest.raises(LayerError, match=r"code=flat .*cannot be repaired"):
        _load(_write_geojson(tmp_path, [_feature("flat", flat)]))


def test_coordinates_out_of_range_are_rejected(tmp_path: Path) -> None:
    swapped = [[lat, lon] for lon, lat in SQUARE]  # lat/lon swapped: "latitude" 138.8
    with pytest.raises(
        LayerError, match=r"code=swapped name=name-swapped: polygon 0 ring 0 position 0 .* out of range"
    ):
        _load(_write_geojson(tmp_path, [_feature("swapped", swapped)]))


def test_outside_japan_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paris = [[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.9], [2.3, 48.8]]
    with caplog.at_level(logging.WARNING, logger="geo.layers"):
        _load(_write_geojson(tmp_path, [_feature("paris", paris)]))
    assert any("outside Japan" in r.getMessage() for r in caplog.records)


def test_unknown_crs_is_rejected(tmp_path: Path) -> None:
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    with pytest.raises(LayerError, match="unknown or unsupported CRS"):
        _load(_write_geojson(tmp_path, [_feature("a", SQUARE)], crs=crs))


def test_missing_code_and_duplicates_and_wrong_type(tmp_path: Path) -> None:
    nameless = _feature("x", SQUARE)
    del nameless["properties"]["code"]
    with pytest.raises(LayerError, match=r"#0 name=name-x: has no code property 'code'"):
        _load(_write_geojson(tmp_path, [nameless]))
    with pytest.raises(LayerError, match=r"#1 code=a .*duplicate code 'a'"):
        _load(_write_geojson(tmp_path, [_feature("a", SQUARE), _feature("a", SQUARE)]))
    point = {"type": "Feature", "properties": {"code": "p"}, "geometry": {"type": "Point", "coordinates": [1, 2]}}
    with pytest.raises(LayerError, match=r"code=p: geometry type 'Point'"):
        _load(_write_geojson(tmp_path, [point]))
    (tmp_path / "broken.geojson").write_text("{", encoding="utf-8")
    with pytest.raises(LayerError, match="cannot read GeoJSON"):
        _load(tmp_path / "broken.geojson")


def _plateau_copy(tmp_path: Path, shared_data: Path, edit: Any) -> Path:
    src = shared_data / "hazard" / "plateau_numazu_2021" / "udx" / "lsld" / "523857_lsld_6697_op.gml"
    dst = tmp_path / "lsld.gml"
    dst.write_text(edit(src.read_text(encoding="utf-8")), encoding="utf-8")
    return dst


def test_gml_unknown_srs_is_rejected(tmp_path: Path, shared_data: Path) -> None:
    path = _plateau_copy(tmp_path, shared_data, lambda s: s.replace("EPSG/0/6697", "EPSG/0/3857"))
    with pytest.raises(LayerError, match="unsupported srsName"):
        load_plateau_gml(path, kind="landslide")


def test_gml_unclosed_ring_names_gml_id(tmp_path: Path, shared_data: Path) -> None:
    def open_first_ring(text: str) -> str:
        # Drop the closing position of the first ring: "... lat lon 0</gml:posList>".
        return re.sub(r" [\d.]+ [\d.]+ 0</gml:posList>", "</gml:posList>", text, count=1)

    path = _plateau_copy(tmp_path, shared_data, open_first_ring)
    with pytest.raises(LayerError, match=r"gml:id=lsld_d5e0f93f-30ba-47ca-8819-54370ee41bfa: .*not closed"):
        load_plateau_gml(path, kind="landslide")


def test_gml_entities_are_not_expanded(tmp_path: Path) -> None:
    path = tmp_path / "evil.gml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<core:CityModel xmlns:core="http://www.opengis.net/citygml/2.0">&e;</core:CityModel>',
        encoding="utf-8",
    )
    with pytest.raises(LayerError):
        load_plateau_gml(path, kind="landslide")


def test_plateau_layers_swap_axes(index: GeoIndex) -> None:
    for layer in index.hazards:
        minx, miny, maxx, maxy = layer.bounds
        assert 138.7 < minx < maxx < 139.0 and 35.0 < miny < maxy < 35.2, layer.name
    flood = next(layer for layer in index.hazards if layer.features[0].kind == "flood")
    assert {f.properties["scale_label"] for f in flood} == {"L1（計画規模）"}
    tsunami = next(layer for layer in index.hazards if layer.features[0].kind == "tsunami")
    assert all("南海トラフ" in f.properties["description_label"] for f in tsunami)


def test_shape_from_geojson_round_trip() -> None:
    # The district file is plain GeoJSON any GIS can open.
    doc = json.loads((packaged_dir() / "numazu_districts.geojson").read_text(encoding="utf-8"))
    assert doc["illustrative"] is True
    assert all(shape(f["geometry"]).is_valid for f in doc["features"])


def test_city_can_load_its_own_district_file(tmp_path: Path) -> None:
    # An "official" file: own property names, no jma_code, no illustrative flag.
    features = [
        {
            "type": "Feature",
            "properties": {"KEY_CODE": "2220301", "S_NAME": "駅前"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[138.85, 35.095], [138.87, 35.095], [138.87, 35.11], [138.85, 35.11], [138.85, 35.095]]
                ],
            },
        }
    ]
    path = tmp_path / "official.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    index = load_index(districts=path, district_code_property="KEY_CODE", district_name_property="S_NAME")
    assert not index.illustrative
    assert index.district_jma_codes == ("2220300",)
    assert index.locate(*STATION).district_codes == ("2220301",)
    assert index.locate(*HEDA).district_codes == ()
    assert resolve_areas([Area("沼津市", codes=("2220300",))], index).district_codes == ("2220301",)


def test_duplicate_codes_merge_when_asked(tmp_path: Path) -> None:
    island = [[138.88, 35.03], [138.89, 35.03], [138.89, 35.035], [138.88, 35.035], [138.88, 35.03]]
    path = _write_geojson(tmp_path, [_feature("22203", SQUARE), _feature("22203", island)])
    layer = _load(path, merge_duplicates=True)
    assert layer.codes == ("22203",)
    assert layer.features[0].geometry.geom_type == "MultiPolygon"
