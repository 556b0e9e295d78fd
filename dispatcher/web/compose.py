"""The compose form: a new message, an edit, an update of a sent one; its live previews.

``GET /console/new?kind=避難指示`` (or ``/exercise/new``; ``?replaces=ID`` for an update)
shows the form: the kind, the district map and the same districts as a checkbox list,
the hazard-zone kinds and the whole city, the headline and text per language (prefilled
from ``config/console/messages.toml`` and editable; Japanese required), the expiry, and
the previews of every enabled channel in every language with its length counter.
``POST`` with ``action`` = ``preview`` (also what the form does without JavaScript),
``save`` or ``submit``. A text still as it was prefilled follows the districts when
they change; one that was edited is left alone. ``POST …/preview`` answers the same as
JSON for ``/static/console.js``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from dispatcher.console import compose
from dispatcher.console.accounts import Role
from dispatcher.console.compose import Draft, Origin
from dispatcher.console.wiring import ConsoleSetup
from dispatcher.console.workflow import WorkflowError, save
from dispatcher.model import LANGUAGES
from dispatcher.store import console as store
from dispatcher.web.auth import requires, staff_of
from dispatcher.web.context import WEB
from dispatcher.web.districtmap import district_map
from dispatcher.web.templating import page

Form = MultiDictProxy[Any]


def setup_of(request: web.Request) -> ConsoleSetup:
    found = request.app[WEB].console
    if found is None:
        raise web.HTTPNotFound(text="the staff console is not set up on this daemon")
    return found


def mode(request: web.Request) -> tuple[bool, str]:
    """(exercise, the path prefix): /exercise is the exercise console, /console the live one."""
    exercise = request.path.startswith("/exercise")
    return exercise, "/exercise" if exercise else "/console"


def _jst_input(when: datetime) -> str:
    return when.astimezone(compose.JST).strftime("%Y-%m-%dT%H:%M")


def _field(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def read_draft(setup: ConsoleSetup, form: Form) -> tuple[Draft, dict[str, tuple[str, str]]]:
    """The draft the form describes, its unedited texts following the districts; and the new prefills."""
    console = setup.console
    kind_key = _field(form, "kind")
    kind = console.messages.kind(kind_key)
    tokens = compose.clean_areas([v for v in form.getall("area", []) if isinstance(v, str)], console.geo)
    fresh = compose.prefill(kind, tokens, console.geo) if kind is not None else {}
    texts: dict[str, tuple[str, str]] = {}
    for lang in LANGUAGES:
        headline, text = _field(form, f"headline_{lang}"), _field(form, f"text_{lang}")
        old_h, old_t = _field(form, f"prefill_headline_{lang}"), _field(form, f"prefill_text_{lang}")
        new_h, new_t = fresh.get(lang, (headline, text))
        texts[lang] = (new_h if headline == old_h else headline, new_t if text == old_t else text)
    raw_expiry = _field(form, "expires")
    expires = compose.parse_expiry(raw_expiry)
    problems = () if expires is not None or not raw_expiry else (f"{raw_expiry[:40]!r} is not a date and time",)
    return Draft(kind_key, tuple(tokens), texts, expires, problems), fresh


def _alert_for_preview(setup: ConsoleSetup, draft: Draft, exercise: bool, message_id: int) -> Any:
    console = setup.console
    kind = console.messages.kind(draft.kind)
    if kind is None or not draft.texts.get("ja", ("", ""))[0].strip():
        return None
    origin = Origin(message_id, exercise, console.config.sender, console.config.sender_name)
    return compose.build_alert(draft, kind, console.geo, origin, sent=datetime.now(UTC))


def preview_values(setup: ConsoleSetup, draft: Draft, exercise: bool, message_id: int = 0) -> dict[str, Any]:
    """The previews of every enabled channel, and the other providers' counts of the Japanese text."""
    alert = _alert_for_preview(setup, draft, exercise, message_id)
    if alert is None:
        return {"previews": [], "references": []}
    now = datetime.now(UTC)
    shown = compose.previews(alert, setup.renderers, now)
    first = next((p.text for p in shown if p.language == "ja"), alert.headline + "\n" + alert.description)
    return {"previews": shown, "references": compose.reference_counts(first, list(setup.renderers))}


def form_values(
    request: web.Request, setup: ConsoleSetup, draft: Draft, prefills: Mapping[str, tuple[str, str]], **extra: Any
) -> dict[str, Any]:
    """Everything compose.html shows for ``draft``."""
    console = setup.console
    exercise, prefix = mode(request)
    geo = console.geo
    chosen = set(draft.areas)
    return {
        "exercise": exercise,
        "prefix": prefix,
        "draft": draft,
        "kinds": list(console.messages.kinds.values()),
        "kind": console.messages.kind(draft.kind),
        "districts": [(d.code, d.name, d.code in chosen) for d in geo.districts],
        "zones": [
            (compose.ZONE + k, compose.area_label(compose.ZONE + k, geo), n, compose.ZONE + k in chosen)
            for k, n in compose.zone_kinds(geo)
        ],
        "city": compose.CITY in chosen,
        "map": district_map(geo, chosen),
        "area_names": compose.area_names(draft.areas, geo) or "（未選択）",
        "languages": [(lang, compose.LANGUAGE_NAMES[lang]) for lang in LANGUAGES],
        "prefills": prefills,
        "expires": _jst_input(draft.expires) if draft.expires else "",
        "max_hours": console.config.max_expiry_hours,
        "problems": list(draft.problems),
        "message_id": None,
        "replaces": None,
        **preview_values(setup, draft, exercise, extra.get("message_id") or 0),
        **extra,
    }


