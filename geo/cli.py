"""Command-line view of point matching: ``dispatcher locate LAT LON`` prints this JSON.

Also runnable alone as ``python -m geo.cli LAT LON``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from geo.layers import Feature
from geo.matching import GeoIndex


def _feature(feature: Feature, *keys: str) -> dict[str, Any]:
    out: dict[str, Any] = {"code": feature.code, "name": feature.name, "kind": feature.kind}
    for key in keys:
        if key in feature.properties:
            out[key] = feature.properties[key]
    return out


def locate_json(lat: float, lon: float, index: GeoIndex | None = None) -> dict[str, Any]:
    """Municipality, districts and hazard zones at a point, as a JSON-able dict.

    Raises ValueError for non-finite or out-of-range coordinates.
    """
    if index is None:
        from geo import default_index

        index = default_index()
    location = index.locate(lat, lon)
    municipality = location.municipality
    return {
        "lat": lat,
        "lon": lon,
        "municipality": (None if municipality is None else {"code": municipality.code, "name": municipality.name}),
        "in_city": location.municipality_code == index.city_code,
        "districts": [_feature(d, "name_en", "jma_code") for d in location.districts],
        "districts_illustrative": index.illustrative,
        "zones": [
            {
                "id": z.code,
                "name": z.name,
                "kind": z.kind,
                "attributes": {k: v for k, v in z.properties.items() if k.endswith("_label")},
                "location": z.properties.get("location"),
                "zone_number": z.properties.get("zoneNumber"),
            }
            for z in location.zones
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locate", description="Districts and hazard zones at a point.")
    parser.add_argument("lat", type=float)
    parser.add_argument("lon", type=float)
    args = parser.parse_args(argv)
    try:
        result = locate_json(args.lat, args.lon)
    except ValueError as exc:
        print(f"locate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
