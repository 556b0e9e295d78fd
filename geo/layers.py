"""Geographic layers: named polygon features with a spatial index, and their loaders.

A :class:`Layer` is a named list of :class:`Feature` (code, name, kind, properties and a
shapely polygonal geometry) plus a shapely ``STRtree`` over the geometries, so matching
code can query it in bulk (https://shapely.readthedocs.io/en/stable/strtree.html).

Coordinates are always (longitude, latitude) in degrees. JGD2011 (EPSG:6668, and its
3D form EPSG:6697 used by PLATEAU) differs from WGS84 (EPSG:4326) by well under a metre
in Japan, far below the accuracy of any layer here, so all three are treated as the
same lon/lat plane; no datum transformation is done.

Loaders:

* :func:`load_geojson` reads a GeoJSON FeatureCollection (RFC 7946,
  https://datatracker.ietf.org/doc/html/rfc7946), e.g. 国土数値情報 行政区域 N03
  (https://nlftp.mlit.go.jp/ksj/gml/datalist/KsjTmplt-N03-2024.html) or a district file.
* :func:`load_plateau_gml` reads a PLATEAU CityGML file (https://www.mlit.go.jp/plateau/,
  data specification https://www.mlit.go.jp/plateaudocument/) such as 土砂災害警戒区域
  (``urf:SedimentDisasterProneArea``) or 洪水・津波浸水想定 (``wtr:WaterBody``). Its
  positions are latitude first and are swapped here. Coded attributes are labelled from
  the PLATEAU code lists found next to the data.

Every loader validates what it reads and raises :class:`LayerError` naming the file, the
feature and the fault; geometry that is invalid but repairable is repaired with
``shapely.make_valid`` and the repair is logged.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import shapely
from lxml import etree
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


# ---------------------------------------------------------------------------
# GeoJSON


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


# ---------------------------------------------------------------------------
# PLATEAU CityGML

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
