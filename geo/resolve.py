"""Which districts and hazard zones an alert covers.

An alert's areas (``dispatcher.model.Area``) name places in several ways; each is turned
into district codes and zone ids of a :class:`~geo.matching.GeoIndex`:

* an area code equal to a district code selects that district;
* an area code equal to a hazard zone's id, name or zone number selects those zones;
* an area code equal to a district's JMA 市町村等 code (``2220300``) or the city's N03
  code (``22203``) selects every district of the city, as do the ``municipality_codes``
  the caller expanded from coarser JMA codes (府県予報区, 一次細分, まとめ地域);
* a CAP polygon (rings of latitude, longitude) or circle (latitude, longitude, radius in
  km) selects every district it intersects; a shape crossing the city boundary selects
  only the districts it touches. Shapes select districts, not zones: a district
  already includes every zone inside it.

Nothing here raises on bad input: codes we do not know and shapes we cannot use are
listed in ``Coverage.unknown`` for the operator. CAP area semantics:
https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html (``polygon``, ``circle``);
shapely predicates: https://shapely.readthedocs.io/en/stable/strtree.html.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from dispatcher.model import Area
from geo.matching import GeoIndex

CIRCLE_SEGMENTS = 72


@dataclass(frozen=True, slots=True)
class Coverage:
    """Districts and zones an alert concerns, and what could not be resolved.

    ``district_codes`` follow the district layer's order; ``zone_ids`` the order they
    were named in. ``unknown`` holds unknown codes verbatim and, for unusable shapes, a
    description such as ``"area 'x' polygon 0: fewer than 3 distinct points"``.
    """

    district_codes: tuple[str, ...] = ()
    zone_ids: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the alert concerns no district and no zone of ours."""
        return not self.district_codes and not self.zone_ids


def circle_polygon(lat: float, lon: float, radius_km: float) -> Polygon:
    """A polygon approximating a circle on the ground, in lon/lat degrees.

    Uses the local lengths of a degree of latitude and longitude on the GRS80/WGS84
    ellipsoid at the centre, which is within a fraction of a percent for the tens of
    kilometres alerts use; good enough to pick districts, not to survey.
    """
    phi = math.radians(lat)
    km_lat = 111.132954 - 0.559822 * math.cos(2 * phi) + 0.001175 * math.cos(4 * phi)
    km_lon = max(111.412877 * math.cos(phi) - 0.093503 * math.cos(3 * phi), 1e-6)
    t = np.linspace(0.0, 2 * math.pi, CIRCLE_SEGMENTS, endpoint=False)
    xs = lon + radius_km * np.cos(t) / km_lon
    ys = lat + radius_km * np.sin(t) / km_lat
    return Polygon(np.column_stack((xs, ys)))


def _polygon_from_ring(ring: Sequence[Sequence[float]]) -> BaseGeometry | str:
    """Shapely geometry for a CAP ring of (lat, lon), or the reason it is unusable."""
    try:
        latlon = np.asarray(ring, dtype=np.float64)
    except (TypeError, ValueError):
        return "malformed coordinates"
    if latlon.ndim != 2 or latlon.shape[1] != 2:
        return "not a list of (lat, lon) pairs"
    if not np.isfinite(latlon).all():
        return "non-finite coordinates"
    lat, lon = latlon[:, 0], latlon[:, 1]
    if ((lat < -90) | (lat > 90) | (lon < -180) | (lon > 180)).any():
        return "coordinates out of range (lat -90..90, lon -180..180)"
    xy = latlon[:, ::-1]
    if np.unique(xy, axis=0).shape[0] < 3:
        return "fewer than 3 distinct points"
    # CAP requires first == last; an open ring is closed rather than thrown away.
    polygon = Polygon(xy)
    if polygon.is_valid and polygon.area > 0:
        return polygon
    repaired = shapely.make_valid(polygon)
    if repaired.is_empty or repaired.area == 0:
        return "degenerate polygon (no area)"
    return repaired


def _circle(circle: Sequence[float]) -> BaseGeometry | str:
    try:
        lat, lon, radius = (float(v) for v in circle)
    except (TypeError, ValueError):
        return "not (lat, lon, radius_km)"
    if not all(math.isfinite(v) for v in (lat, lon, radius)):
        return "non-finite values"
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return "centre out of range (lat -90..90, lon -180..180)"
    if radius < 0:
        return f"negative radius {radius} km"
    # CAP allows radius 0 for "this point".
    return Point(lon, lat) if radius == 0 else circle_polygon(lat, lon, radius)


def resolve_areas(
    areas: Sequence[Area],
    index: GeoIndex,
    *,
    municipality_codes: Iterable[str] = (),
) -> Coverage:
    """The districts and zones of ``index`` that ``areas`` cover; never raises on bad input.

    ``municipality_codes`` are 7-digit JMA 市町村等 codes the caller already expanded
    from the alert's JMA area codes; every district whose ``jma_code`` is among them is
    selected.
    """
    districts = index.districts
    jma_codes = index.district_jma_codes
    selected = np.zeros(len(districts), dtype=bool)
    zones: dict[str, None] = {}
    unknown: dict[str, None] = {}

    wanted_jma = {str(c) for c in municipality_codes}
    for area in areas:
        for code in area.codes:
            code = str(code).strip()
            district = districts.index_of(code)
            if district is not None:
                selected[district] = True
                continue
            matching_zones = index.zones_matching(code)
            if matching_zones:
                zones.update((z.code, None) for z in matching_zones)
                continue
            if code == index.city_code or code in jma_codes:
                wanted_jma.add(code if code in jma_codes else "*")
                continue
            unknown.setdefault(code, None)

        shapes: list[tuple[str, BaseGeometry | str]] = [
            (f"polygon {i}", _polygon_from_ring(ring)) for i, ring in enumerate(area.polygons)
        ]
        shapes += [(f"circle {i}", _circle(c)) for i, c in enumerate(area.circles)]
        for what, geometry in shapes:
            if isinstance(geometry, str):
                unknown.setdefault(f"area {area.description!r} {what}: {geometry}", None)
                continue
            hit = districts.tree.query(geometry, predicate="intersects")
            selected[hit] = True

    if wanted_jma:
        everything = "*" in wanted_jma
        selected |= np.array([everything or j in wanted_jma for j in jma_codes], dtype=bool)
    return Coverage(
        district_codes=tuple(districts.features[i].code for i in np.flatnonzero(selected)),
        zone_ids=tuple(zones),
        unknown=tuple(unknown),
    )
