"""The :class:`~dispatcher.residents.conversation.Directory` over the geo layers (``geo.GeoIndex``).

In memory, no I/O after the layers are loaded: districts in layer order, a shared
point matched to its district and hazard zones (``GeoIndex.locate``), and a typed name
searched among the districts' Japanese and English names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from dispatcher.residents.conversation import District, PointMatch
from geo import GeoIndex


def _fold(text: str) -> str:
    """Width- and case-folded (ＯＯＫＡ = ooka), without the layer's parenthesised notes."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


class GeoDirectory:
    """Districts and point matching from a :class:`geo.GeoIndex`."""

    def __init__(self, index: GeoIndex) -> None:
        self.index = index
        self._districts = tuple(
            District(d.code, d.name, str(d.properties.get("name_en") or "")) for d in index.districts
        )
        self._by_code = {d.code: d for d in self._districts}

    def districts(self) -> Sequence[District]:
        return self._districts

    def locate(self, lat: float, lon: float) -> PointMatch:
        try:
            where = self.index.locate(lat, lon)
        except ValueError:
            return PointMatch(None)
        codes = where.district_codes
        district = self._by_code.get(codes[0]) if codes else None
        return PointMatch(district, tuple(where.zone_ids), tuple(where.zone_kinds))

    def search(self, text: str) -> Sequence[District]:
        """Exact name or code first; else every district whose name contains the text."""
        query = _fold(text)
        if not query:
            return ()
        exact = [d for d in self._districts if query in (_fold(d.code), _fold(d.name), _fold(d.name_en))]
        if exact:
            return exact
        return [d for d in self._districts if query in _fold(d.name) or (d.name_en and query in _fold(d.name_en))]
