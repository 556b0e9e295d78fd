"""Point matching: which municipality, district and hazard zones a location falls in.

:class:`GeoIndex` holds the municipality layer (N03), the district layer and any hazard
layers (PLATEAU 土砂災害 / 洪水 / 津波). :meth:`GeoIndex.locate_many` matches whole
arrays of points without a Python loop per point, in two vectorised steps per layer
(shapely 2, https://shapely.readthedocs.io/en/stable/strtree.html):

1. ``STRtree.query(points)`` finds the (point, feature) pairs whose bounding boxes meet;
2. ``shapely.intersects_xy`` over those pairs against the *prepared* feature geometries
   keeps the pairs that really intersect.

Doing the exact test ourselves on prepared geometries is about six times faster than
``STRtree.query(points, predicate="intersects")``, which prepares the (trivial) point
instead of the (large) polygon. Points on a boundary count as inside both sides: a
resident on a district border is told rather than missed.

Coordinates are WGS84/JGD2011 degrees (the two are treated as equal, see
``geo.layers``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from geo.layers import Feature, Layer

IntArray = NDArray[np.intp]
CITY_CODE = "22203"  # N03_007 of 沼津市
CITY_JMA_CODE = "2220300"  # JMA 市町村等（気象警報等）code of 沼津市


@dataclass(frozen=True, slots=True)
class Hits:
    """Matches of points against one layer: pairs (point index, feature index).

    Pairs are sorted by point, then by feature; a point may match several features
    (overlapping zones, a point on a shared border) or none.
    """

    layer: Layer
    points: IntArray
    features: IntArray

    def __len__(self) -> int:
        return int(self.points.size)

    def first(self, n: int) -> IntArray:
        """Per point, the index of its first matching feature, or -1."""
        out: IntArray = np.full(n, -1, dtype=np.intp)
        if self.points.size:
            uniq, first_pos = np.unique(self.points, return_index=True)
            out[uniq] = self.features[first_pos]
        return out

    def counts(self, n: int) -> IntArray:
        """Per point, how many features it matches."""
        return np.bincount(self.points, minlength=n).astype(np.intp)

    def codes(self, n: int) -> NDArray[np.object_]:
        """Per point, the code of its first matching feature, or None."""
        first = self.first(n)
        codes: NDArray[np.object_] = np.empty(len(self.layer) + 1, dtype=object)
        codes[:-1] = self.layer.codes
        codes[-1] = None
        return codes[first]  # -1 picks the trailing None


@dataclass(frozen=True, slots=True)
class LocateResult:
    """What :meth:`GeoIndex.locate_many` found for ``n`` points."""

    n: int
    municipalities: Hits | None
    districts: Hits
    zones: tuple[Hits, ...]

    @property
    def municipality(self) -> IntArray:
        """Per point, index into the municipality layer or -1 (or all -1 if skipped)."""
        if self.municipalities is None:
            return np.full(self.n, -1, dtype=np.intp)
        return self.municipalities.first(self.n)

    @property
    def district(self) -> IntArray:
        """Per point, index of its (first) district or -1."""
        return self.districts.first(self.n)


@dataclass(frozen=True, slots=True)
class Location:
    """Everything known about one point."""

    lat: float
    lon: float
    municipality: Feature | None
    districts: tuple[Feature, ...]
    zones: tuple[Feature, ...]

    @property
    def municipality_code(self) -> str | None:
        return self.municipality.code if self.municipality else None

    @property
    def district_codes(self) -> tuple[str, ...]:
        return tuple(d.code for d in self.districts)

    @property
    def zone_ids(self) -> tuple[str, ...]:
        return tuple(z.code for z in self.zones)

    @property
    def zone_kinds(self) -> tuple[str, ...]:
        """Distinct kinds of the zones, in first-seen order."""
        return tuple(dict.fromkeys(z.kind for z in self.zones))


class GeoIndex:
    """Municipalities, districts and hazard zones, ready for point and area matching.

    ``default_jma_code`` is the JMA 市町村等 code assumed for districts whose file has
    no ``jma_code`` property (an official district file of one city rarely has one).
    Zone ids (PLATEAU ``gml:id``) must be unique across all hazard layers.
    """

    def __init__(
        self,
        *,
        municipalities: Layer,
        districts: Layer,
        hazards: Sequence[Layer] = (),
        city_code: str = CITY_CODE,
        default_jma_code: str = CITY_JMA_CODE,
    ) -> None:
        self.municipalities = municipalities
        self.districts = districts
        self.hazards: tuple[Layer, ...] = tuple(hazards)
        self.city_code = city_code
        self.district_jma_codes: tuple[str, ...] = tuple(
            str(d.properties.get("jma_code") or default_jma_code) for d in districts
        )
        self._zones: dict[str, Feature] = {}
        # Names and zone numbers are not unique (several 八重 zones): one key, many zones.
        self._zone_keys: dict[str, list[str]] = {}
        for layer in self.hazards:
            for zone in layer:
                if zone.code in self._zones:
                    raise ValueError(f"zone id {zone.code!r} appears in two hazard layers")
                self._zones[zone.code] = zone
                keys = {zone.name, str(zone.properties.get("zoneNumber") or "")}
                for key in keys - {""}:
                    self._zone_keys.setdefault(key, []).append(zone.code)

    def __repr__(self) -> str:
        return f"GeoIndex({self.municipalities!r}, {self.districts!r}, hazards={list(self.hazards)!r})"

    @property
    def illustrative(self) -> bool:
        """Whether the district layer says it is not an official boundary set."""
        return bool(self.districts.metadata.get("illustrative"))

    @functools.cached_property
    def version(self) -> str:
        """A stable fingerprint of what :meth:`locate` can answer: district and zone codes and shapes.

        Stored with each subscriber's located areas; when it changes (a new district file,
        new hazard data) those areas must be recomputed. Municipalities are left out:
        nothing derived from them is stored per subscriber.
        """
        digest = hashlib.sha256()
        for layer in (self.districts, *self.hazards):
            digest.update(f"layer\x1f{layer.name}\x1f{len(layer)}\x1e".encode())
            for feature, wkb in zip(layer.features, shapely.to_wkb(layer.geometries, output_dimension=2), strict=True):
                digest.update(f"{feature.code}\x1f{feature.kind}\x1f".encode())
                digest.update(wkb)
        return "geo-" + digest.hexdigest()[:20]

    def zone(self, zone_id: str) -> Feature | None:
        """The hazard zone with this id, or None."""
        return self._zones.get(zone_id)

    def zones_matching(self, key: str) -> tuple[Feature, ...]:
        """Zones whose id, name or zone number (区域番号) equals ``key``."""
        if key in self._zones:
            return (self._zones[key],)
        return tuple(self._zones[z] for z in self._zone_keys.get(key, ()))

    def locate(self, lat: float, lon: float) -> Location:
        """The municipality, districts and zones at one point.

        Uses the same code path as :meth:`locate_many`, so the two always agree.
        Raises ValueError for a non-finite or out-of-range coordinate.
        """
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ValueError(f"coordinates must be finite, got lat={lat}, lon={lon}")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"coordinates out of range: lat={lat}, lon={lon}")
        result = self.locate_many(np.array([lat]), np.array([lon]))
        muni = int(result.municipality[0])
        return Location(
            lat=lat,
            lon=lon,
            municipality=self.municipalities.features[muni] if muni >= 0 else None,
            districts=tuple(self.districts.features[i] for i in result.districts.features),
            zones=tuple(hits.layer.features[i] for hits in result.zones for i in hits.features),
        )

    def locate_many(
        self,
        lats: ArrayLike,
        lons: ArrayLike,
        *,
        municipalities: bool = True,
        zones: bool = True,
    ) -> LocateResult:
        """Match arrays of points against every layer, vectorised.

        Non-finite coordinates match nothing. Skip the municipality layer (the costliest,
        covering the whole prefecture) or the hazard layers when they are not needed.
        """
        lat = np.ascontiguousarray(lats, dtype=np.float64).ravel()
        lon = np.ascontiguousarray(lons, dtype=np.float64).ravel()
        if lat.shape != lon.shape:
            raise ValueError(f"lats and lons differ in length: {lat.size} != {lon.size}")
        points = shapely.points(lon, lat)
        return LocateResult(
            n=int(lat.size),
            municipalities=(match_points(self.municipalities, points, lon, lat) if municipalities else None),
            districts=match_points(self.districts, points, lon, lat),
            zones=tuple(match_points(h, points, lon, lat) for h in self.hazards) if zones else (),
        )

    def summary(self) -> Mapping[str, Any]:
        """Layer names and sizes, for logs and the CLI."""
        return {
            "version": self.version,
            "municipalities": len(self.municipalities),
            "districts": len(self.districts),
            "illustrative_districts": self.illustrative,
            "hazards": {layer.name: len(layer) for layer in self.hazards},
        }


def match_points(
    layer: Layer,
    points: NDArray[np.object_],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
) -> Hits:
    """(point, feature) pairs where the feature intersects the point; see module doc."""
    if not len(layer) or not points.size:
        empty: IntArray = np.empty(0, dtype=np.intp)
        return Hits(layer, empty, empty)
    pairs = layer.tree.query(points)
    pi, fi = pairs[0], pairs[1]
    keep = shapely.intersects_xy(layer.geometries[fi], lon[pi], lat[pi])
    pi, fi = pi[keep], fi[keep]
    order = np.lexsort((fi, pi))
    return Hits(layer, pi[order].astype(np.intp), fi[order].astype(np.intp))
