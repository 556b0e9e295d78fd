"""Resident-facing message text from per-language templates, never machine translation.

:class:`Templates` holds every language pack (:mod:`channels.templates.packs`: the
TOML files of ``config/templates/`` and their format) and turns an alert into a
subject and a text (:mod:`channels.templates.text`: line-by-line rendering and
shortening); :func:`render_message` makes the :class:`~dispatcher.model.Message` a
channel sends. Placeholders are listed in :data:`PLACEHOLDERS`; every key of
``alert.details`` and of the areas' ``details`` is also available under its own name.

**The reader's place first.** ``values``, ``compose`` and ``render_message`` take the
``place``: the :class:`~dispatcher.model.Area` of the alert that concerns this reader
(the delivery knows it). Without one, the place is the alert's area that best matches
the local codes (``[service] area_codes`` through :func:`local_codes_for`; by default
沼津市 2220300, then its まとめ地域, 一次細分, 府県予報区, seismic area, EEW area and
tsunami region, in that order: ``LOCAL_AREA_CODES``), else the first area that is a
place (not a river). ``{place}``, ``{place_level}``, ``{place_warnings}``,
``{place_intensity}``, ``{place_tsunami}``, ``{place_height}``, ``{place_arrival}`` and
``{place_lifted}`` describe it, and ``{others}`` ("ほか8地域") counts the other areas,
so every template says first what applies to the reader's place, then what to do,
then how many others and the link.

**Messages their author wrote.** An alert whose ``details["texts"]`` holds its own
headline and text per language (the staff console's) is read in the reader's language
from there (``{headline}``, ``{description}``), and ``details["template"]`` names the
template that frames it (``console``: the text, the time, the link).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from channels.templates.packs import DEFAULT_LANGUAGE, Blank, LanguagePack, TemplateError, load_packs
from channels.templates.text import format_sent, format_time, render, render_lines, shorten
from dispatcher.model import Alert, Area, Message, MsgType

# The city's own JMA area codes, most specific first: the default reader's place is
# the alert area matching the earliest entry. "code type:code" entries match only
# areas of that code type (3-digit codes mean different places in different tables:
# 380 is the 津波予報区 静岡県 but the 地震情報 細分区域 富山県東部). The parents are
# JMA's (config/jma/jmacode.csv via sources.jma.codes; tests check they agree).
LOCAL_AREA_CODES: tuple[str, ...] = (
    "2220300",  # 沼津市 (市町村等)
    "22203",  # 沼津市 (全国地方公共団体コード, N03 / geo layers)
    "220031",  # 富士山南東 (市町村等をまとめた地域)
    "220030",  # 東部 (一次細分区域)
    "地震情報／細分区域:441",  # 静岡県東部
    "緊急地震速報／府県予報区:9220",  # 静岡
    "津波予報区:380",  # 静岡県
    "沿岸地域:380",  # 静岡県 (沖合の津波観測 VTSE52)
    "220000",  # 静岡県 (府県予報区)
)
# What JMA files a municipality under (most specific first), for the municipalities
# whose tables are known here. Another municipality lists its own in [service]
# area_codes after its code: entries are matched in the order given.
_KNOWN_PARENTS: Mapping[str, tuple[str, ...]] = {LOCAL_AREA_CODES[0]: LOCAL_AREA_CODES[1:]}


def local_codes_for(area_codes: Iterable[str]) -> tuple[str, ...]:
    """The templates' local codes for a service of ``area_codes`` (``[service] area_codes``).

    The configured entries in their order, then the known parents of the configured
    municipalities (沼津市's make ``("2220300",)`` into :data:`LOCAL_AREA_CODES`), each once.
    """
    given = tuple(area_codes)
    parents = [parent for code in given for parent in _KNOWN_PARENTS.get(code, ())]
    return tuple(dict.fromkeys((*given, *parents)))


# Area details naming what is in force there, by family, in order of preference.
_PLACE_KINDS = ("warnings", "category", "kind")
_TSUNAMI_TYPES = frozenset({"津波予報区", "沿岸地域"})
_TSUNAMI_GRADES = ("大津波警報", "津波警報", "津波注意報", "津波予報")

PLACEHOLDERS: dict[str, str] = {
    "headline": "JMA / source headline, verbatim",
    "description": "source description, verbatim",
    "instruction": "source instruction, verbatim",
    "event": "source event name, verbatim (e.g. 津波警報)",
    "event_name": "event name in this language ([events] table, else the original)",
    "areas": "area descriptions in this language, joined by meta.area_separator",
    "area_count": "number of areas",
    "sent": "sent time in JST by meta.datetime_format",
    "identifier": "alert identifier",
    "kind": "source message kind (e.g. VXSE53)",
    "max_intensity": "details['max_intensity'] via [intensity]",
    "intensity": "area details 'intensity' (Numazu's first) via [intensity]",
    "magnitude": "details['magnitude']",
    "epicenter": "details['epicenter'] (or 'epicentre', 'hypocenter')",
    "depth": "details['depth'], else details['depth_km'] by meta.depth_format (0: meta.shallow)",
    "warnings": "details / area details 'warnings' (comma separated), translated",
    "place": "the reader's place (the area that concerns them), in this language",
    "place_level": "its 警戒レベル by meta.level_format (警戒レベル4 / Alert Level 4)",
    "place_warnings": "what is in force there (warnings, tsunami grade, flood kind), translated",
    "place_intensity": "its seismic intensity (or 緊急地震速報 forecast from–to), translated",
    "place_tsunami": "its tsunami grade (大津波警報 …), translated",
    "place_height": "its expected (or estimated) tsunami height",
    "place_arrival": "its expected tsunami arrival (time by meta.time_format, or JMA's condition)",
    "place_lifted": "what was lifted there, translated",
    "place_summary": "its level and what is in force, once (警戒レベル3 大雨警報 / レベル４大雨危険警報)",
    "elsewhere": "the alert's event when the reader's tsunami grade is another (大津波警報 elsewhere)",
    "others": "meta.others (meta.others_one for one) with the number of the other areas (ほか8地域), empty when none",
}

# Names the source may use for the same fact; the first spelling is canonical.
_DETAIL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "epicenter": ("epicentre", "hypocenter", "hypocentre"),
    "max_intensity": ("maxint", "max_int"),
}

# R06 warning names lead with their level: レベル４大雨危険警報.
_LEVEL_PREFIX = re.compile(r"^レベル([1-5１-５])")
_FULLWIDTH = str.maketrans("１２３４５", "12345")
_LEVEL_INSIDE = re.compile(r"^(.*?)レベル([1-5１-５])(.+)$")
_LEVEL_IN_TEXT = re.compile(r"(?:レベル|level)\s*[1-5１-５]", re.IGNORECASE)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


class Templates:
    """All language packs; :meth:`compose` turns an alert into (subject, text)."""

    def __init__(
        self,
        packs: Mapping[str, LanguagePack],
        *,
        local_area_codes: Iterable[str] = LOCAL_AREA_CODES,
    ) -> None:
        if DEFAULT_LANGUAGE not in packs:
            raise TemplateError(f"no templates for the default language {DEFAULT_LANGUAGE!r}")
        self._packs = dict(packs)
        self._local_codes = tuple(local_area_codes)

    @classmethod
    def load(cls, directory: Path | None = None, *, local_area_codes: Iterable[str] = LOCAL_AREA_CODES) -> Templates:
        """Read every ``<language>.toml`` of ``directory`` (default: ``config/templates``).

        ``local_area_codes`` pick a reader's default place (see :func:`local_codes_for`).
        """
        return cls(load_packs(directory), local_area_codes=local_area_codes)

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages with a template file, the default first."""
        return (DEFAULT_LANGUAGE, *sorted(k for k in self._packs if k != DEFAULT_LANGUAGE))

    def pack(self, language: str) -> LanguagePack:
        """The pack for ``language``, falling back to Japanese."""
        return self._packs.get(language) or self._packs[DEFAULT_LANGUAGE]

    def template_key(self, alert: Alert, language: str) -> str:
        """Which template renders ``alert``: exact event, alias, prefix, family, default.

        An R06 name is looked up without its level (レベル４大雨危険警報 → 大雨危険警報).
        """
        pack = self.pack(language)
        keys = pack.templates
        event = alert.event.strip()
        # A source that writes the whole message itself (the staff console) names the
        # template that only frames it: the marker, the time, the link.
        chosen = alert.details.get("template")
        if isinstance(chosen, str) and chosen in keys:
            return chosen
        if alert.msg_type is MsgType.CANCEL and "取消" in keys:
            return "取消"
        for name in dict.fromkeys((event, _LEVEL_PREFIX.sub("", event, count=1))):
            if name in keys:
                return name
            if name in pack.aliases:
                return pack.aliases[name]
        bare = _LEVEL_PREFIX.sub("", event, count=1)
        # "*氾濫危険情報" matches 狩野川氾濫危険情報: river forecasts start with the river.
        for pattern, target in pack.aliases.items():
            if pattern.startswith("*") and (event.endswith(pattern[1:]) or bare.endswith(pattern[1:])):
                return target
        # 噴火警報（居住地域） and 緊急地震速報（警報） share their family's template.
        prefixed = [k for k in keys if k not in ("default", "取消") and bare.startswith(k)]
        if prefixed:
            return max(prefixed, key=len)
        for suffix in ("特別警報", "危険警報", "警報", "注意報"):
            if bare.endswith(suffix) and suffix in keys:
                return suffix
        return "default"

    def _local_rank(self, area: Area) -> int | None:
        code_type = area.details.get("code_type", "")
        for rank, entry in enumerate(self._local_codes):
            wanted_type, _, code = entry.rpartition(":")
            if code in area.codes and (not wanted_type or wanted_type == code_type):
                return rank
        return None

    def concerns_city(self, alert: Alert) -> bool:
        """Whether ``alert`` names the city (its code or what JMA files it under); the city's own sources always do."""
        return alert.source != "jma" or any(self._local_rank(a) is not None for a in alert.areas)

    def place_for(self, alert: Alert) -> Area | None:
        """The default reader's place: the area best matching the local codes, else the first place.

        A river (code type 河川, in 指定河川洪水予報) is not a place a resident lives in.
        """
        best: tuple[int, Area] | None = None
        for area in alert.areas:
            rank = self._local_rank(area)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, area)
        if best is not None:
            return best[1]
        return next((a for a in alert.areas if a.details.get("code_type") != "河川"), None) or next(
            iter(alert.areas), None
        )

    def values(self, alert: Alert, language: str, place: Area | None = None) -> dict[str, str]:
        """The placeholder values for ``alert`` in ``language``, for a reader at ``place``.

        ``place`` is the alert's area that concerns the reader (default: :meth:`place_for`).
        """
        pack = self.pack(language)
        meta = pack.meta
        values: dict[str, str] = {}
        if place is None:
            place = self.place_for(alert)

        # The place's facts win over other areas' for the per-area names ({intensity}…).
        for area in (place, *alert.areas) if place is not None else alert.areas:
            for key, value in area.details.items():
                values.setdefault(key, _as_text(value))
        # Alert-wide facts override area facts of the same name.
        for key, value in alert.details.items():
            values[key] = _as_text(value)
        for canonical, synonyms in _DETAIL_SYNONYMS.items():
            if not values.get(canonical):
                values[canonical] = next((values[s] for s in synonyms if values.get(s)), "")
        if not values.get("depth") and values.get("depth_km"):
            km = float(values["depth_km"])
            values["depth"] = meta["shallow"] if km == 0 else meta["depth_format"].format_map(Blank(km=f"{km:g}"))
        for key in ("max_intensity", "intensity"):
            if values.get(key):
                values[key] = pack.intensity.get(values[key], values[key])
        if values.get("warnings"):
            values["warnings"] = self._translate_list(pack, values["warnings"])

        names = [pack.places.get(a.description, a.description) for a in alert.areas]
        names = list(dict.fromkeys(n for n in names if n))
        limit = max(1, int(meta["max_areas"]))
        areas = meta["area_separator"].join(names[:limit])
        if len(names) > limit:
            more = meta["more_areas"].format_map(Blank(count=str(len(names) - limit)))
            areas = f"{areas}{meta['area_separator']}{more}"

        # Rivers are not areas anyone lives in: "ほかN地域" counts places only.
        places = [
            pack.places.get(a.description, a.description) for a in alert.areas if a.details.get("code_type") != "河川"
        ]
        event_name = self._event_name(pack, alert.event)
        values.update(self._place_values(pack, place, list(dict.fromkeys(n for n in places if n)), event_name))
        headline, description = _own_wording(alert, pack.language) or (alert.headline, alert.description)
        headline, description = headline.strip(), description.strip()
        # JMA's body text often repeats the headline first; say it once.
        if headline and description.startswith(headline):
            description = description[len(headline) :].lstrip()
        values.update(
            headline=headline,
            description=description,
            instruction=alert.instruction.strip(),
            event=alert.event,
            event_name=event_name,
            areas=areas,
            area_count=str(len(names)),
            sent=format_sent(alert.sent, meta["datetime_format"]),
            identifier=alert.identifier,
            kind=alert.kind,
        )
        return values

    @staticmethod
    def _event_name(pack: LanguagePack, event: str) -> str:
        """The event in this language: its [events] name, else built from its parts.

        R06 names lead with (or, for rivers, carry) their level: 太平川レベル３氾濫警報
        is "太平川" + the level by meta.level_format + the [events] name of 氾濫警報;
        a river forecast without a level (狩野川氾濫危険情報) keeps the river and
        translates the longest known ending.
        """
        if event in pack.events:
            return pack.events[event] or event
        match = _LEVEL_INSIDE.match(event)
        if match and pack.events.get(match.group(3)):
            level = str(pack.meta["level_format"]).format_map(Blank(level=match.group(2).translate(_FULLWIDTH)))
            return " ".join(x for x in (match.group(1), level, pack.events[match.group(3)]) if x)
        endings = [k for k in pack.events if pack.events[k] and len(k) > 2 and event.endswith(k)]
        if endings:
            ending = max(endings, key=len)
            return f"{event[: -len(ending)]} {pack.events[ending]}".strip()
        return event

    def _translate_list(self, pack: LanguagePack, joined: str) -> str:
        items = [w.strip() for w in joined.split(",") if w.strip()]
        return str(pack.meta["area_separator"]).join(self._event_name(pack, w) for w in items)

    def _place_values(
        self, pack: LanguagePack, place: Area | None, names: list[str], event_name: str = ""
    ) -> dict[str, str]:
        """``{place}``, ``{place_level}`` … and ``{others}`` for ``place`` (module docstring)."""
        meta = pack.meta
        if place is None:
            count = len(names)
        else:
            own = pack.places.get(place.description, place.description)
            count = len([n for n in names if n != own])
        others = meta["others_one"] if count == 1 and meta["others_one"] else meta["others"]
        out = {
            "others": str(others).format_map(Blank(count=str(count))) if count else "",
            "place": "",
            "place_level": "",
            "place_warnings": "",
            "place_intensity": "",
            "place_tsunami": "",
            "place_height": "",
            "place_arrival": "",
            "place_lifted": "",
            "place_summary": "",
            "elsewhere": "",
        }
        if place is None:
            return out
        d = place.details
        out["place"] = pack.places.get(place.description, place.description)
        if d.get("level"):
            out["place_level"] = str(meta["level_format"]).format_map(Blank(level=d["level"]))
        kinds = next((d[k] for k in _PLACE_KINDS if d.get(k)), "")
        if kinds:
            out["place_warnings"] = self._translate_list(pack, kinds)
        # The level and what is in force, once: R06 names already say their level.
        warnings, level = out["place_warnings"], out["place_level"]
        if warnings and (not level or _LEVEL_IN_TEXT.search(warnings)):
            out["place_summary"] = warnings
        else:
            out["place_summary"] = " ".join(x for x in (level, warnings) if x)
        intensity = d.get("intensity", "")
        if not intensity and d.get("intensity_to"):
            low, high = d.get("intensity_from", ""), d["intensity_to"]
            intensity = high if low in ("", high) else f"{low}～{high}"
            intensity = "～".join(pack.intensity.get(p, p) for p in intensity.split("～"))
        out["place_intensity"] = pack.intensity.get(intensity, intensity)
        if d.get("code_type") in _TSUNAMI_TYPES:
            out["place_tsunami"] = self._event_name(pack, d.get("category", "")) if d.get("category") != "解除" else ""
            if out["place_tsunami"] and event_name and out["place_tsunami"] != event_name:
                out["elsewhere"] = event_name
            out["place_height"] = pack.events.get(d.get("max_height", ""), d.get("max_height", ""))
            arrival = d.get("first_arrival", "")
            out["place_arrival"] = format_time(arrival, meta["time_format"], pack.events) if arrival else ""
        if d.get("lifted"):
            out["place_lifted"] = self._translate_list(pack, d["lifted"])
        return out

    def compose(
        self,
        alert: Alert,
        language: str,
        *,
        max_length: int,
        link: str | None,
        place: Area | None = None,
    ) -> tuple[str, str]:
        """Render ``alert`` in ``language`` (unknown → ja) for a reader at ``place`` as (subject, text).

        Exercise and test alerts start both subject and text with the exercise
        marker. ``text`` ends with the link line when ``link`` is given and fits
        ``max_length``: the source's free text is cut first (module docstring).
        """
        pack = self.pack(language)
        if place is None:
            place = self.place_for(alert)
        key = self.template_key(alert, pack.language)
        note = ""
        fallback = str(pack.meta.get("fallback") or "")
        if key == "default" and fallback in self._packs and self.template_key(alert, fallback) != "default":
            # Better the fallback language's own template than this pack's generic one, said so.
            note = str(pack.meta.get("fallback_note") or "")
            pack = self._packs[fallback]
            key = self.template_key(alert, fallback)
        meta = pack.meta
        # A tsunami message acts on the reader's own grade: 津波注意報 here while a
        # 大津波警報 is in force elsewhere means "leave the water", said first.
        grade = place.details.get("category", "") if place is not None else ""
        if key in _TSUNAMI_GRADES and grade in _TSUNAMI_GRADES and grade in pack.templates:
            key = grade
        template = pack.templates[key]
        values = self.values(alert, pack.language, place)
        # A subject whose last placeholder was empty must not end in a dangling ":".
        subject = " ".join(template.subject.format_map(Blank(values)).split()).rstrip(" :：")
        lines = render_lines(template.text, values)
        while lines and not lines[0][0].strip():
            lines.pop(0)
        while lines and not lines[-1][0].strip():
            lines.pop()
        if note:
            lines.insert(0, (note, False))
        if not alert.is_public:
            marker = meta["exercise_marker"]
            subject = f"{marker}{subject}"
            note = meta["exercise_note"]
            first = lines[0] if lines else ("", False)
            lines[:1] = [(f"{marker}{note}", False), first] if note else [(f"{marker}{first[0]}", first[1])]
        tail = render(meta["link_line"], Blank(link=link)) if link else ""
        return subject, shorten(lines, max_length, tail=tail, ellipsis=meta["ellipsis"])


