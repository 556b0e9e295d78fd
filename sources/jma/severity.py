"""One table from JMA message kinds and warning names to CAP severity and queue priority.

JMA (https://xml.kishou.go.jp/, https://www.jma.go.jp/jma/kishou/know/bosai/keiho.html)
grades its products by warning level: 特別警報 and 大津波警報/津波警報 and
緊急地震速報（警報） call for immediate life-saving action, 警報 (and from 2026 the
レベル４ 危険警報) for evacuation of those at risk, 注意報 for caution. The table is
matched by substring, first rule wins, so specific names (大雨特別警報, 津波注意報)
sit above generic ones (警報, 注意報). A name in no rule gets ``DEFAULT``: a new
JMA message type is delivered at normal priority rather than crashing or vanishing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dispatcher.model import Certainty, Priority, Severity, Urgency

__all__ = [
    "DEFAULT",
    "RULES",
    "Rating",
    "intensity_rank",
    "more_severe",
    "most_severe",
    "rate",
    "rate_intensity",
]


@dataclass(frozen=True, slots=True)
class Rating:
    """CAP severity / urgency / certainty and the dispatcher's queue priority."""

    severity: Severity
    urgency: Urgency
    certainty: Certainty
    priority: Priority


def _r(sev: Severity, urg: Urgency, cert: Certainty, prio: Priority) -> Rating:
    return Rating(sev, urg, cert, prio)


_S, _U, _C, _P = Severity, Urgency, Certainty, Priority

CRITICAL = _r(_S.EXTREME, _U.IMMEDIATE, _C.LIKELY, _P.CRITICAL)
WARNING = _r(_S.SEVERE, _U.EXPECTED, _C.LIKELY, _P.HIGH)
ADVISORY = _r(_S.MODERATE, _U.EXPECTED, _C.LIKELY, _P.LOW)
LIFTED = _r(_S.MINOR, _U.PAST, _C.OBSERVED, _P.NORMAL)
INFO = _r(_S.MINOR, _U.PAST, _C.OBSERVED, _P.NORMAL)
DEFAULT = _r(_S.UNKNOWN, _U.UNKNOWN, _C.UNKNOWN, _P.NORMAL)

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
    ("記録的短時間大雨情報", _r(_S.SEVERE, _U.IMMEDIATE, _C.OBSERVED, _P.HIGH)),
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
    """The name with the most urgent rating (priority, then severity), first on ties."""
    best: tuple[str, Rating] | None = None
    for name in names:
        rating = rate(name)
        if best is None or _key(rating) < _key(best[1]):
            best = (name, rating)
    return best


def more_severe(a: Rating, b: Rating) -> Rating:
    """The more urgent of two ratings."""
    return b if _key(b) < _key(a) else a
