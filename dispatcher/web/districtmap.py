"""The district map of the compose and held-broadcast pages: an SVG drawn on the server from the district layer.

Each district is a focusable group (``tabindex="0"``, ``role="checkbox"``, its name as a
visible label and as ``aria-label``) tied to the district's checkbox in the plain list
beside the map (``data-code``). ``/static/console.js`` makes a click, Enter or Space
toggle that checkbox; without scripts the list is the control and the map shows what
is chosen after a preview. The projection is equirectangular with the longitude
scaled by the cosine of the middle latitude: true enough in shape for a city.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from markupsafe import Markup, escape
from shapely.geometry import MultiPolygon, Polygon

from geo import GeoIndex

WIDTH = 360.0
PAD = 6.0
# Degrees: about 50 m, far below what the map shows, and a tenth of the path data.
SIMPLIFY = 0.0005


@dataclass(frozen=True, slots=True)
class _Shape:
    code: str
    name: str
    path: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class _Map:
    width: float
    height: float
    shapes: tuple[_Shape, ...]


_cache: dict[str, _Map] = {}


def short_name(name: str) -> str:
    """The label on the map: 中心市街地（沼津駅周辺） → 中心市街地."""
    return name.split("（", 1)[0].split("(", 1)[0].strip() or name


def _build(geo: GeoIndex) -> _Map:
    districts = geo.districts.features
    minx, miny, maxx, maxy = (
        min(d.geometry.bounds[0] for d in districts),
        min(d.geometry.bounds[1] for d in districts),
        max(d.geometry.bounds[2] for d in districts),
        max(d.geometry.bounds[3] for d in districts),
    )
    kx = math.cos(math.radians((miny + maxy) / 2))
    scale = (WIDTH - 2 * PAD) / ((maxx - minx) * kx)
    height = (maxy - miny) * scale + 2 * PAD

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return PAD + (lon - minx) * kx * scale, PAD + (maxy - lat) * scale

    shapes = []
    for d in districts:
        geom = d.geometry.simplify(SIMPLIFY, preserve_topology=True)
        polygons = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom] if isinstance(geom, Polygon) else []
        parts = []
        for poly in polygons:
            for ring in (poly.exterior, *poly.interiors):
                points = [xy(lon, lat) for lon, lat in ring.coords[:-1]]
                parts.append("M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in points) + " Z")
        label = d.geometry.representative_point()
        x, y = xy(label.x, label.y)
        shapes.append(_Shape(d.code, d.name, " ".join(parts), x, y))
    return _Map(WIDTH, height, tuple(shapes))


def district_map(geo: GeoIndex, selected: Collection[str], *, label: str = "地区を選ぶ地図") -> Markup:
    """The SVG with ``selected`` district codes marked (``class="district on"``, ``aria-checked="true"``)."""
    drawn = _cache.get(geo.version)
    if drawn is None:
        drawn = _cache[geo.version] = _build(geo)
    out = [
        f'<svg class="districtmap" viewBox="0 0 {drawn.width:.0f} {drawn.height:.0f}" role="group"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for s in drawn.shapes:
        on = s.code in selected
        out.append(
            f'<g class="district{" on" if on else ""}" data-code="{escape(s.code)}" tabindex="0" role="checkbox"'
            f' aria-checked="{"true" if on else "false"}" aria-label="{escape(s.name)}">'
            f'<title>{escape(s.name)}</title><path d="{s.path}"/>'
            f'<text x="{s.x:.1f}" y="{s.y:.1f}">{escape(short_name(s.name))}</text></g>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 (every value above is escaped or a number)
