"""What a resident reads of an alert: pure functions from stored rows to the pages' values.

Resident-first: a page leads with what the alert means for 沼津市, or for the reader's
district (its level, intensity, tsunami grade and arrival), what to do and until when;
the other areas come after, summarised ("静岡県 ほか 367 地域") and listed in full only
on request. The facts come from the same templates the messages are written with
(:class:`channels.templates.Templates`), so page and message say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from channels.templates import Templates
from dispatcher.folding import alert_level, area_level
from dispatcher.model import Alert, Area, MsgType
from dispatcher.publication import text as T
from dispatcher.status import JST
from dispatcher.store.alerts import row_to_alert

# JMA's warning colours (気象庁「警報・注意報の色」, 危険度分布), each with a text colour of
# at least 4.5:1 on it. A colour never stands alone: the badge always says the level and name.
COLOURS = {
    "special": ("#0c000c", "#ffffff"),
    "danger": ("#aa00aa", "#ffffff"),
    "warning": ("#ff2800", "#000000"),
    "advisory": ("#f2e700", "#000000"),
    "info": ("#e8eaf6", "#1d1f23"),
}


def url(language: str, page: str, key: str = "") -> str:
    """The address of a public page in ``language`` (Japanese has no language segment)."""
    suffix = "" if language == "ja" else f"{language}/"
    k = quote(key, safe="")
    if page == "home":
        return f"/public/{suffix}"
    if page == "district":
        return f"/public/{suffix}districts/{k}/"
    if page == "archive":
        return f"/public/{suffix}archive/"
    if page == "alert":
        return f"/alerts/{k}" + ("" if language == "ja" else f"/{language}")
    if page == "open-data":
        return "/open-data/" + suffix
    if page == "subscribe":
        return "/subscribe" + ("" if language == "ja" else f"?lang={language}")
    raise ValueError(page)


def tsunami_grade(place: Area | None) -> str:
    """The tsunami grade in force at ``place`` (大津波警報, 津波警報, 津波注意報, 津波予報), or ""."""
    category = place.details.get("category", "") if place is not None else ""
    return category if category.startswith(("大津波", "津波")) and "解除" not in category else ""


def grade(alert: Alert, level: int | None, place: Area | None = None) -> str:
    """Which JMA colour the alert wears for a reader at ``place`` (a tsunami: the place's own grade)."""
    event = tsunami_grade(place) or alert.event
    if event == "津波予報":
        return "info"
    if "大津波警報" in event or "特別警報" in event or level == 5:
        return "special"
    if "危険警報" in event or level == 4:
        return "danger"
    if "注意報" in event or level == 2:
        return "advisory"
    if "警報" in event or level == 3:
        return "warning"
    return "info"


def place_of(alert: Alert, templates: Templates, district: str | None) -> Area | None:
    """The area that concerns a reader of ``district`` (None: the city as a whole)."""
    if district:
        own = next((a for a in alert.areas if district in a.codes), None)
        if own is not None:
            return own
    return templates.place_for(alert)


def action(alert: Alert, language: str, level: int | None, place: Area | None = None) -> str:
    """What to do at ``place``: for a tsunami the action of the place's own grade (a 津波予報 here
    asks less than the 津波注意報 elsewhere), else the alert's own instruction, else the
    standard action for its kind or level."""
    own = tsunami_grade(place)
    if own and alert.msg_type is not MsgType.CANCEL:
        table = (
            T.TSUNAMI_FORECAST_ACTION
            if own == "津波予報"
            else T.TSUNAMI_ADVISORY_ACTION
            if "注意報" in own
            else T.TSUNAMI_ACTION
        )
        return table.get(language, table["ja"])
    if alert.instruction.strip():
        return alert.instruction.strip()
    if alert.msg_type is MsgType.CANCEL:
        return ""
    if "津波" in alert.event and "解除" not in alert.event:
        if "注意報" in alert.event:
            return T.TSUNAMI_ADVISORY_ACTION.get(language, T.TSUNAMI_ADVISORY_ACTION["ja"])
        return T.TSUNAMI_ACTION.get(language, T.TSUNAMI_ACTION["ja"])
    if level is not None:
        return T.ACTIONS.get(language, T.ACTIONS["ja"]).get(level, "")
    if ("地震" in alert.event or "震度" in alert.event) and alert.details.get("max_intensity"):
        return T.QUAKE_ACTION.get(language, T.QUAKE_ACTION["ja"])
    return ""


def alert_view(
    row: Mapping[str, Any],
    language: str,
    templates: Templates,
    *,
    district: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Everything an alert's page or list entry shows, for a reader of ``district`` (code, name)."""
    alert = row_to_alert(row)
    w = T.words(language)
    pack_language = language if language in templates.languages else "ja"
    place = place_of(alert, templates, district[0] if district else None)
    values = templates.values(alert, pack_language, place)
    level = (area_level(place) if place is not None else None) or alert_level(alert)
    colour = grade(alert, level, place)
    facts: list[tuple[str, str]] = []
    if values.get("place"):
        facts.append((w["place"], values["place"]))
    if level is not None:
        facts.append((w["level"], f"{w['level']}{level}" if language != "en" else f"Level {level}"))
    for key, label in (
        ("place_warnings", "warnings"),
        ("place_intensity", "intensity"),
        ("place_tsunami", "tsunami"),
        ("place_height", "height"),
        ("place_arrival", "arrival"),
        ("max_intensity", "max_intensity"),
        ("magnitude", "magnitude"),
        ("epicenter", "epicenter"),
        ("depth", "depth"),
    ):
        if values.get(key) and values[key].lower() not in ("nan", "none"):
            facts.append((w[label], values[key]))
    # What it means here, in the message's own words, without the source's free text: the
    # page shows that once, under its own heading.
    brief = replace(alert, headline="", description="")
    _subject, summary = templates.compose(brief, pack_language, max_length=4000, link=None, place=place)
    names = [templates.pack(pack_language).places.get(a.description, a.description) for a in alert.areas]
    own = values.get("place", "")
    others = list(dict.fromkeys(n for n in names if n and n != own))
    heading = w["what_for_district"].format(district=district[1]) if district else w["what_for"]
    return {
        "alert": alert,
        "row": row,
        "public_id": alert.public_id,
        "url": url(language, "alert", alert.public_id),
        "event": values.get("event_name") or alert.event,
        # The badge's colour and name are the reader's place's (a tsunami's own grade there).
        "badge_event": (values.get("place_tsunami") if tsunami_grade(place) else "")
        or values.get("event_name")
        or alert.event,
        "headline": alert.headline,
        "summary": summary,
        "heading": heading,
        "facts": facts,
        "level": level,
        "grade": colour,
        "badge": f"{w['level']}{level} " if level is not None and language != "en" else "",
        # A cancelled alert asks nothing of anyone any more.
        "action": "" if row["state"] == "cancelled" else action(alert, language, level, place),
        "until": alert.expires,
        "sent": alert.sent,
        "exercise": not alert.is_public,
        "state": row["state"],
        "msg_type": alert.msg_type.value,
        "kind_label": w["cancel"]
        if alert.msg_type is MsgType.CANCEL
        else w["updated"]
        if alert.msg_type is MsgType.UPDATE
        else w["alert"],
        "note": w.get(str(row["state"])) if row["state"] in ("cancelled", "superseded", "stale") else None,
        "others": others,
        "others_summary": w["others_summary"].format(first=others[0], count=len(others) - 1)
        if len(others) > 1
        else (others[0] if others else ""),
        "jma": alert.source == "jma",
        "description": alert.description.strip(),
        "sender": alert.sender,
    }


def history_view(rows: Sequence[Mapping[str, Any]], language: str, current: str) -> list[dict[str, Any]]:
    """The update/cancel chain of an alert, oldest first, each linking its own page."""
    w = T.words(language)
    out = []
    for r in rows:
        kind = str(r["msg_type"])
        out.append(
            {
                "url": url(language, "alert", str(r["public_id"])),
                "label": w["cancel"] if kind == "cancel" else w["updated"] if kind == "update" else w["alert"],
                "sent": r["sent"],
                "event": r["event"],
                "headline": r["headline"],
                "this": r["public_id"] == current,
            }
        )
    return out


def affects(row: Mapping[str, Any], codes: Sequence[str]) -> bool:
    """Whether the alert reaches a reader following any of ``codes``."""
    targets = set(row["target_codes"] or ()) | set(row["area_codes"] or ())
    return bool(targets & set(codes))


def jst(value: Any) -> str:
    return value.astimezone(JST).strftime("%Y-%m-%d %H:%M") if value is not None else ""
