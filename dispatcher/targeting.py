"""Targeting: which codes an alert reaches, and which codes a subscriber follows.

An alert names places as JMA area codes (府県予報区 ``220000`` … 市町村等 ``2220300``,
津波予報区), CAP polygons and circles, district codes or hazard-zone names. The
pipeline's :class:`~dispatcher.pipeline.CodeTargeter` turns them into *target codes*
with :class:`GeoExpander`: everything → district codes and hazard-zone ids of the geo
layers (``geo.resolve_areas``), plus the 市町村等 codes the JMA tables give
(``sources.jma.codes``).

A subscription follows codes in ``subscriptions.areas``: what the subscriber chose
(a district by name or code, a JMA municipality code) and, when they shared a location,
the district and zones computed once from it (``dispatcher.store.subscribers``). The
audience of an alert is then ``areas && target_codes`` under a GIN index: no geometry at
send time (DESIGN.md §6).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dispatcher.model import Alert
from dispatcher.pipeline import CodeTargeter
from geo import Coverage, GeoIndex, default_index, load_index, resolve_areas
from sources.jma.codes import AreaCodes, Resolution, default_codes

__all__ = [
    "AudienceAreas",
    "GeoConfig",
    "GeoExpander",
    "default_targeter",
    "describe",
    "geo_index",
    "located_codes",
    "read_alert",
    "resolve_choices",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GeoConfig:
    """[geo]: the district and hazard-zone layers used for targeting (empty = packaged).

    ``districts`` is a GeoJSON file of the city's official districts; the packaged file
    is an ILLUSTRATIVE partition (``config/geo/README.md``). ``hazards`` is a PLATEAU
    folder (``udx/lsld``, ``udx/fld``…). After changing either, run ``dispatcher relocate``.
    """

    districts: str = ""
    district_code_property: str = "code"
    district_name_property: str = "name"
    hazards: str = ""


@dataclass(frozen=True, slots=True)
class AudienceAreas:
    """What an alert covers: the geo coverage and the JMA municipality resolution."""

    coverage: Coverage
    municipalities: Resolution

    @property
    def target_codes(self) -> set[str]:
        """District codes, zone ids and 市町村等 codes: what subscriptions may name."""
        return {*self.coverage.district_codes, *self.coverage.zone_ids, *self.municipalities.municipalities}

    def unknown_codes(self, alert: Alert) -> list[str]:
        """Alert codes neither the JMA tables nor the geo layers know."""
        geo_unknown = set(self.coverage.unknown)
        jma_unknown = set(self.municipalities.unknown)
        return [c for c in alert.area_codes if c in geo_unknown and c in jma_unknown]

    @property
    def shape_problems(self) -> list[str]:
        """Descriptions of CAP shapes that could not be used."""
        return [u for u in self.coverage.unknown if u.startswith("area ")]


class GeoExpander:
    """Alert areas → district codes, hazard-zone ids and 市町村等 codes.

    A JMA warning for 沼津市 (``2220300``, or a coarser area containing it such as
    ``220030`` 東部 or ``220000`` 静岡県) selects every district of the city, so it
    reaches subscribers of each district as well as those who named ``2220300``. A CAP
    polygon or circle selects the districts it touches; a zone id, name or number selects
    those hazard zones.
    """

    def __init__(self, index: GeoIndex | None = None, codes: AreaCodes | None = None) -> None:
        self._index = index
        self._codes = codes
        self._city: list[str] | None = None

    @property
    def index(self) -> GeoIndex:
        if self._index is None:
            self._index = default_index()
        return self._index

    def areas(self, alert: Alert) -> AudienceAreas:
        """The coverage of ``alert``; never raises on bad input."""
        municipalities = (self._codes or default_codes()).resolve_areas(alert.areas)
        coverage = resolve_areas(alert.areas, self.index, municipality_codes=municipalities.municipalities)
        return AudienceAreas(coverage, municipalities)

    def expand(self, alert: Alert, *, report: bool = True) -> tuple[set[str], set[str]]:
        found = self.areas(alert)
        for problem in found.shape_problems if report else ():
            log.warning("alert area shape unusable", extra={"alert": alert.identifier, "detail": problem})
        # Known to the JMA tables or to the geo layers.
        recognised = set(alert.area_codes) - set(found.unknown_codes(alert))
        codes = found.target_codes
        # A part of the city is part of the city: whoever follows it as a whole (their
        # parents somewhere in Numazu, a company with sites across it) hears of a
        # district's 避難指示 too. Districts' followers still hear only their own.
        if found.coverage.district_codes or found.coverage.zone_ids:
            codes = {*codes, *self._city_codes()}
        return codes, recognised

    def _city_codes(self) -> list[str]:
        """The JMA 市町村等 code of the districts' city (N03's five digits and "00", when JMA knows it).

        Worked out once: every alert that names a district asks.
        """
        if self._city is None:
            city = self.index.city_code
            jma = f"{city}00" if len(city) == 5 else city
            self._city = [jma] if (self._codes or default_codes()).name(jma) is not None else []
        return self._city


def geo_index(config: GeoConfig | None = None) -> GeoIndex:
    """The geo layers the configuration names; the packaged ones (cached) by default."""
    if config is None or (
        not config.districts
        and not config.hazards
        and config.district_code_property == "code"
        and config.district_name_property == "name"
    ):
        return default_index()
    return load_index(
        districts=config.districts or None,
        district_code_property=config.district_code_property,
        district_name_property=config.district_name_property,
        hazards=config.hazards or None,
    )


def default_targeter(config: GeoConfig | None = None, *, index: GeoIndex | None = None) -> CodeTargeter:
    """The service's targeter: the geo layers, fed with the JMA tables' 市町村等 codes."""
    return CodeTargeter(GeoExpander(index or geo_index(config)))


def resolve_choices(choices: Iterable[str], index: GeoIndex, codes: AreaCodes | None = None) -> list[str]:
    """Codes for what a subscriber chose: district names or codes, zones, JMA codes.

    A district matches by code, name or ``name_en`` (case-insensitive); a hazard zone by
    id, name or zone number (every zone of that name); anything else must be a JMA area
    code. Raises ValueError naming the choices that match nothing.
    """
    table = codes or default_codes()
    by_name: dict[str, str] = {}
    for d in index.districts:
        for key in (d.code, d.name, str(d.properties.get("name_en") or "")):
            if key:
                by_name.setdefault(key.casefold(), d.code)
    out: dict[str, None] = {}
    bad: list[str] = []
    for raw in choices:
        choice = raw.strip()
        district = by_name.get(choice.casefold())
        if district is not None:
            out[district] = None
            continue
        zones = index.zones_matching(choice)
        if zones:
            out.update((z.code, None) for z in zones)
            continue
        if choice and table.name(choice) is not None:
            out[choice] = None
            continue
        bad.append(raw)
    if bad:
        names = ", ".join(d.name for d in index.districts)
        raise ValueError(f"unknown area {', '.join(map(repr, bad))}: not a district ({names}), zone or JMA code")
    return list(out)


def located_codes(district_codes: Sequence[str], zone_ids: Sequence[str]) -> list[str]:
    """The codes a located subscription follows: its districts, then its zones."""
    return list(dict.fromkeys([*district_codes, *zone_ids]))


def read_alert(data: bytes, *, url: str | None = None) -> Alert:
    """An Alert from a JMA telegram or a CAP 1.2/1.1 document; ValueError saying why not."""
    from sources.cap import is_cap, parse_cap
    from sources.jma.parser import parse_telegram
    from sources.outcome import Parsed, describe

    cap = is_cap(data)
    outcome = parse_cap(data, url=url) if cap else parse_telegram(data, url=url)
    if isinstance(outcome, Parsed):
        return outcome.alert
    raise ValueError(f"{'CAP' if cap else 'JMA'}: {describe(outcome)}")


def describe(alert: Alert, expander: GeoExpander) -> dict[str, object]:
    """What ``dispatcher audience`` prints about an alert's areas, JSON-able."""
    found = expander.areas(alert)
    index = expander.index
    table = default_codes()
    districts = [index.districts.get(c) for c in found.coverage.district_codes]
    zones = [index.zone(z) for z in found.coverage.zone_ids]
    return {
        "event": alert.event,
        "status": str(alert.status),
        "districts": [{"code": d.code, "name": d.name} for d in districts if d is not None],
        "districts_illustrative": index.illustrative,
        "zones": [{"id": z.code, "name": z.name, "kind": z.kind} for z in zones if z is not None],
        "municipalities": [{"code": c, "name": table.name(c)} for c in sorted(found.municipalities.municipalities)],
        "unknown": [*found.unknown_codes(alert), *found.shape_problems, *alert.details.get("problems", ())],
    }
