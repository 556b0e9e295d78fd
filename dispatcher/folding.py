"""One issuance, one message: the parallel documents of one JMA warning reach a person once.

JMA issues one set of weather warnings as several documents at once: 気象特別警報・警報・注意報
(VPWW53), 気象警報・注意報（Ｈ２７） (VPWW54, until about FY2028), the legacy 気象警報・注意報
(VPWW50), since 28 May 2026 the element telegrams 気象警報・注意報（Ｒ０６） (VPWW55–61, one per
element: 大雨, 土砂, 高潮, 暴風, 波浪, 大雪, その他), 気象特別警報報知 (VPNO50) for special
warnings, and 土砂災害警戒情報 (VXWW50, from 2026 レベル４土砂災害危険警報) beside the 土砂
element. Each is a telegram of its own series; stored as separate alerts, each would reach
the same person again.

**What decides that documents belong to one issuance** (:func:`issuance_key`): the same
``Control/EditorialOffice`` (the office that issued the warnings), the same
``Head/ReportDateTime`` (JMA stamps every document of one issuance with the same report
time), the same ``Control/Status`` (an exercise never folds into the real thing) and the
same ``Head/InfoType`` (only 発表 folds: a 訂正 or 取消 must reach whoever received what it
corrects), within the weather-warning family above (its ``Control/Title``). ``EventID`` is
not used: VPWW documents carry none and VXWW50 names its prefecture there.

**What a later document of an issuance does for a person** (applied in the outbox's
fan-out, per subscription, under an advisory lock on the issuance so that concurrent
fetches, restarts and several daemons decide one at a time): the first document to arrive
is sent at once; a later one is sent to a person only when it raises the 警戒レベル for
that person's place above every level an earlier document of the issuance already
queued or delivered for them (a document without a level counts as level 0), and it is
then an update of what they heard. Otherwise it is stored, linked to its siblings
(``details["issuance"]``), and not sent to them. Whichever order the documents arrive
in, a person hears the issuance once, and again only with a higher level.
"""

from __future__ import annotations

from collections.abc import Sequence

from dispatcher.model import Alert, Area, MsgType

# Control/Title prefixes of the documents of one weather-warning issuance.
WEATHER_TITLES = ("気象特別警報・警報・注意報", "気象警報・注意報", "気象特別警報報知", "土砂災害警戒情報")


def issuance_key(alert: Alert) -> str | None:
    """The issuance ``alert`` belongs to, or None when it is not folded with others."""
    if alert.source != "jma" or alert.msg_type is not MsgType.ALERT:
        return None
    title = str(alert.details.get("control_title") or "")
    if not title.startswith(WEATHER_TITLES):
        return None
    return "|".join(("weather", alert.sender, alert.sent.isoformat(), alert.status.value))


def area_level(area: Area) -> int | None:
    """The 警戒レベル (1–5) JMA gives or implies for ``area``, if any (``details["level"]``)."""
    raw = area.details.get("level")
    if raw is None or raw == "":
        return None
    try:
        level = int(str(raw))
    except ValueError:
        return None
    return level if 1 <= level <= 5 else None


def alert_level(alert: Alert) -> int | None:
    """The highest level of ``alert``: ``details["level"]``, else the highest of its areas."""
    raw = alert.details.get("level")
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= 5:
        return raw
    levels = [lv for lv in (area_level(a) for a in alert.areas) if lv is not None]
    return max(levels) if levels else None


def place_levels(areas: Sequence[Area]) -> list[int | None]:
    """Each area's level, in order (what the outbox stores per delivery for its place)."""
    return [area_level(a) for a in areas]
