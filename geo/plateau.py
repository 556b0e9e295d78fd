"""PLATEAU CityGML layers (https://www.mlit.go.jp/plateau/, https://www.mlit.go.jp/plateaudocument/).

土砂災害警戒区域 (``urf:SedimentDisasterProneArea``) and 洪水・津波浸水想定
(``wtr:WaterBody``) as polygon layers. Positions are latitude first and are swapped
here; coded attributes are labelled from the PLATEAU code lists found next to the data.
Parsing refuses DTDs, entities and network access.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from lxml import etree
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon

from geo.layers import (
    ACCEPTED_EPSG,
    Feature,
    Layer,
    LayerError,
    Polygonal,
    _check_ring,
    _label,
    _polygonal_part,
    _validated,
    parse_crs_name,
)

log = logging.getLogger(__name__)

_GML_NS = "http://www.opengis.net/gml"
_FEATURE_PATHS = ("{*}cityObjectMember/*", "{*}featureMember/*")


class _CodeLists:
    """Labels of PLATEAU code lists (gml:Dictionary files), cached per file.

    ``codeSpace`` attributes are paths relative to the GML file. Extracts copied out of
    their dataset sometimes point one folder too high or use an older file name
    (``WaterBodyTsunamiRiskAttribute_*`` for ``TsunamiRiskAttribute_*``), so a nearby
    ``codelists`` folder is searched too. Only ``*.xml`` files inside a folder named
    ``codelists`` are ever read, so a hostile codeSpace cannot make us open other files.
    """

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, str]] = {}

    def label(self, base_dir: Path, code_space: str, code: str) -> str | None:
        path = self._find(base_dir, code_space)
        if path is None:
            return None
        table = self._cache.get(path)
        if table is None:
            table = self._cache[path] = self._read(path)
        return table.get(code)

    def _find(self, base_dir: Path, code_space: str) -> Path | None:
        if "://" in code_space:
            return None
        name = Path(code_space).name
        if not name.endswith(".xml"):
            return None
        candidates = [(base_dir / code_space).resolve()]
        for parent in [base_dir, *base_dir.parents][:6]:
            folder = parent / "codelists"
            candidates.append(folder / name)
            if name.startswith("WaterBody") and not name.startswith("WaterBody_"):
                candidates.append(folder / name.removeprefix("WaterBody"))
        for candidate in candidates:
            if candidate.parent.name == "codelists" and candidate.is_file():
                return candidate.resolve()
        return None

    @staticmethod
    def _read(path: Path) -> dict[str, str]:
        try:
            root = etree.parse(str(path), _safe_parser()).getroot()
        except (OSError, etree.XMLSyntaxError) as exc:
            log.warning("%s: unreadable code list: %s", path, exc)
            return {}
        table: dict[str, str] = {}
        for definition in root.iter("{*}Definition"):
            code = (definition.findtext("{*}name") or "").strip()
            text = (definition.findtext("{*}description") or "").strip()
            if code and text:
                table[code] = text
        return table


def _safe_parser() -> etree.XMLParser:
    # No entity expansion, no DTD loading, no network: GML may come from outside.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _attributes(element: etree._Element, base_dir: Path, codelists: _CodeLists) -> tuple[dict[str, Any], set[str]]:
    """Leaf attributes of a city object by local name, with ``<name>_label`` from codes.

    Geometry (``lod*``), bounding boxes and data-quality blocks are skipped: they
    describe how the data was made, not the area. Returns the properties and the names
    of the coded ones.
    """
    props: dict[str, Any] = {}
    coded: set[str] = set()

    def walk(node: etree._Element) -> None:
        for child in node:
            local = _local(child.tag)
            if not local or local.startswith("lod") or local == "boundedBy":
                continue
            if "dataqualityattribute" in local.lower():
                continue
            if len(child):
                walk(child)
                continue
            text = (child.text or "").strip()
            if not text:
                continue
            props[local] = text
            code_space = child.get("codeSpace")
            if code_space:
                coded.add(local)
                label = codelists.label(base_dir, code_space, text)
                if label:
                    props[f"{local}_label"] = label

    walk(element)
    return props, coded


def _gml_ring(path: Path, feature: str, ring: etree._Element, dim: int, where: str) -> NDArray[np.float64]:
    pos_list = ring.find("{*}posList")
    if pos_list is not None:
        text = pos_list.text or ""
        ring_dim = int(pos_list.get("srsDimension") or dim)
    else:
        text = " ".join(p.text or "" for p in ring.iterfind("{*}pos"))
        ring_dim = dim
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError as exc:
        message = f"{where} has malformed coordinates: {exc}"
        raise LayerError(path, message, feature=feature) from exc
    if ring_dim not in (2, 3) or values.size % ring_dim:
        raise LayerError(
            path,
            f"{where} has {values.size} numbers, not a multiple of srsDimension {ring_dim}",
            feature=feature,
        )
    # EPSG:6697/6668/4326 are latitude-first; shapely wants (lon, lat).
    latlon = values.reshape(-1, ring_dim)
    xy = np.ascontiguousarray(latlon[:, [1, 0]])
    _check_ring(path, feature, xy, where)
    return xy


def _gml_feature_geometry(path: Path, feature: str, element: etree._Element, dim: int, *, repair: bool) -> Polygonal:
    polygons: list[Polygon] = []
    dropped = 0
    for pi, poly in enumerate(element.iter("{*}Polygon")):
        exterior = poly.find("{*}exterior/{*}LinearRing")
        if exterior is None:
            raise LayerError(path, f"polygon {pi} has no exterior LinearRing", feature=feature)
        shell = _gml_ring(path, feature, exterior, dim, f"polygon {pi} exterior")
        holes = [
            _gml_ring(path, feature, ring, dim, f"polygon {pi} interior {hi}")
            for hi, ring in enumerate(poly.iterfind("{*}interior/{*}LinearRing"))
        ]
        candidate = Polygon(shell, holes)
        if candidate.is_valid and candidate.area > 0:
            polygons.append(candidate)
            continue
        fixed = _polygonal_part(shapely.make_valid(candidate)) if repair else None
        if fixed is None:
            # Triangulated inundation surfaces contain sliver triangles of zero area;
            # they cover nothing, so dropping them loses nothing.
            dropped += 1
            continue
        polygons.extend(fixed.geoms if isinstance(fixed, MultiPolygon) else [fixed])
    if dropped:
        log.info("%s: feature %s: dropped %d degenerate surface(s)", path, feature, dropped)
    if not polygons:
        raise LayerError(path, "has no usable polygon geometry", feature=feature)
    geom = polygons[0] if len(polygons) == 1 else _polygonal_part(shapely.union_all(polygons))
    if geom is None:  # pragma: no cover - union of valid areas has area
        raise LayerError(path, "geometry is empty after union", feature=feature)
    return _validated(path, feature, geom, repair=repair)


def _gml_crs(path: Path, root: etree._Element) -> tuple[int, int]:
    """(EPSG, default dimension) from the srsName attributes; all must agree and be known."""
    names = {el.get("srsName") for el in root.iter() if isinstance(el.tag, str)} - {None}
    if not names:
        raise LayerError(path, "no srsName anywhere: the CRS is unknown")
    codes: set[int] = set()
    for name in names:
        assert name is not None
        crs = parse_crs_name(name)
        if not isinstance(crs, int) or crs not in ACCEPTED_EPSG:
            raise LayerError(path, f"unsupported srsName {name!r}: expected EPSG 6697, 6668 or 4326")
        codes.add(crs)
    if len(codes) > 1:
        raise LayerError(path, f"mixed CRS {sorted(codes)}")
    epsg = codes.pop()
    dims = {el.get("srsDimension") for el in root.iter("{*}Envelope")} - {None}
    dim = int(dims.pop()) if len(dims) == 1 else (3 if epsg == 6697 else 2)
    return epsg, dim


def load_plateau_gml(path: str | Path, *, kind: str, layer_name: str | None = None, repair: bool = True) -> Layer:
    """Load the city objects of a PLATEAU CityGML file as a layer of one ``kind``.

    Each ``core:cityObjectMember`` becomes a feature: code ``gml:id``; name from
    ``urf:zoneName``, else ``gml:name`` (labelled through its code list), else the
    description's label, else the id; its polygons (``lod1MultiSurface`` and friends,
    triangulated for inundation data) are unioned into one area. Leaf attributes become
    properties, with ``<attr>_label`` holding the code list text (e.g.
    ``areaType_label`` = 土砂災害特別警戒区域（指定済）).
    """
    p = Path(path)
    try:
        root = etree.parse(str(p), _safe_parser()).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise LayerError(p, f"cannot read GML: {exc}") from exc
    _epsg, dim = _gml_crs(p, root)
    base_dir = p.resolve().parent
    codelists = _CodeLists()
    features: list[Feature] = []
    seen: set[str] = set()
    members = [el for path_ in _FEATURE_PATHS for el in root.iterfind(path_)]
    for i, element in enumerate(members):
        gml_id = element.get(f"{{{_GML_NS}}}id") or next(
            (v for k, v in element.attrib.items() if str(k).endswith("}id")), None
        )
        props, coded = _attributes(element, base_dir, codelists)
        code = gml_id or f"{p.stem}#{i}"
        name = str(
            props.get("zoneName")
            or props.get("name_label")
            or (props.get("name") if "name" not in coded else None)
            or props.get("description_label")
            or code
        )
        label = _label(i, None, name, gml_id or code)
        if code in seen:
            raise LayerError(p, f"duplicate gml:id {code!r}", feature=label)
        seen.add(code)
        geom = _gml_feature_geometry(p, label, element, dim, repair=repair)
        props["gml_id"] = code
        props["object_type"] = _local(element.tag)
        features.append(Feature(code, name, kind, geom, props))
    if not features:
        raise LayerError(p, "no city objects (core:cityObjectMember) found")
    return Layer(layer_name or p.stem, features, source=str(p))
