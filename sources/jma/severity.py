"""One table from JMA message kinds and warning names to CAP severity and queue priority.

JMA (https://xml.kishou.go.jp/, https://www.jma.go.jp/jma/kishou/know/bosai/keiho.html)
grades its products by warning level: 特別警報 and 大津波警報/津波警報 and
緊急地震速報（警報） call for immediate life-saving action, 警報 (and from 2026 the
レベル４ 危険警報) for evacuation of those at risk, 注意報 for caution. The table is
matched by substring, first rule wins, so specific names (大雨特別警報, 津波注意報)
sit above generic ones (警報, 注意報). A name in no rule gets ``DEFAULT``: a new
JMA message type is delivered at normal priority rather than crashing or vanishing.

警戒レベル (https://www.jma.go.jp/jma/kishou/know/bosai/alertlevel.html) is the
five-step scale residents are taught; :func:`kind_level` reads it from a warning
name, and the queue priority follows it (:func:`with_level`):

* the level a name gives: R06 names carry it (レベル５大雨特別警報, レベル４土砂災害
  危険警報, レベル３氾濫警報, レベル２高潮注意報);
* the level a name implies: any 特別警報 = 5; 危険警報, 土砂災害警戒情報 and
  氾濫危険情報 = 4; 氾濫発生情報 = 5, 氾濫警戒情報 = 3, 氾濫注意情報 = 2; the
  pre-2026 names of the level hazards 大雨/洪水 警報 = 3 and 注意報 = 2, 高潮警報
  = 4 and 高潮注意報 = 2 (JMA's 警戒レベル相当 table of the old system); a lifting
  (…解除) and hazards without levels (暴風, 波浪, 大雪, 雷…) give none;
* priority from the level: 5 and 4 are ``CRITICAL`` (act now to save life: beside
  大津波警報・津波警報 and 緊急地震速報), 3 is ``HIGH``, 2 and 1 are ``LOW``. An
  alert's priority is the more urgent of its rating's and its highest level's, so a
  level never lowers what the table above says (暴風警報 beside レベル２大雨注意報
  stays ``HIGH``). Within ``CRITICAL`` the queue is first come, first served
  (``Priority`` then id): putting 5 strictly before 4 would need a sub-order the
  outbox does not have yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from dispatcher.model import Certainty, Priority, Severity, Urgency
from sources.outcome import UNRATED, Rating

__all__ = [
    "DEFAULT",
    "RULES",
    "intensity_rank",
    "kind_level",
    "level_priority",
    "more_severe",
    "most_severe",
    "rate",
    "rate_intensity",
    "with_level",
]


def _r(sev: Severity, urg: Urgency, cert: Certainty, prio: Priority) -> Rating:
    return Rating(sev, urg, cert, prio)


_S, _U, _C, _P = Severity, Urgency, Certainty, Priority

CRITICAL = _r(_S.EXTREME, _U.IMMEDIATE, _C.LIKELY, _P.CRITICAL)
WARNING = _r(_S.SEVERE, _U.EXPECTED, _C.LIKELY, _P.HIGH)
ADVISORY = _r(_S.MODERATE, _U.EXPECTED, _C.LIKELY, _P.LOW)
LIFTED = _r(_S.MINOR, _U.PAST, _C.OBSERVED, _P.NORMAL)
INFO = _r(_S.MINOR, _U.PAST, _C.OBSERVED, _P.NORMAL)
DEFAULT = UNRATED

# (substring of the event / warning name, rating), first match wins.
RULES: tuple[tuple[str, Rating], ...] = (
    # Tsunami: 津波予報 is also what a lifting telegram is called (Noto 2024).
    ("津波予報", _r(_S.MINOR, _U.EXPECTED, _C.LIKELY, _P.NORMAL)),
    # A lifting (噴火警報解除, 津波警報解除) is news, not a new danger.
    ("解除", LIFTED),
    ("大津波警報", CRITICAL),
    ("津波警報", CRITICAL),
    # Caution on the shore is needed at once, so above ordinary 注意報.
    ("津波注意報", _r(_S.MODERATE, _U.IMMEDIATE, _C.LIKELY, _P.NORMAL)),
    ("緊急地震速報（警報）", CRITICAL),
    ("緊急地震速報（予報）", _r(_S.MODERATE, _U.IMMEDIATE, _C.POSSIBLE, _P.LOW)),
    ("緊急地震速報", CRITICAL),
    ("特別警報", CRITICAL),
    # 噴火警報（居住地域） is the volcanic 特別警報 (levels 4–5).
    ("噴火警報（居住地域）", CRITICAL),
    ("噴火速報", _r(_S.SEVERE, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)),
    ("噴火警報", WARNING),
    ("噴火予報", _r(_S.MINOR, _U.FUTURE, _C.POSSIBLE, _P.LOW)),
    ("南海トラフ地震臨時情報（巨大地震警戒）", _r(_S.SEVERE, _U.EXPECTED, _C.POSSIBLE, _P.HIGH)),
    ("南海トラフ地震臨時情報", _r(_S.MODERATE, _U.FUTURE, _C.POSSIBLE, _P.NORMAL)),
    ("南海トラフ地震", _r(_S.MINOR, _U.FUTURE, _C.POSSIBLE, _P.NORMAL)),
    ("危険警報", _r(_S.SEVERE, _U.IMMEDIATE, _C.LIKELY, _P.HIGH)),
    ("土砂災害警戒情報", _r(_S.SEVERE, _U.IMMEDIATE, _C.LIKELY, _P.HIGH)),
    # 記録的短時間大雨情報 (VPOA50) and 府県気象防災速報（記録的短時間大雨） (VPBS50).
    ("記録的短時間大雨", _r(_S.SEVERE, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)),
    # 府県気象防災速報 (VPBS50): a rain band is observed, or expected within hours.
    ("線状降水帯発生", _r(_S.SEVERE, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)),
    ("線状降水帯直前予測", _r(_S.SEVERE, _U.EXPECTED, _C.LIKELY, _P.HIGH)),
    ("線状降水帯", _r(_S.SEVERE, _U.EXPECTED, _C.LIKELY, _P.HIGH)),
    ("短時間大雪", _r(_S.MODERATE, _U.IMMEDIATE, _C.OBSERVED, _P.NORMAL)),
    # 台風解析・予報情報 (VPTW*): a forecast track, not a warning (stored, not pushed).
    ("台風解析・予報情報", _r(_S.MINOR, _U.FUTURE, _C.POSSIBLE, _P.LOW)),
    ("氾濫発生情報", _r(_S.SEVERE, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)),
    ("氾濫危険情報", _r(_S.SEVERE, _U.IMMEDIATE, _C.LIKELY, _P.HIGH)),
    ("氾濫警戒情報", _r(_S.MODERATE, _U.EXPECTED, _C.LIKELY, _P.NORMAL)),
    ("氾濫注意情報", _r(_S.MINOR, _U.EXPECTED, _C.LIKELY, _P.LOW)),
    ("竜巻注意", _r(_S.MODERATE, _U.IMMEDIATE, _C.POSSIBLE, _P.NORMAL)),
    ("後発地震注意情報", _r(_S.MODERATE, _U.FUTURE, _C.POSSIBLE, _P.NORMAL)),
    ("警報", WARNING),
    ("注意報", ADVISORY),
    ("震源に関する情報", INFO),
    ("遠地地震", INFO),
    ("震源要素更新", INFO),
    ("津波", _r(_S.MINOR, _U.EXPECTED, _C.LIKELY, _P.NORMAL)),
)

_SEVERITY_ORDER = {
    Severity.EXTREME: 0,
    Severity.SEVERE: 1,
    Severity.MODERATE: 2,
    Severity.MINOR: 3,
    Severity.UNKNOWN: 4,
}

# JMA writes intensities as "5-", "5+" in codes and 震度５弱 in names.
_INTENSITY = {
    "1": 1,
    "2": 2,
    "3": 3,
    "4": 4,
    "5-": 5,
    "5+": 6,
    "6-": 7,
    "6+": 8,
    "7": 9,
    "５弱": 5,
    "５強": 6,
    "６弱": 7,
    "６強": 8,
    "１": 1,
    "２": 2,
    "３": 3,
    "４": 4,
    "７": 9,
}


def intensity_rank(value: str | None) -> int:
    """Order of a JMA seismic intensity ("5-", "震度６弱"), 0 when absent or unknown.

    "5+" ranks above "5-"; 震度５弱以上未入電 ("5-" with a note) counts as 5弱.
    """
    if not value:
        return 0
    text = value.strip().removeprefix("震度")
    if text in _INTENSITY:
        return _INTENSITY[text]
    return _INTENSITY.get(text[:2], _INTENSITY.get(text[:1], 0))


def rate_intensity(max_intensity: str | None) -> Rating:
    """Rating of observed-intensity information: 震度５弱 or more is a HIGH priority."""
    rank = intensity_rank(max_intensity)
    if rank >= 7:  # 6弱 and above: collapse and fire are likely
        return _r(_S.EXTREME, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)
    if rank >= 5:
        return _r(_S.SEVERE, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)
    if rank >= 1:
        return _r(_S.MINOR, _U.PAST, _C.OBSERVED, _P.NORMAL)
    return INFO


def rate(name: str) -> Rating:
    """Rating of a JMA event or warning name; ``DEFAULT`` when no rule matches."""
    for needle, rating in RULES:
        if needle in name:
            return rating
    return DEFAULT


def _key(rating: Rating) -> tuple[int, int]:
    return (int(rating.priority), _SEVERITY_ORDER[rating.severity])


def most_severe(names: Iterable[str]) -> tuple[str, Rating] | None:
    """The name with the most urgent rating (priority with its 警戒レベル, severity, level), first on ties.

    レベル４大雨危険警報 beside 大雨警報 wins although both are ``severe``.
    """
    best: tuple[str, Rating] | None = None
    best_key: tuple[int, int, int] | None = None
    for name in names:
        level = kind_level(name)
        rating = with_level(rate(name), level)
        key = (*_key(rating), -(level or 0))
        if best_key is None or key < best_key:
            best, best_key = (name, rating), key
    return best


def more_severe(a: Rating, b: Rating) -> Rating:
    """The more urgent of two ratings."""
    return b if _key(b) < _key(a) else a


# 警戒レベル: see the module docstring. Digits may be full-width in names.
_LEVEL_IN_NAME = re.compile(r"レベル([1-5１-５])")
_FULLWIDTH = str.maketrans("１２３４５", "12345")
# (substring, level) for names that imply a level, first match wins.
_IMPLIED_LEVEL: tuple[tuple[str, int], ...] = (
    ("特別警報", 5),
    ("氾濫発生", 5),
    ("危険警報", 4),
    ("土砂災害警戒情報", 4),
    ("氾濫危険", 4),
    ("高潮警報", 4),
    ("氾濫警戒", 3),
    ("大雨警報", 3),
    ("洪水警報", 3),
    ("氾濫注意", 2),
    ("大雨注意報", 2),
    ("洪水注意報", 2),
    ("高潮注意報", 2),
)
_LEVEL_PRIORITY = {5: _P.CRITICAL, 4: _P.CRITICAL, 3: _P.HIGH, 2: _P.LOW, 1: _P.LOW}


@lru_cache(maxsize=2048)  # names repeat across areas and telegrams; bounded for hostile input
def kind_level(name: str | None) -> int | None:
    """The 警戒レベル (1–5) a warning name gives or implies, None when it has none.

    >>> kind_level("レベル４大雨危険警報"), kind_level("大雨警報"), kind_level("暴風警報")
    (4, 3, None)
    """
    if not name or name.endswith("解除"):
        return None
    match = _LEVEL_IN_NAME.search(name)
    if match:
        return int(match.group(1).translate(_FULLWIDTH))
    for needle, level in _IMPLIED_LEVEL:
        if needle in name:
            return level
    return None


def level_priority(level: int) -> Priority:
    """Queue priority of a 警戒レベル (5, 4: CRITICAL; 3: HIGH; 2, 1: LOW)."""
    return _LEVEL_PRIORITY.get(level, _P.NORMAL)


def with_level(rating: Rating, level: int | None) -> Rating:
    """``rating`` with the more urgent of its priority and the level's (see the module docstring)."""
    if level is None:
        return rating
    priority = min(rating.priority, level_priority(level))
    if priority == rating.priority:
        return rating
    return Rating(rating.severity, rating.urgency, rating.certainty, priority)
