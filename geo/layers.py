"""Geographic layers: named polygon features with a spatial index, and what their loaders share.

A :class:`Layer` is a named list of :class:`Feature` (code, name, kind, properties and a
shapely polygonal geometry) plus a shapely ``STRtree`` over the geometries, so matching
code can query it in bulk (https://shapely.readthedocs.io/en/stable/strtree.html).

Coordinates are always (longitude, latitude) in degrees. JGD2011 (EPSG:6668, and its
3D form EPSG:6697 used by PLATEAU) differs from WGS84 (EPSG:4326) by well under a metre
in Japan, far below the accuracy of any layer here, so all three are treated as the
same lon/lat plane; no datum transformation is done.

Loaders (each in its own module):

* :func:`geo.geojson.load_geojson` reads a GeoJSON FeatureCollection (RFC 7946,
  https://datatracker.ietf.org/doc/html/rfc7946), e.g. 国土数値情報 行政区域 N03
  (https://nlftp.mlit.go.jp/ksj/gml/datalist/KsjTmplt-N03-2024.html) or a district file.
* :func:`geo.plateau.load_plateau_gml` reads a PLATEAU CityGML file (https://www.mlit.go.jp/plateau/,
  data specification https://www.mlit.go.jp/plateaudocument/) such as 土砂災害警戒区域
  (``urf:SedimentDisasterProneArea``) or 洪水・津波浸水想定 (``wtr:WaterBody``). Its
  positions are latitude first and are swapped here. Coded attributes are labelled from
  the PLATEAU code lists found next to the data.

Every loader validates what it reads and raises :class:`LayerError` naming the file, the
feature and the fault; geometry that is invalid but repairable is repaired with
``shapely.make_valid`` and the repair is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

log = logging.getLogger(__name__)

Polygonal: TypeAlias = Polygon | MultiPolygon

# EPSG codes read as lon/lat degrees (4326 WGS84, 6668 JGD2011, 6697 JGD2011 + height).
ACCEPTED_EPSG = frozenset({4326, 6668, 6697})
# Rough box around Japan's territory: outside it a coordinate is legal but suspicious
# (typically swapped axes or a projected CRS), so it is logged rather than rejected.
JAPAN_LON = (120.0, 155.0)
JAPAN_LAT = (20.0, 47.0)

_EPSG_RE = re.compile(r"EPSG(?:/0/|::|:|/)(\d+)$", re.IGNORECASE)
_CRS84_RE = re.compile(r"(^|[:/])CRS:?84$", re.IGNORECASE)


class LayerError(ValueError):
    """A layer file cannot be used: the message names the file, the feature and the fault."""

    def __init__(self, path: str | Path, message: str, *, feature: str | None = None) -> None:
        self.path = str(path)
        self.feature = feature
        where = f"{path}: feature {feature}: " if feature else f"{path}: "
        super().__init__(where + message)


@dataclass(frozen=True, slots=True, eq=False)
class Feature:
    """One named area of a layer: a district, a municipality or a hazard zone.

    ``code`` is unique within its layer (a district code, a municipality code, a PLATEAU
    ``gml:id``); ``kind`` says what the area is (``district``, ``municipality``,
    ``landslide``, ``flood``, ``tsunami``…); ``geometry`` is in lon/lat order.
    """

    code: str
    name: str
    kind: str
    geometry: Polygonal
    properties: Mapping[str, Any] = field(default_factory=dict)


class Layer:
    """A named, indexed list of features of one kind.

    ``geometries`` is a numpy object array aligned with ``features`` and prepared for
    repeated predicates; ``tree`` is an ``STRtree`` over it whose query results are
    indices into ``features``. ``metadata`` keeps top-level members of the source file
    (e.g. ``illustrative`` and ``note`` of the illustrative district file).
    """

    def __init__(
        self,
        name: str,
        features: Iterable[Feature],
        *,
        source: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.features: tuple[Feature, ...] = tuple(features)
        self.source = source
        self.metadata: Mapping[str, Any] = dict(metadata or {})
        self._by_code: dict[str, int] = {}
        for i, feature in enumerate(self.features):
            if feature.code in self._by_code:
                raise ValueError(f"layer {name}: duplicate feature code {feature.code!r}")
            self._by_code[feature.code] = i
        geometries: NDArray[np.object_] = np.empty(len(self.features), dtype=object)
        geometries[:] = [f.geometry for f in self.features]
        # Prepared geometries make intersects_xy / predicates on large polygons
        # logarithmic instead of linear in the vertex count.
        shapely.prepare(geometries)
        self.geometries = geometries
        self.tree = shapely.STRtree(geometries)

    def __len__(self) -> int:
        return len(self.features)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, {len(self.features)} features)"

    def index_of(self, code: str) -> int | None:
        """Position of the feature with this code, or None."""
        return self._by_code.get(code)

    def get(self, code: str) -> Feature | None:
        """The feature with this code, or None."""
        i = self._by_code.get(code)
        return None if i is None else self.features[i]

    @property
    def codes(self) -> tuple[str, ...]:
        """Feature codes in layer order."""
        return tuple(f.code for f in self.features)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of the whole layer."""
        if not self.features:
            return (np.nan, np.nan, np.nan, np.nan)
        b = shapely.total_bounds(self.geometries)
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


