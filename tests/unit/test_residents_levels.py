"""Alert classes for residents' levels: life-threatening, warnings, routine, below the city's defaults."""

from __future__ import annotations

import pytest

from dispatcher.model import Area, Priority
from dispatcher.residents.levels import (
    BELOW_DEFAULTS,
    LIFE_THREATENING,
    ROUTINE,
    WARNING,
    Level,
    ResidentDefaults,
    alert_class,
)
from tests.samples import NUMAZU, make_alert


def cls(defaults: ResidentDefaults | None = None, **fields: object) -> int:
    return alert_class(make_alert(**fields), city_codes=(NUMAZU,), defaults=defaults)


def quake(intensity: str) -> dict[str, object]:
    areas = (
        Area("石川県", ("1720000",), details={"intensity": "7"}),
        Area("沼津市", (NUMAZU,), details={"intensity": intensity}),
    )
    return {"event": "震源・震度情報", "priority": Priority.NORMAL, "areas": areas}


def test_life_threatening() -> None:
    assert cls(event="津波警報", priority=Priority.CRITICAL) == LIFE_THREATENING
    assert cls(event="緊急地震速報", priority=Priority.CRITICAL) == LIFE_THREATENING
    assert (
        cls(
            event="土砂災害危険警報", priority=Priority.HIGH, areas=(Area("沼津市", (NUMAZU,), details={"level": "4"}),)
        )
        == 0
    )
    assert cls(**quake("5-")) == LIFE_THREATENING
    assert cls(**quake("6強")) == LIFE_THREATENING


def test_the_city_s_own_intensity_decides_not_the_maximum() -> None:
    assert cls(**quake("3")) == ROUTINE
    assert cls(**quake("2")) == BELOW_DEFAULTS
    assert cls(ResidentDefaults(earthquake_min_intensity="1"), **quake("2")) == ROUTINE


def test_warnings_and_weather_defaults() -> None:
    assert cls(event="大雨警報", priority=Priority.HIGH) == WARNING
    advisory = {
        "event": "大雨注意報",
        "priority": Priority.LOW,
        "areas": (Area("沼津市", (NUMAZU,), details={"level": "2"}),),
    }
    assert cls(**advisory) == BELOW_DEFAULTS
    assert cls(ResidentDefaults(weather_min_level=2), **advisory) == ROUTINE
    assert cls(event="波浪注意報", priority=Priority.LOW) == ROUTINE  # no level: the defaults do not apply


def test_levels_cut_at_their_class() -> None:
    assert [lv.max_class for lv in Level] == [ROUTINE, WARNING, LIFE_THREATENING]
    with pytest.raises(ValueError, match="earthquake_min_intensity"):
        ResidentDefaults(earthquake_min_intensity="8")
