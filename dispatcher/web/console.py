"""The staff console's pages besides the form: the queue, a message and its actions, held broadcasts.

``/console`` is the live console and ``/exercise`` the exercise one: the same pages, a
different colour, a 訓練 banner on every page and different buttons; a message belongs
to the mode it was written in and is reachable only from there. Routes (``{p}`` is
either prefix; roles in brackets):

    GET  {p}                                the queue: waiting for approval, held broadcasts, drafts, sent
    GET  {p}/messages/{id}                  one message: its words, previews, history, the actions
    POST {p}/messages/{id}/submit           [author]   ask for approval
    POST {p}/messages/{id}/approve          [approver] approve and send (not one's own)
    POST {p}/messages/{id}/reject|return    [approver] with a reason the author sees
    POST {p}/messages/{id}/cancel           [approver] send its prepared 取消/誤報
    GET  {p}/held/{id}, POST …/approve      [approver] a held broadcast: correct its districts, release it
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dispatcher.console import compose
from dispatcher.console.accounts import Role
from dispatcher.console.compose import Draft
from dispatcher.console.workflow import WorkflowError, approve, approve_held, cancel, decide, submit
from dispatcher.model import LANGUAGES
from dispatcher.store import audit
from dispatcher.store import console as store
from dispatcher.web.auth import requires, staff_of
from dispatcher.web.compose import message_number, mode, preview_values, setup_of
from dispatcher.web.context import WEB
from dispatcher.web.districtmap import district_map
from dispatcher.web.templating import page

STATE_NAMES = {
    "draft": "下書き draft",
    "submitted": "承認待ち submitted",
    "approved": "承認済み・配信中 approved",
    "sent": "配信済み sent",
    "rejected": "却下 rejected",
    "returned": "差し戻し returned",
    "cancelled": "取消済み cancelled",
    "superseded": "更新済み superseded",
}


def _title(exercise: bool, what: str) -> str:
    return f"【訓練】{what}" if exercise else what


def _names(row: Any, setup: Any) -> str:
    return compose.area_names(list(row["areas"]), setup.console.geo) or "-"


async def home(request: web.Request) -> web.StreamResponse:
    """The queue of one mode: what waits for approval (held broadcasts too), drafts, what was sent."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    async with request.app[WEB].pool.acquire() as conn:
        waiting = await store.messages(conn, exercise=exercise, states=("submitted", "approved"))
        held = await store.held_alerts(conn, exercise=exercise)
        drafts = await store.messages(conn, exercise=exercise, states=("draft", "returned", "rejected"), limit=30)
        sent = await store.messages(conn, exercise=exercise, states=("sent", "cancelled", "superseded"), limit=30)
    label = {row["id"]: _names(row, setup) for row in [*waiting, *drafts, *sent]}
    values = {
        "exercise": exercise,
        "prefix": prefix,
        "kinds": list(setup.console.messages.kinds.values()),
        "waiting": waiting,
        "held": held,
        "drafts": drafts,
        "sent": sent,
        "label": label,
        "state_names": STATE_NAMES,
    }
    return page(request, "console.html", _title(exercise, "コンソール / Staff console"), values)


async def message_page(request: web.Request) -> web.StreamResponse:
    """One message: state, words per language, where, until when, who did what, the previews, the actions."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    message_id = message_number(request)
    me = staff_of(request)
    async with request.app[WEB].pool.acquire() as conn:
        row = await store.message(conn, message_id)
        if row is None or row["exercise"] != exercise:
            raise web.HTTPNotFound(text=f"no message #{message_id} here")
        history = [e for e in await audit.entries(conn) if e["target"] == f"message:{message_id}"]
    texts = {lang: (t.get("headline", ""), t.get("text", "")) for lang, t in row["texts"].items()}
    draft = Draft(row["kind"], tuple(row["areas"]), texts, row["expires"])
    kind = setup.console.messages.kind(row["kind"])
    own = me.id in row["contributors"] or me.id == row["submitted_by"]
    retraction_texts = {}
    for key, retraction in setup.console.messages.retractions.items():
        extra = {
            "event": {lang: kind.event if kind else row["kind"] for lang in LANGUAGES},
            "headline": {lang: h for lang, (h, _t) in texts.items()},
        }
        retraction_texts[key] = compose.prefill(retraction, list(row["areas"]), setup.console.geo, **extra)
    values = {
        "exercise": exercise,
        "prefix": prefix,
        "m": row,
        "kind": kind,
        "texts": texts,
        "languages": [(lang, compose.LANGUAGE_NAMES[lang]) for lang in LANGUAGES],
        "area_names": _names(row, setup),
        "map": district_map(setup.console.geo, set(row["areas"]), label="配信先の地区"),
        "state_name": STATE_NAMES.get(row["state"], row["state"]),
        "own": own,
        "may_author": me.role.allows(Role.AUTHOR),
        "may_approve": me.role.allows(Role.APPROVER),
        "history": history,
        "retractions": setup.console.messages.retractions,
        "retraction_texts": retraction_texts,
        "expired": row["expires"] <= datetime.now(UTC),
        "error": request.query.get("error", "")[:500],
        **preview_values(setup, draft, exercise, message_id),
    }
    return page(request, "message_detail.html", _title(exercise, f"#{message_id} {row['kind']}"), values)


def _back(prefix: str, message_id: int, error: str = "") -> web.HTTPSeeOther:
    from urllib.parse import quote

    suffix = f"?error={quote(error[:400])}" if error else ""
    return web.HTTPSeeOther(f"{prefix}/messages/{message_id}{suffix}")


@requires(Role.AUTHOR)
async def submit_action(request: web.Request) -> web.StreamResponse:
    setup = setup_of(request)
    exercise, prefix = mode(request)
    message_id = message_number(request)
    try:
        await submit(setup.console, staff_of(request).actor(request), message_id, exercise=exercise)
    except WorkflowError as exc:
        raise _back(prefix, message_id, str(exc)) from None
    raise _back(prefix, message_id)


@requires(Role.APPROVER)
async def approve_action(request: web.Request) -> web.StreamResponse:
    """Approve and send: the one click after which residents' phones ring."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    message_id = message_number(request)
    try:
        await approve(setup.console, staff_of(request).actor(request), message_id, exercise=exercise)
    except WorkflowError as exc:
        raise _back(prefix, message_id, str(exc)) from None
    raise _back(prefix, message_id)


