"""How loud an alert is for a resident: the class their chosen level is compared with. Pure.

A resident picks one of three levels (:class:`Level`); an alert is put in one of four
classes by :func:`alert_class`, and reaches the resident when its class is at most the
level's :attr:`Level.max_class`:

====  =====================================================================  =========
class what                                                                   reaches
====  =====================================================================  =========
0     life-threatening: 警戒レベル4 and up, 震度5弱 and up, 津波警報 and up,        every level
      緊急地震速報, 特別警報, evacuation orders (``Priority.CRITICAL``)
1     warnings: 警報 (``Priority.HIGH``), 警戒レベル3                             warnings, everything
2     everything else that passes the city's defaults (``[residents]``:          everything
      earthquakes from 震度3 in the city, weather from レベル3)
3     below the city's defaults (a 震度1 report, a レベル2 注意報 when the city      nobody
      starts weather at レベル3)                                                  who chose
====  =====================================================================  =========

Quiet hours hold back classes 1-3 until they end, never class 0. The class is computed
once per alert, for the city's own area (``[service] area_codes``): every district of a
single city shares the city's intensity and level, which is what JMA reports.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.folding import area_level
from dispatcher.model import Alert, Priority

LIFE_THREATENING = 0
WARNING = 1
ROUTINE = 2
BELOW_DEFAULTS = 3

# JMA seismic intensity scale, in order (震度階級).
INTENSITIES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5-", "5+", "6-", "6+", "7")
_INTENSITY_RANK = {v: i for i, v in enumerate(INTENSITIES)}
# Aliases JMA and CAP texts use for the same grades.
_INTENSITY_RANK.update({"5弱": 5, "5強": 6, "6弱": 7, "6強": 8})


class Level(enum.StrEnum):
    """What a resident wants to hear."""

    ALL = "all"
    WARNINGS = "warnings"
    CRITICAL = "critical"

    @property
    def max_class(self) -> int:
        """The loudest-to-quietest cut: alerts of class <= this reach the resident."""
        return {Level.ALL: ROUTINE, Level.WARNINGS: WARNING, Level.CRITICAL: LIFE_THREATENING}[self]


@dataclass(frozen=True, slots=True)
class ResidentDefaults:
    """``[residents]`` thresholds of the "everything" level: the city's defaults."""

    earthquake_min_intensity: str = "3"
    weather_min_level: int = 3

    def __post_init__(self) -> None:
        if self.earthquake_min_intensity not in _INTENSITY_RANK:
            raise ValueError(
                f"earthquake_min_intensity must be one of {', '.join(INTENSITIES)},"
                f" not {self.earthquake_min_intensity!r}"
            )
        if not 1 <= self.weather_min_level <= 5:
            raise ValueError(f"weather_min_level must be between 1 and 5, not {self.weather_min_level}")


def intensity_rank(value: str) -> int | None:
    """The rank of a JMA intensity ("5-", "5弱"…) on :data:`INTENSITIES`, None if not one."""
    return _INTENSITY_RANK.get(value.strip())


def _city_areas(alert: Alert, city_codes: Sequence[str]) -> list[int]:
    wanted = set(city_codes)
    return [i for i, a in enumerate(alert.areas) if wanted.intersection(a.codes)]


def _levels(alert: Alert, indices: Sequence[int]) -> list[int]:
    return [lv for lv in (area_level(alert.areas[i]) for i in indices) if lv is not None]


def _intensities(alert: Alert, indices: Sequence[int]) -> list[int]:
    out = []
    for i in indices:
        rank = intensity_rank(str(alert.areas[i].details.get("intensity") or ""))
        if rank is not None:
            out.append(rank)
    return out


def alert_class(alert: Alert, *, city_codes: Sequence[str], defaults: ResidentDefaults | None = None) -> int:
    """The class (0-3, see the module docstring) of ``alert`` for residents of the city."""
    d = defaults or ResidentDefaults()
    city = _city_areas(alert, city_codes) or list(range(len(alert.areas)))
    levels = _levels(alert, city)
    intensities = _intensities(alert, city)
    level = max(levels) if levels else None
    intensity = max(intensities) if intensities else None
    if alert.priority <= Priority.CRITICAL or (level is not None and level >= 4):
        return LIFE_THREATENING
    if intensity is not None and intensity >= _INTENSITY_RANK["5-"]:
        return LIFE_THREATENING
    if alert.priority <= Priority.HIGH or (level is not None and level >= 3):
        return WARNING
    if intensity is not None:
        return ROUTINE if intensity >= _INTENSITY_RANK[d.earthquake_min_intensity] else BELOW_DEFAULTS
    if level is not None:
        return ROUTINE if level >= d.weather_min_level else BELOW_DEFAULTS
    return ROUTINE
