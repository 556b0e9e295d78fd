"""GeoJSON layers (RFC 7946, https://datatracker.ietf.org/doc/html/rfc7946).

国土数値情報 行政区域 N03 (https://nlftp.mlit.go.jp/ksj/gml/datalist/KsjTmplt-N03-2024.html)
or a city's district file: a FeatureCollection of Polygon / MultiPolygon features in
lon/lat, validated and repaired as :mod:`geo.layers` describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon

from geo.layers import (
    Feature,
    Layer,
    LayerError,
    Polygonal,
    _check_ring,
    _crs_accepted,
    _label,
    _polygonal_part,
    _validated,
)


def _check_geojson_crs(path: Path, crs: object) -> None:
    # RFC 7946 removed "crs" (lon/lat WGS84 is implied); old files still carry it.
    if crs is None:
        return
    name = None
    if isinstance(crs, dict) and crs.get("type") == "name":
        props = crs.get("properties")
        if isinstance(props, dict) and isinstance(props.get("name"), str):
            name = props["name"]
    if name is None or not _crs_accepted(name):
        raise LayerError(
            path,
            f"unknown or unsupported CRS {crs!r}: expected lon/lat EPSG:4326, CRS84, EPSG:6668 or EPSG:6697",
        )


def _ring_array(path: Path, feature: str, ring: object, where: str) -> NDArray[np.float64]:
    try:
        arr = np.asarray(ring, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        message = f"{where} has malformed coordinates: {exc}"
        raise LayerError(path, message, feature=feature) from exc
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise LayerError(path, f"{where} is not a list of [lon, lat] positions", feature=feature)
    xy = np.ascontiguousarray(arr[:, :2])
    _check_ring(path, feature, xy, where)
    return xy


def _geojson_geometry(path: Path, feature: str, geometry: object, *, repair: bool) -> Polygonal:
    if not isinstance(geometry, dict):
        raise LayerError(path, "has no geometry", feature=feature)
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon" and isinstance(coords, list):
        polygons = coords
    else:
        raise LayerError(path, f"geometry type {kind!r} is not Polygon or MultiPolygon", feature=feature)
    built: list[Polygon] = []
    for pi, rings in enumerate(polygons):
        if not isinstance(rings, list) or not rings:
            raise LayerError(path, f"polygon {pi} has no rings", feature=feature)
        arrays = [_ring_array(path, feature, ring, f"polygon {pi} ring {ri}") for ri, ring in enumerate(rings)]
        built.append(Polygon(arrays[0], arrays[1:]))
    geom: Polygonal = built[0] if kind == "Polygon" else MultiPolygon(built)
    return _validated(path, feature, geom, repair=repair)


def load_geojson(
    path: str | Path,
    *,
    code_property: str,
    name_property: str,
    kind: str,
    layer_name: str | None = None,
    repair: bool = True,
    merge_duplicates: bool = False,
) -> Layer:
    """Load a GeoJSON FeatureCollection of (Multi)Polygons as a layer.

    ``code_property`` must be present and non-empty on every feature; the name falls
    back to the code. Duplicate codes are an error unless ``merge_duplicates`` (the
    full-resolution N03 splits a municipality into one feature per island), in which
    case their geometries are unioned and the first feature's properties kept. Other
    top-level members of the collection are kept as ``Layer.metadata``.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayerError(p, f"cannot read GeoJSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise LayerError(p, "not a GeoJSON FeatureCollection")
    _check_geojson_crs(p, doc.get("crs"))
    items = doc.get("features")
    if not isinstance(items, list):
        raise LayerError(p, "FeatureCollection has no 'features' list")

    order: list[str] = []
    geoms: dict[str, list[Polygonal]] = {}
    first: dict[str, tuple[str, dict[str, Any]]] = {}
    for i, item in enumerate(items):
        props = item.get("properties") if isinstance(item, dict) else None
        props = props if isinstance(props, dict) else {}
        raw_code = props.get(code_property)
        raw_name = props.get(name_property)
        label = _label(i, raw_code, raw_name)
        if not isinstance(item, dict) or item.get("type") != "Feature":
            raise LayerError(p, "is not a GeoJSON Feature", feature=label)
        if raw_code is None or str(raw_code).strip() == "":
            raise LayerError(p, f"has no code property {code_property!r}", feature=label)
        code = str(raw_code).strip()
        name = str(raw_name).strip() if raw_name not in (None, "") else code
        geom = _geojson_geometry(p, label, item.get("geometry"), repair=repair)
        if code in geoms:
            if not merge_duplicates:
                raise LayerError(p, f"duplicate code {code!r}", feature=label)
            geoms[code].append(geom)
            continue
        order.append(code)
        geoms[code] = [geom]
        first[code] = (name, dict(props))

    features = []
    for code in order:
        parts = geoms[code]
        geom = parts[0]
        if len(parts) > 1:
            merged = _polygonal_part(shapely.union_all(parts))
            if merged is None:  # pragma: no cover - union of valid areas has area
                raise LayerError(p, "merged geometry is empty", feature=f"code={code}")
            geom = merged
        name, props = first[code]
        features.append(Feature(code, name, kind, geom, props))
    metadata = {k: v for k, v in doc.items() if k not in ("type", "features", "crs", "bbox")}
    return Layer(layer_name or p.stem, features, source=str(p), metadata=metadata)