# ---------------------------------------------------------------------------
# Shared validation


def _label(index: int, code: object = None, name: object = None, gml_id: object = None) -> str:
    parts = [f"#{index}"]
    if code not in (None, ""):
        parts.append(f"code={code!s}")
    if name not in (None, "") and name != code:
        parts.append(f"name={name!s}")
    if gml_id not in (None, "") and gml_id != code:
        parts.append(f"gml:id={gml_id!s}")
    return " ".join(parts)


def _check_ring(path: Path, feature: str, xy: NDArray[np.float64], where: str) -> None:
    """Reject a ring that is too short, open or out of range; warn outside Japan."""
    if xy.shape[0] < 4:
        raise LayerError(path, f"{where} has {xy.shape[0]} positions, needs 4+", feature=feature)
    if not np.isfinite(xy).all():
        raise LayerError(path, f"{where} has non-finite coordinates", feature=feature)
    if not np.array_equal(xy[0], xy[-1]):
        raise LayerError(
            path,
            f"{where} is not closed (first {tuple(xy[0])} != last {tuple(xy[-1])})",
            feature=feature,
        )
    lon, lat = xy[:, 0], xy[:, 1]
    bad = (lon < -180) | (lon > 180) | (lat < -90) | (lat > 90)
    if bad.any():
        i = int(np.argmax(bad))
        raise LayerError(
            path,
            f"{where} position {i} (lon {lon[i]}, lat {lat[i]}) is out of range"
            " (lon -180..180, lat -90..90; axes swapped or projected CRS?)",
            feature=feature,
        )
    odd = (lon < JAPAN_LON[0]) | (lon > JAPAN_LON[1]) | (lat < JAPAN_LAT[0]) | (lat > JAPAN_LAT[1])
    if odd.any():
        i = int(np.argmax(odd))
        log.warning(
            "%s: feature %s: %s position %d (lon %s, lat %s) lies outside Japan",
            path,
            feature,
            where,
            i,
            lon[i],
            lat[i],
        )


def _polygonal_part(geom: BaseGeometry) -> Polygonal | None:
    """The polygons of a geometry (make_valid may return a GeometryCollection)."""
    if isinstance(geom, Polygon | MultiPolygon):
        return None if geom.is_empty else geom
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon | MultiPolygon)]
    polys: list[Polygon] = []
    for part in parts:
        polys.extend(part.geoms if isinstance(part, MultiPolygon) else [part])
    polys = [p for p in polys if not p.is_empty and p.area > 0]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _validated(path: Path, feature: str, geom: Polygonal, *, repair: bool) -> Polygonal:
    """Return a valid, non-empty polygonal geometry or raise naming the fault."""
    if geom.is_valid and not geom.is_empty and geom.area > 0:
        return geom
    reason = shapely.is_valid_reason(geom) if not geom.is_empty else "empty geometry"
    if not repair:
        raise LayerError(path, f"invalid geometry: {reason}", feature=feature)
    fixed = _polygonal_part(shapely.make_valid(geom))
    if fixed is None:
        raise LayerError(path, f"invalid geometry cannot be repaired into an area: {reason}", feature=feature)
    log.warning("%s: feature %s: repaired invalid geometry (%s)", path, feature, reason)
    return fixed


def parse_crs_name(name: str) -> int | str | None:
    """EPSG number or ``"CRS84"`` from an OGC/EPSG CRS name or URL, else None."""
    name = name.strip()
    if _CRS84_RE.search(name):
        return "CRS84"
    m = _EPSG_RE.search(name)
    return int(m.group(1)) if m else None


def _crs_accepted(name: str) -> bool:
    crs = parse_crs_name(name)
    return crs == "CRS84" or crs in ACCEPTED_EPSG
