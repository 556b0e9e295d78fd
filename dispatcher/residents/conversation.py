"""The residents' conversation as a pure state machine: (resident, event) → (resident, replies).

No I/O here: the adapters (:mod:`dispatcher.residents.service` for storage, the Telegram
bot, LINE) load the :class:`Resident`, call :func:`handle`, store what it returns and
send its replies. See the package docstring (:mod:`dispatcher.residents`) for the API;
the vocabulary (events, replies, settings) is :mod:`dispatcher.residents.model`'s and is
re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.residents.levels import Level
from dispatcher.residents.model import (
    DISTRICTS_PER_PAGE,
    LANGUAGE_NAMES,
    LANGUAGES,
    MAX_BUTTONS,
    MAX_DATA_BYTES,
    MAX_PLACES,
    QUIET_CHOICES,
    Button,
    Command,
    Directory,
    District,
    Event,
    Follow,
    LatestItem,
    Outcome,
    Place,
    PointMatch,
    Press,
    Quiet,
    Reply,
    Request,
    Resident,
    SharedLocation,
    Step,
    Text,
    Unfollow,
)
from dispatcher.residents.texts import UiTexts

__all__ = [
    "DISTRICTS_PER_PAGE",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "MAX_BUTTONS",
    "MAX_DATA_BYTES",
    "MAX_PLACES",
    "QUIET_CHOICES",
    "Button",
    "Command",
    "Directory",
    "District",
    "Event",
    "Follow",
    "LatestItem",
    "Outcome",
    "Place",
    "PointMatch",
    "Press",
    "Quiet",
    "Reply",
    "Request",
    "Resident",
    "SharedLocation",
    "Step",
    "Text",
    "Unfollow",
    "handle",
    "latest_reply",
]

# -- the rules ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    directory: Directory
    ui: UiTexts


def handle(
    resident: Resident | None, event: Event, *, channel: str, address: str, directory: Directory, ui: UiTexts
) -> Outcome:
    """The next state and the replies for ``event`` from the resident at ``(channel, address)``.

    ``resident`` None: someone the service does not know yet (a new chat, or after /stop).
    """
    ctx = _Ctx(directory, ui)
    if isinstance(event, Unfollow):
        return Outcome(None, changed=resident is not None)
    if isinstance(event, Command) and event.name == "stop":
        if resident is None:
            return Outcome(None, (Reply(ui.text("ja", "stopped")),))
        return Outcome(None, (Reply(ui.text(resident.lang, "stopped")),), changed=True)
    if resident is None:
        if isinstance(event, Follow | Command) and (isinstance(event, Follow) or event.name == "start"):
            fresh = Resident(channel, address)
            return Outcome(fresh, (_language_menu(ctx, fresh),), changed=True)
        if isinstance(event, Press) and event.data.startswith("L:"):
            # A language button of a start message sent before /stop: start again with it.
            return _press(Resident(channel, address), event.data, ctx)
        return Outcome(None, (Reply(ui.multi("need_start")),))
    before = resident
    if resident.pending_point is not None and not (isinstance(event, Press) and event.data.startswith("K:")):
        resident = dataclasses.replace(resident, pending_point=None)
    if isinstance(event, Follow):
        out = Outcome(resident, (_language_menu(ctx, resident),))
    elif isinstance(event, Command):
        out = _command(resident, event, ctx)
    elif isinstance(event, Press):
        out = _press(resident, event.data, ctx)
    elif isinstance(event, SharedLocation):
        out = _location(resident, event, ctx)
    else:
        out = _text(resident, event.text, ctx)
    if out.resident is not None and out.resident != before:
        out = dataclasses.replace(out, changed=True)
    return out


def _t(ctx: _Ctx, r: Resident, key: str, /, **values: object) -> str:
    return ctx.ui.text(r.lang, key, **values)


def _command(r: Resident, cmd: Command, ctx: _Ctx) -> Outcome:
    name = cmd.name
    if name == "start":
        return Outcome(
            dataclasses.replace(r, step=Step.LANGUAGE if not r.onboarded else r.step), (_language_menu(ctx, r),)
        )
    if r.language is None:
        return Outcome(r, (_language_menu(ctx, r),))
    if name == "places":
        return Outcome(dataclasses.replace(r, step=Step.PLACES), (_places_menu(ctx, r),))
    if name == "settings":
        return Outcome(r, (_settings(ctx, r),))
    if name == "latest":
        return Outcome(r, (), request=Request.LATEST)
    if name == "test":
        return Outcome(r, (Reply(_t(ctx, r, "test", places=_place_list(ctx, r))),))
    if name == "language":
        return Outcome(r, (_language_menu(ctx, r),))
    return Outcome(r, (Reply(_t(ctx, r, "help")),))


def _text(r: Resident, text: str, ctx: _Ctx) -> Outcome:
    if r.language is None:
        return Outcome(r, (_language_menu(ctx, r),))
    query = text.strip()
    if r.step is not Step.PLACES or not query:
        return Outcome(r, (Reply(_t(ctx, r, "help")),))
    found = list(ctx.directory.search(query))
    if len(found) == 1:
        return _add_district(r, found[0], ctx)
    if not found:
        return Outcome(r, (_district_page(ctx, r, 0, note=_t(ctx, r, "no_match", text=query[:40])),))
    buttons = tuple(_district_button(d, r.lang) for d in found[: MAX_BUTTONS - 1])
    return Outcome(r, (Reply(_t(ctx, r, "search_results", text=query[:40]), (*buttons, _done(ctx, r))),))


def _location(r: Resident, loc: SharedLocation, ctx: _Ctx) -> Outcome:
    if r.language is None:
        return Outcome(r, (_language_menu(ctx, r),))
    match = ctx.directory.locate(loc.lat, loc.lon)
    if match.district is None:
        return Outcome(r, (_places_menu(ctx, r, note=_t(ctx, r, "outside")),))
    if len(r.places) >= MAX_PLACES:
        return Outcome(r, (_places_menu(ctx, r, note=_t(ctx, r, "places_full", max=MAX_PLACES)),))
    label = match.district.label(r.lang)
    codes = tuple(dict.fromkeys((match.district.code, *match.zone_codes)))
    place = Place(label=f"📍 {label}", codes=codes)
    new = dataclasses.replace(
        r, places=(*r.places, place), step=Step.PLACES, pending_point=(len(r.places), loc.lat, loc.lon)
    )
    kinds = sorted(set(match.zone_kinds))
    zones = _t(ctx, r, "zones_note", zones=", ".join(_t(ctx, r, f"zone_{k}") for k in kinds)) if kinds else ""
    ask = Reply(
        _t(ctx, r, "keep_point", name=label, zones=zones),
        (Button(_t(ctx, r, "btn_keep"), "K:1"), Button(_t(ctx, r, "btn_drop"), "K:0")),
    )
    return Outcome(new, (ask,))


def _press(r: Resident, data: str, ctx: _Ctx) -> Outcome:
    kind, _, value = data.partition(":")
    if kind == "L" and value in LANGUAGES:
        new = dataclasses.replace(r, language=value)
        if not new.onboarded:
            new = dataclasses.replace(new, step=Step.PLACES)
            # One message: Telegram paces a chat at one message a second.
            return Outcome(new, (_places_menu(ctx, new, note=_t(ctx, new, "welcome")),))
        return Outcome(new, (_settings(ctx, new),))
    if r.language is None:
        return Outcome(r, (_language_menu(ctx, r),))
    if kind == "P" and value.isdigit():
        return Outcome(dataclasses.replace(r, step=Step.PLACES), (_district_page(ctx, r, int(value), edit=True),))
    if kind == "D":
        district = next((d for d in ctx.directory.districts() if d.code == value), None)
        if district is None:
            return Outcome(r, (_places_menu(ctx, r),))
        return _add_district(r, district, ctx)
    if kind == "R" and value.isdigit():
        i = int(value)
        if i >= len(r.places):
            return Outcome(r, (_places_menu(ctx, r),))
        gone = r.places[i]
        new = dataclasses.replace(r, places=r.places[:i] + r.places[i + 1 :], step=Step.PLACES)
        return Outcome(new, (_places_menu(ctx, new, note=_t(ctx, r, "place_removed", name=gone.label)),))
    if kind == "K":
        return _keep_point(r, value == "1", ctx)
    if kind == "M":
        return _menu(r, value, ctx)
    if kind == "V" and value in {lv.value for lv in Level}:
        new = dataclasses.replace(r, level=Level(value))
        if not new.onboarded:
            return Outcome(dataclasses.replace(new, step=Step.QUIET), (_quiet_menu(ctx, new),))
        return Outcome(new, (_settings(ctx, new),))
    if kind == "Q":
        quiet = _parse_quiet(value)
        if not isinstance(quiet, Quiet | None):
            return Outcome(r, (_quiet_menu(ctx, r),))
        new = dataclasses.replace(r, quiet=quiet)
        if not new.onboarded:
            new = dataclasses.replace(new, onboarded=True, step=Step.READY)
            return Outcome(new, (Reply(_t(ctx, new, "ready", places=_place_list(ctx, new))),))
        return Outcome(new, (_settings(ctx, new),))
    return Outcome(r, (Reply(_t(ctx, r, "help")),))


def _menu(r: Resident, value: str, ctx: _Ctx) -> Outcome:
    if value == "done":
        if not r.places:
            return Outcome(r, (_places_menu(ctx, r, note=_t(ctx, r, "no_places")),))
        if not r.onboarded:
            return Outcome(dataclasses.replace(r, step=Step.LEVEL), (_level_menu(ctx, r),))
        return Outcome(dataclasses.replace(r, step=Step.READY), (_settings(ctx, r),))
    if value == "places":
        return Outcome(dataclasses.replace(r, step=Step.PLACES), (_places_menu(ctx, r),))
    if value == "level":
        return Outcome(r, (_level_menu(ctx, r),))
    if value == "quiet":
        return Outcome(r, (_quiet_menu(ctx, r),))
    if value == "language":
        return Outcome(r, (_language_menu(ctx, r),))
    return Outcome(r, (_settings(ctx, r),))


def _parse_quiet(value: str) -> Quiet | ValueError | None:
    """``"off"`` → None; ``"1320-420"`` → Quiet; anything else → the ValueError."""
    if value == "off":
        return None
    start, _, end = value.partition("-")
    try:
        return Quiet(int(start), int(end))
    except ValueError as exc:
        return exc


def _add_district(r: Resident, district: District, ctx: _Ctx) -> Outcome:
    label = district.label(r.lang)
    if any(p.codes == (district.code,) for p in r.places):
        return Outcome(r, (_places_menu(ctx, r, note=_t(ctx, r, "place_exists", name=label)),))
    if len(r.places) >= MAX_PLACES:
        return Outcome(r, (_places_menu(ctx, r, note=_t(ctx, r, "places_full", max=MAX_PLACES)),))
    new = dataclasses.replace(r, places=(*r.places, Place(label, (district.code,))), step=Step.PLACES)
    return Outcome(new, (_places_menu(ctx, new, note=_t(ctx, r, "place_added", name=label)),))


def _keep_point(r: Resident, keep: bool, ctx: _Ctx) -> Outcome:
    pending = r.pending_point
    new = dataclasses.replace(r, pending_point=None)
    if pending is None or pending[0] >= len(r.places):
        return Outcome(new, (_places_menu(ctx, new),))
    note = _t(ctx, r, "point_dropped")
    if keep:
        i, lat, lon = pending
        places = list(r.places)
        places[i] = dataclasses.replace(places[i], lat=lat, lon=lon)
        new = dataclasses.replace(new, places=tuple(places))
        note = _t(ctx, r, "point_kept")
    return Outcome(new, (_places_menu(ctx, new, note=note),))


# -- menus -------------------------------------------------------------------


def _language_menu(ctx: _Ctx, r: Resident) -> Reply:
    text = ctx.ui.multi("choose_language") if r.language is None else _t(ctx, r, "choose_language")
    buttons = tuple(Button(LANGUAGE_NAMES[code], f"L:{code}") for code in LANGUAGES)
    return Reply(text, buttons, columns=2)


def _done(ctx: _Ctx, r: Resident) -> Button:
    return Button(_t(ctx, r, "btn_done"), "M:done")


def _place_list(ctx: _Ctx, r: Resident) -> str:
    if not r.places:
        return _t(ctx, r, "none")
    return ctx.ui.separator(r.lang).join(p.label for p in r.places)


def _places_menu(ctx: _Ctx, r: Resident, *, note: str = "") -> Reply:
    text = _t(ctx, r, "places_menu", count=len(r.places), max=MAX_PLACES, places=_place_list(ctx, r))
    if note:
        text = f"{note}\n{text}"
    buttons = [Button(_t(ctx, r, "btn_pick_district"), "P:0")]
    buttons += [Button(f"✖ {p.label}"[:40], f"R:{i}") for i, p in enumerate(r.places)]
    buttons.append(_done(ctx, r))
    return Reply(text, tuple(buttons), columns=1)


def _district_button(d: District, language: str) -> Button:
    data = f"D:{d.code}"
    if len(data.encode()) > MAX_DATA_BYTES:
        raise ValueError(f"district code too long for a button: {d.code!r}")
    return Button(d.label(language), data)


def _district_page(ctx: _Ctx, r: Resident, page: int, *, note: str = "", edit: bool = False) -> Reply:
    districts = list(ctx.directory.districts())
    pages = max(1, -(-len(districts) // DISTRICTS_PER_PAGE))
    page = min(max(0, page), pages - 1)
    chunk = districts[page * DISTRICTS_PER_PAGE : (page + 1) * DISTRICTS_PER_PAGE]
    buttons = [_district_button(d, r.lang) for d in chunk]
    if page > 0:
        buttons.append(Button("◀ " + _t(ctx, r, "btn_prev"), f"P:{page - 1}"))
    if page + 1 < pages:
        buttons.append(Button(_t(ctx, r, "btn_next") + " ▶", f"P:{page + 1}"))
    buttons.append(_done(ctx, r))
    text = _t(ctx, r, "pick_district", page=page + 1, pages=pages)
    if note:
        text = f"{note}\n{text}"
    return Reply(text, tuple(buttons), columns=2, edit=edit)


def _level_menu(ctx: _Ctx, r: Resident) -> Reply:
    buttons = tuple(Button(_t(ctx, r, f"level_{lv.value}"), f"V:{lv.value}") for lv in Level)
    return Reply(_t(ctx, r, "choose_level"), buttons, columns=1)


def _quiet_menu(ctx: _Ctx, r: Resident) -> Reply:
    buttons = [Button(Quiet(s, e).label(), f"Q:{s}-{e}") for s, e in QUIET_CHOICES]
    buttons.append(Button(_t(ctx, r, "btn_quiet_off"), "Q:off"))
    return Reply(_t(ctx, r, "choose_quiet"), tuple(buttons), columns=2)


def _settings(ctx: _Ctx, r: Resident) -> Reply:
    text = _t(
        ctx,
        r,
        "settings",
        language=LANGUAGE_NAMES.get(r.lang, r.lang),
        places=_place_list(ctx, r),
        level=_t(ctx, r, f"level_{r.level.value}"),
        quiet=r.quiet.label() if r.quiet else _t(ctx, r, "quiet_none"),
    )
    buttons = (
        Button(_t(ctx, r, "btn_language"), "M:language"),
        Button(_t(ctx, r, "btn_places"), "M:places"),
        Button(_t(ctx, r, "btn_level"), "M:level"),
        Button(_t(ctx, r, "btn_quiet"), "M:quiet"),
    )
    return Reply(text, buttons, columns=2)


def latest_reply(resident: Resident, items: Sequence[LatestItem], ui: UiTexts) -> Reply:
    """The answer to ``Request.LATEST``: the alerts for the resident's places, newest first."""
    lang = resident.lang
    if not items:
        return Reply(ui.text(lang, "latest_none"))
    lines = [ui.text(lang, "latest_head")]
    for item in items:
        lines.append(f"• {item.when} {item.headline}")
        if item.link:
            lines.append(f"  {item.link}")
    return Reply("\n".join(lines)[:4000])