def _title(exercise: bool, what: str) -> str:
    return f"【訓練】{what}" if exercise else what


def _new_draft(setup: ConsoleSetup, kind_key: str, tokens: tuple[str, ...] = ()) -> tuple[Draft, Any]:
    console = setup.console
    kind = console.messages.kind(kind_key) or next(iter(console.messages.kinds.values()))
    fresh = compose.prefill(kind, tokens, console.geo)
    expires = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=kind.expires_hours)
    return Draft(kind.key, tokens, dict(fresh), expires), fresh


@requires(Role.AUTHOR)
async def new_form(request: web.Request) -> web.StreamResponse:
    """The form for a new message of ``?kind=``, or an update of ``?replaces=`` (a sent message)."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    replaces = None
    raw = request.query.get("replaces", "")
    if raw:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise web.HTTPBadRequest(text="replaces must be a message number")
        async with request.app[WEB].pool.acquire() as conn:
            replaces = await store.message(conn, int(raw))
        if replaces is None or replaces["exercise"] != exercise or replaces["state"] != "sent":
            raise web.HTTPNotFound(text=f"no sent message #{raw} here")
        draft, fresh = _new_draft(setup, replaces["kind"], tuple(replaces["areas"]))
        texts = {lang: (t.get("headline", ""), t.get("text", "")) for lang, t in replaces["texts"].items()}
        draft = Draft(draft.kind, draft.areas, {**draft.texts, **texts}, draft.expires)
    else:
        draft, fresh = _new_draft(setup, request.query.get("kind", ""))
    values = form_values(request, setup, draft, fresh, replaces=replaces, action=f"{prefix}/new")
    return page(request, "compose.html", _title(exercise, "新規作成 / Compose"), values)


async def _post_form(request: web.Request, message_id: int | None) -> web.StreamResponse:
    setup = setup_of(request)
    exercise, prefix = mode(request)
    me = staff_of(request)
    form = await request.post()
    draft, fresh = read_draft(setup, form)
    action = _field(form, "action")
    raw_replaces = _field(form, "replaces")
    digits = raw_replaces.isascii() and raw_replaces.isdigit() and len(raw_replaces) < 19
    replaces = int(raw_replaces) if digits else None
    replaced = None
    if replaces is not None:
        async with request.app[WEB].pool.acquire() as conn:
            replaced = await store.message(conn, replaces)
    target = f"{prefix}/messages/{message_id}/edit" if message_id else f"{prefix}/new"
    extra = {"replaces": replaced, "action": target, "message_id": message_id}
    if action in ("save", "submit"):
        try:
            saved = await save(
                setup.console,
                me.actor(request),
                draft,
                exercise=exercise,
                message_id=message_id,
                replaces=replaces if message_id is None else None,
                submit=action == "submit",
            )
        except WorkflowError as exc:
            values = form_values(request, setup, draft, fresh, **extra)
            values["problems"] = str(exc).split("; ")
            response = page(request, "compose.html", _title(exercise, "新規作成 / Compose"), values)
            response.set_status(422)
            return response
        raise web.HTTPSeeOther(f"{prefix}/messages/{saved}")
    values = form_values(request, setup, draft, fresh, **extra)
    return page(request, "compose.html", _title(exercise, "新規作成 / Compose"), values)


@requires(Role.AUTHOR)
async def new_post(request: web.Request) -> web.StreamResponse:
    """Preview, save or submit a new message."""
    return await _post_form(request, None)


def message_number(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound(text=f"no message {raw[:40]!r}")
    return int(raw)


@requires(Role.AUTHOR)
async def edit_form(request: web.Request) -> web.StreamResponse:
    """The form of a draft or returned message."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    message_id = message_number(request)
    async with request.app[WEB].pool.acquire() as conn:
        row = await store.message(conn, message_id)
    if row is None or row["exercise"] != exercise:
        raise web.HTTPNotFound(text=f"no message #{message_id} here")
    if row["state"] not in store.EDITABLE:
        raise web.HTTPSeeOther(f"{prefix}/messages/{message_id}")
    texts = {lang: (t.get("headline", ""), t.get("text", "")) for lang, t in row["texts"].items()}
    draft = Draft(row["kind"], tuple(row["areas"]), texts, row["expires"])
    kind = setup.console.messages.kind(row["kind"])
    fresh = compose.prefill(kind, draft.areas, setup.console.geo) if kind is not None else {}
    values = form_values(
        request, setup, draft, fresh, message_id=message_id, action=f"{prefix}/messages/{message_id}/edit"
    )
    return page(request, "compose.html", _title(exercise, f"編集 #{message_id} / Edit"), values)


@requires(Role.AUTHOR)
async def edit_post(request: web.Request) -> web.StreamResponse:
    return await _post_form(request, message_number(request))


@requires(Role.AUTHOR)
async def preview_json(request: web.Request) -> web.StreamResponse:
    """The form's state as JSON: texts that follow the districts, the previews as HTML, the problems."""
    setup = setup_of(request)
    exercise, _prefix = mode(request)
    form = await request.post()
    draft, fresh = read_draft(setup, form)
    values = preview_values(setup, draft, exercise)
    html = aiohttp_jinja2.render_string("_previews.html", request, {**values, "exercise": exercise})
    return web.json_response(
        {
            "texts": {
                lang: {
                    "headline": h,
                    "text": t,
                    "prefill_headline": fresh.get(lang, ("", ""))[0],
                    "prefill_text": fresh.get(lang, ("", ""))[1],
                }
                for lang, (h, t) in draft.texts.items()
            },
            "areas": compose.area_names(draft.areas, setup.console.geo) or "（未選択）",
            "previews_html": html,
        }
    )
