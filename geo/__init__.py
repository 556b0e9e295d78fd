"""Geographic targeting: districts, municipalities and hazard zones of 沼津市.

Layers (``geo.layers``) are loaded from GeoJSON (国土数値情報 N03 municipalities, the
district file) and PLATEAU CityGML (https://www.mlit.go.jp/plateau/: 土砂災害警戒区域,
洪水・津波浸水想定); ``geo.matching.GeoIndex`` answers "where is this point" for one
point or a million (shapely 2 STRtree, https://shapely.readthedocs.io/en/stable/);
``geo.resolve.resolve_areas`` answers "which districts does this alert cover".

:func:`default_index` loads the layers packaged in ``config/geo`` (see its README for
sources, credits and the fact that the default districts are ILLUSTRATIVE);
:func:`load_index` loads a city's own district file instead.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from pathlib import Path

from geo.geojson import load_geojson
from geo.layers import Feature, Layer, LayerError
from geo.matching import CITY_CODE, CITY_JMA_CODE, GeoIndex, Hits, LocateResult, Location
from geo.plateau import load_plateau_gml
from geo.resolve import Coverage, circle_polygon, resolve_areas

__all__ = [
    "HAZARD_KINDS",
    "Coverage",
    "Feature",
    "GeoIndex",
    "Hits",
    "Layer",
    "LayerError",
    "LocateResult",
    "Location",
    "circle_polygon",
    "default_index",
    "load_geojson",
    "load_hazard_dir",
    "load_index",
    "load_plateau_gml",
    "packaged_dir",
    "resolve_areas",
]

log = logging.getLogger(__name__)

# PLATEAU udx sub-folder → zone kind. Unknown folders are skipped with a log line, so a
# full dataset can be dropped in without code changes for the kinds we understand.
HAZARD_KINDS: dict[str, str] = {
    "lsld": "landslide",  # 土砂災害警戒区域
    "fld": "flood",  # 洪水浸水想定区域
    "tnm": "tsunami",  # 津波浸水想定
    "htd": "storm_surge",  # 高潮浸水想定区域
    "ifld": "inland_flood",  # 内水浸水想定区域
}


def packaged_dir() -> Path:
    """``config/geo`` as installed with the package."""
    return Path(str(resources.files("config") / "geo"))


def load_hazard_dir(root: str | Path) -> list[Layer]:
    """One layer per GML file under ``root/udx/<kind folder>/`` (PLATEAU layout)."""
    udx = Path(root) / "udx"
    layers: list[Layer] = []
    for path in sorted(udx.rglob("*.gml")):
        folder = path.relative_to(udx).parts[0]
        kind = HAZARD_KINDS.get(folder)
        if kind is None:
            log.info("%s: skipped, unknown PLATEAU folder %r", path, folder)
            continue
        layers.append(load_plateau_gml(path, kind=kind, layer_name=f"{kind}:{path.stem}"))
    return layers


def load_index(
    *,
    districts: str | Path | None = None,
    district_code_property: str = "code",
    district_name_property: str = "name",
    municipalities: str | Path | None = None,
    hazards: str | Path | None = None,
    city_code: str = CITY_CODE,
    default_jma_code: str = CITY_JMA_CODE,
) -> GeoIndex:
    """Build a GeoIndex; any file not given comes from ``config/geo``.

    ``districts`` is where a city's official district GeoJSON plugs in (config keys
    ``[geo] districts``, ``district_code_property``, ``district_name_property``).
    """
    base = packaged_dir()
    muni_layer = load_geojson(
        municipalities or base / "shizuoka_municipalities.geojson",
        code_property="N03_007",
        name_property="N03_004",
        kind="municipality",
        layer_name="municipalities",
        merge_duplicates=True,
    )
    district_layer = load_geojson(
        districts or base / "numazu_districts.geojson",
        code_property=district_code_property,
        name_property=district_name_property,
        kind="district",
        layer_name="districts",
    )
    hazard_layers = load_hazard_dir(hazards or base / "plateau_numazu_2021")
    if district_layer.metadata.get("illustrative"):
        log.warning("district layer %s is ILLUSTRATIVE, not official boundaries", district_layer.source)
    return GeoIndex(
        municipalities=muni_layer,
        districts=district_layer,
        hazards=hazard_layers,
        city_code=city_code,
        default_jma_code=default_jma_code,
    )


@functools.lru_cache(maxsize=1)
def default_index() -> GeoIndex:
    """The packaged layers, loaded once per process."""
    return load_index()