async def _decide(request: web.Request, outcome: str) -> web.StreamResponse:
    setup = setup_of(request)
    exercise, prefix = mode(request)
    message_id = message_number(request)
    form = await request.post()
    reason = form.get("reason", "")
    try:
        await decide(
            setup.console,
            staff_of(request).actor(request),
            message_id,
            exercise=exercise,
            outcome=outcome,
            reason=reason if isinstance(reason, str) else "",
        )
    except WorkflowError as exc:
        raise _back(prefix, message_id, str(exc)) from None
    raise _back(prefix, message_id)


@requires(Role.APPROVER)
async def reject_action(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "rejected")


@requires(Role.APPROVER)
async def return_action(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "returned")


@requires(Role.APPROVER)
async def cancel_action(request: web.Request) -> web.StreamResponse:
    """Send the retraction (取消 or 誤報, its words as prepared or edited) to every channel."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    message_id = message_number(request)
    form = await request.post()
    reason = str(form.get("reason", ""))
    texts = {lang: (str(form.get(f"headline_{lang}", "")), str(form.get(f"text_{lang}", ""))) for lang in LANGUAGES}
    try:
        await cancel(
            setup.console, staff_of(request).actor(request), message_id, exercise=exercise, reason=reason, texts=texts
        )
    except WorkflowError as exc:
        raise _back(prefix, message_id, str(exc)) from None
    raise _back(prefix, message_id)


def _alert_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound(text=f"no alert {raw[:40]!r}")
    return int(raw)


@requires(Role.APPROVER)
async def held_page(request: web.Request) -> web.StreamResponse:
    """A held broadcast: its text, the groups it named, the districts to correct; then approve."""
    setup = setup_of(request)
    exercise, prefix = mode(request)
    alert_id = _alert_id(request)
    async with request.app[WEB].pool.acquire() as conn:
        row = await store.held_alert(conn, alert_id)
    if row is None or (row["status"] != "actual") != exercise:
        raise web.HTTPNotFound(text=f"no held alert #{alert_id} here")
    geo = setup.console.geo
    codes = set(row["area_codes"])
    chosen = {compose.CITY} if compose.CITY_CODE in codes else {d.code for d in geo.districts if d.code in codes}
    values = {
        "exercise": exercise,
        "prefix": prefix,
        "a": row,
        "details": row["details"] or {},
        "districts": [(d.code, d.name, d.code in chosen) for d in geo.districts],
        "city": compose.CITY in chosen,
        "map": district_map(geo, chosen, label="放送された地区"),
        "error": request.query.get("error", "")[:500],
    }
    return page(request, "held.html", _title(exercise, f"保留中の放送 #{alert_id}"), values)


@requires(Role.APPROVER)
async def held_approve(request: web.Request) -> web.StreamResponse:
    setup = setup_of(request)
    exercise, prefix = mode(request)
    alert_id = _alert_id(request)
    form = await request.post()
    tokens = compose.clean_areas([v for v in form.getall("area", []) if isinstance(v, str)], setup.console.geo)
    try:
        await approve_held(setup.console, staff_of(request).actor(request), alert_id, exercise=exercise, areas=tokens)
    except WorkflowError as exc:
        from urllib.parse import quote

        raise web.HTTPSeeOther(f"{prefix}/held/{alert_id}?error={quote(str(exc)[:400])}") from None
    raise web.HTTPSeeOther(f"/alerts/{alert_id}/deliveries")


def add_routes(app: web.Application) -> None:
    """The console's routes under both prefixes (the compose form's too)."""
    from dispatcher.web import compose as form

    for p in ("/console", "/exercise"):
        app.router.add_get(p, home)
        app.router.add_get(f"{p}/new", form.new_form)
        app.router.add_post(f"{p}/new", form.new_post)
        app.router.add_post(f"{p}/preview", form.preview_json)
        app.router.add_get(f"{p}/messages/{{id}}", message_page)
        app.router.add_get(f"{p}/messages/{{id}}/edit", form.edit_form)
        app.router.add_post(f"{p}/messages/{{id}}/edit", form.edit_post)
        app.router.add_post(f"{p}/messages/{{id}}/submit", submit_action)
        app.router.add_post(f"{p}/messages/{{id}}/approve", approve_action)
        app.router.add_post(f"{p}/messages/{{id}}/reject", reject_action)
        app.router.add_post(f"{p}/messages/{{id}}/return", return_action)
        app.router.add_post(f"{p}/messages/{{id}}/cancel", cancel_action)
        app.router.add_get(f"{p}/held/{{id}}", held_page)
        app.router.add_post(f"{p}/held/{{id}}/approve", held_approve)