def _own_wording(alert: Alert, language: str) -> tuple[str, str] | None:
    """The (headline, text) the alert's author wrote in ``language`` (``details["texts"]``), if any.

    The staff console writes each message in Japanese, やさしい日本語 and English, never by
    machine translation: ``{"ja-easy": {"headline": …, "text": …}, …}``.
    """
    texts = alert.details.get("texts")
    own = texts.get(language) if isinstance(texts, Mapping) else None
    if not isinstance(own, Mapping) or not str(own.get("headline", "")).strip():
        return None
    return str(own.get("headline", "")), str(own.get("text", ""))


def alert_link(public_url: str, alert: Alert) -> str:
    """The public page of ``alert`` on the service's own site (its public id, never the sender's identifier).

    An alert that was not stored has no page yet: the link is the site itself.
    """
    base = public_url.rstrip("/")
    return f"{base}/alerts/{quote(alert.public_id, safe='')}" if alert.public_id else f"{base}/"


def render_message(
    templates: Templates,
    alert: Alert,
    language: str,
    *,
    max_length: int,
    public_url: str,
    place: Area | None = None,
) -> Message:
    """The :class:`Message` most channels send: composed text for ``place`` plus the alert's link."""
    link = alert_link(public_url, alert)
    subject, text = templates.compose(alert, language, max_length=max_length, link=link, place=place)
    known = language if language in templates.languages else DEFAULT_LANGUAGE
    return Message(
        text=text,
        language=known,
        subject=subject,
        link=link,
        exercise=not alert.is_public,
        extra={"alert_identifier": alert.identifier, "alert_event": alert.event},
    )
