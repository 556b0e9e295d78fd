"""The district map as inline SVG, drawn from the district layer: no tiles, no script, no external request.

Longitude and latitude are projected equirectangularly with the longitude scaled by
cos(latitude), which at Numazu's size is indistinguishable from a proper projection.
Each district is a link to its page with a ``<title>`` (its name) for screen readers
and pointers; districts an alert in force concerns are filled with its JMA colour,
and the page lists the same districts as text links, so nothing depends on colour.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geo.layers import Feature

WIDTH = 640.0
PAD = 8.0


def _rings(geometry: BaseGeometry) -> Iterable[list[tuple[float, float]]]:
    polygons = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    for polygon in polygons:
        if isinstance(polygon, Polygon):
            yield list(polygon.exterior.coords)
            for interior in polygon.interiors:
                yield list(interior.coords)


@lru_cache(maxsize=8)
def _shapes(features: tuple[Feature, ...]) -> tuple[float, tuple[tuple[str, str, str, float, float], ...]]:
    """(height, per district (code, name, path, label x, label y)): projected once, reused by every page."""
    bounds = [f.geometry.bounds for f in features]
    minx, miny = min(b[0] for b in bounds), min(b[1] for b in bounds)
    maxx, maxy = max(b[2] for b in bounds), max(b[3] for b in bounds)
    kx = math.cos(math.radians((miny + maxy) / 2))
    scale = WIDTH / ((maxx - minx) * kx)

    def xy(x: float, y: float) -> tuple[float, float]:
        return PAD + (x - minx) * kx * scale, PAD + (maxy - y) * scale

    shapes = []
    for f in features:
        simple = f.geometry.simplify(0.0008, preserve_topology=True)
        d = " ".join(
            "M" + " L".join("{:.1f},{:.1f}".format(*xy(x, y)) for x, y in ring) + " Z" for ring in _rings(simple)
        )
        c = simple.representative_point()
        shapes.append((f.code, f.name, d, *xy(c.x, c.y)))
    return (maxy - miny) * scale + 2 * PAD, tuple(shapes)


def district_map(
    features: Sequence[Feature],
    *,
    links: Mapping[str, str],
    fills: Mapping[str, str],
    title: str,
    current: str | None = None,
) -> str:
    """An ``<svg>`` of ``features``; ``links``: code → href, ``fills``: code → colour, ``current`` outlined."""
    if not features:
        return ""
    height, shapes = _shapes(tuple(features))
    parts = [
        f'<svg class="map" viewBox="0 0 {WIDTH + 2 * PAD:.0f} {height:.0f}" role="group" aria-labelledby="map-title"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="map-title">{html.escape(title)}</title>',
    ]
    for code, name, d, x, y in shapes:
        fill = fills.get(code, "#dfe7f2")
        stroke, width = ("#000000", "3") if code == current else ("#44546a", "1")
        label = html.escape(name)
        href = html.escape(links.get(code, "#"))
        parts.append(
            f'<a href="{href}"><title>{label}</title>'
            f'<path d="{d}" fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>'
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="20" font-weight="bold" text-anchor="middle" fill="#000000">'
            f"{label.split('（')[0]}</text></a>"
        )
    parts.append("</svg>")
    return "".join(parts)
