"""E-mail subscriptions from the public site: double opt-in, a page of one's own, one-click unsubscribe.

Routes:
    GET  /subscribe[?lang=en]      the form: e-mail, areas (the city or districts), language, level
    POST /subscribe                asks for a confirmation (rate limited per address and per client)
    GET  /subscribe/confirm?t=     the confirmation link: the subscription starts
    GET  /subscription?t=          a subscriber's own page: places, language, level (no account)
    POST /subscription?t=          saves it
    GET  /unsubscribe?t=           a page with one button (a GET never unsubscribes: link scanners follow links)
    POST /unsubscribe?t=           unsubscribes: the button, or a mail client's RFC 8058 one-click POST

The forms carry a signed double-submit CSRF token (:mod:`dispatcher.publication.tokens`);
the one-click POST carries none, by design (RFC 8058 §3.2: no cookies, no page), and is
authorised by its signed link alone. Whether an address is subscribed is never told:
every request gets the same answer, and only the mailbox's owner learns more.
"""

# ruff: noqa: E501 (the form's words, one message a line)
from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from channels.base import Delivered
from channels.email import text_to_html
from dispatcher.privacy import mask
from dispatcher.publication import text as T
from dispatcher.publication.render import render
from dispatcher.publication.tokens import CSRF_COOKIE, confirmation_token, token_hash
from dispatcher.publication.wiring import Publication
from dispatcher.store import optins
from dispatcher.web.context import WEB

log = logging.getLogger(__name__)
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
HOUR = 3600.0

FORM = {
    "ja": {
        "title": "メールで防災情報を受け取る", "email": "メールアドレス", "areas": "受け取る地域（複数選べます）",
        "language": "言語", "level": "受け取る情報", "submit": "確認メールを送る", "save": "保存する",
        "unsubscribe": "配信を停止する", "manage": "配信の設定",
        "privacy": "メールアドレスは防災情報の配信のためだけに使います。確認のリンクを開くまで、何も配信しません。",
        "all": "すべて（注意報を含む）", "l3": "警戒レベル3以上", "l4": "警戒レベル4以上", "l5": "警戒レベル5のみ",
        "sent": "確認のメールを送りました。メールのリンクを開くと、登録が完了します（{hours}時間有効）。",
        "confirmed": "登録しました。これから選んだ地域の防災情報をメールでお届けします。",
        "expired": "このリンクは無効か、有効期限が切れています。もう一度お申し込みください。",
        "saved": "設定を保存しました。", "stopped": "配信を停止しました。", "stop_q": "防災情報メールの配信を停止しますか。",
        "bad_email": "メールアドレスを正しく入力してください。", "bad_area": "地域を1つ以上選んでください。",
        "busy": "申し込みが多すぎます。しばらくしてからもう一度お試しください。", "csrf": "フォームの有効期限が切れました。もう一度送信してください。",
        "mail_subject": "【沼津市 防災情報】メール配信の確認", "mail_body": "沼津市 防災情報のメール配信へのお申し込みを受け付けました。\n次のリンクを開くと登録が完了します（{hours}時間有効）。\n\n{link}\n\nお心当たりのない場合は、このメールを破棄してください。何も配信されません。",
        "unavailable": "現在メール配信を受け付けていません。",
    },
    "en": {
        "title": "Get disaster alerts by e-mail", "email": "E-mail address", "areas": "Areas (choose one or more)",
        "language": "Language", "level": "Which alerts", "submit": "Send the confirmation mail", "save": "Save",
        "unsubscribe": "Unsubscribe", "manage": "Your alert settings",
        "privacy": "Your address is used only to send disaster alerts. Nothing is sent until you open the confirmation link.",
        "all": "All (advisories too)", "l3": "Level 3 and above", "l4": "Level 4 and above", "l5": "Level 5 only",
        "sent": "We sent you a confirmation mail. Open its link to start receiving alerts (valid {hours} hours).",
        "confirmed": "You are subscribed. Alerts for the areas you chose will come by e-mail.",
        "expired": "This link is invalid or has expired. Please subscribe again.",
        "saved": "Your settings are saved.", "stopped": "You are unsubscribed.", "stop_q": "Stop the disaster alert e-mails?",
        "bad_email": "Please enter a valid e-mail address.", "bad_area": "Please choose at least one area.",
        "busy": "Too many requests. Please try again later.", "csrf": "The form expired. Please send it again.",
        "mail_subject": "[Numazu alerts] Please confirm your subscription", "mail_body": "We received a request to send Numazu City's disaster alerts to this address.\nOpen this link to confirm (valid {hours} hours):\n\n{link}\n\nIf you did not ask for this, ignore this mail: nothing will be sent.",
        "unavailable": "E-mail subscriptions are not available now.",
    },
}  # fmt: skip
FORM["ja-easy"] = FORM["ja"]


def _t(lang: str) -> dict[str, str]:
    return FORM.get(lang, FORM["ja"])


def _lang(value: str | None) -> str:
    return value if value in T.LANGUAGES else "ja"


def _pub(request: web.Request) -> Publication:
    pub = request.app[WEB].publication
    if pub is None:
        raise web.HTTPNotFound(text="the public site is not enabled")
    return pub


def _page(template: str, lang: str, title: str, status: int = 200, **values: Any) -> web.Response:
    body = render(template, lang, title, "subscribe", **values)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _message(lang: str, message: str, status: int = 200, link: dict[str, str] | None = None) -> web.Response:
    return _page("site_message.html", lang, _t(lang)["title"], status, message=message, button=None, link=link)


def _levels(lang: str) -> list[tuple[str, str]]:
    t = _t(lang)
    return [("", t["all"]), ("3", t["l3"]), ("4", t["l4"]), ("5", t["l5"])]


def _form(request: web.Request, pub: Publication, lang: str, **values: Any) -> web.Response:
    cookie, field = pub.links.csrf_pair(request.cookies.get(CSRF_COOKIE))
    t = _t(lang)
    defaults: dict[str, Any] = {
        "t": t, "intro": "", "errors": [], "ask_email": True, "email": "", "chosen": [], "language": lang,
        "level": "", "action": "/subscribe", "unsubscribe": None,
    }  # fmt: skip
    defaults.update(values)
    response = _page(
        "site_form.html", lang, defaults.pop("title", t["title"]), defaults.pop("status", 200), csrf=field,
        areas=list(pub.areas.items()), language_choices=[(c, T.NAMES[c]) for c in T.LANGUAGES], levels=_levels(lang),
        **defaults,
    )  # fmt: skip
    secure = pub.public_url.startswith("https://")
    response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="Strict", secure=secure, max_age=7200, path="/")
    return response


def _too_many(pub: Publication, client: str) -> bool:
    now = time.monotonic()
    seen = [t for t in pub.recent_requests.get(client, []) if now - t < HOUR]
    if len(pub.recent_requests) > 10000:  # bounded memory under a flood
        pub.recent_requests.clear()
    pub.recent_requests[client] = [*seen, now]
    return len(seen) >= pub.config.requests_per_client


async def _choices(pub: Publication, form: Any, lang: str) -> tuple[list[str], str, int | None, list[str]]:
    t = _t(lang)
    errors = []
    areas = [c for c in (pub.area_code(str(a)) for a in form.getall("area", [])) if c]
    if not areas:
        errors.append(t["bad_area"])
    language = _lang(form.get("language"))
    level_raw = str(form.get("level", ""))
    level = int(level_raw) if level_raw in ("3", "4", "5") else None
    return list(dict.fromkeys(areas)), language, level, errors


def _csrf_ok(request: web.Request, pub: Publication, form: Any) -> bool:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and not (pub.public_url.startswith(origin) or origin.endswith("//" + request.host)):
        return False
    return pub.links.csrf_ok(request.cookies.get(CSRF_COOKIE), form.get("csrf"))


async def subscribe_form(request: web.Request) -> web.Response:
    return _form(request, _pub(request), _lang(request.query.get("lang")))


async def subscribe(request: web.Request) -> web.Response:
    pub = _pub(request)
    form = await request.post()
    lang = _lang(str(form.get("language", "")) or request.query.get("lang"))
    t = _t(lang)
    if not _csrf_ok(request, pub, form):
        return _form(request, pub, lang, errors=[t["csrf"]], status=403)
    email = str(form.get("email", "")).strip()
    areas, language, level, errors = await _choices(pub, form, lang)
    if not _EMAIL.match(email) or len(email) > 254:
        errors.insert(0, t["bad_email"])
    if errors:
        return _form(request, pub, lang, errors=errors, email=email, chosen=areas, status=400)
    if pub.mailer is None:
        return _message(lang, t["unavailable"], 503)
    if _too_many(pub, request.remote or "?"):
        return _message(lang, t["busy"], 429)
    token, digest = confirmation_token()
    ttl = pub.config.confirm_hours * HOUR
    async with request.app[WEB].pool.acquire() as conn:
        if await optins.requests_within(conn, email, HOUR) >= pub.config.requests_per_address:
            log.info("subscription request over the per-address limit", extra={"address": mask(email)})
            return _message(lang, t["busy"], 429)
        optin_id = await optins.request(
            conn, address=email, areas=areas, language=language, min_level=level, token_hash=digest, ttl_seconds=ttl
        )
    hours = f"{pub.config.confirm_hours:g}"
    link = f"{pub.public_url}/subscribe/confirm?t={token}"
    mt = _t(language)
    mail = EmailMessage()
    mail["From"] = pub.sender
    mail["To"] = email
    mail["Subject"] = mt["mail_subject"]
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Auto-Submitted"] = "auto-generated"
    body = mt["mail_body"].format(hours=hours, link=link)
    mail.set_content(body, charset="utf-8")
    mail.add_alternative(text_to_html(body, language, mt["mail_subject"]), subtype="html", charset="utf-8")
    result = await pub.mailer.send_mail(mail, email)
    async with request.app[WEB].pool.acquire() as conn:
        await optins.mail_outcome(conn, optin_id, "sent" if isinstance(result, Delivered) else str(result))
    log.info("subscription confirmation sent", extra={"address": mask(email), "outcome": type(result).__name__})
    return _message(lang, t["sent"].format(hours=hours), 202)


async def confirm(request: web.Request) -> web.Response:
    pub = _pub(request)
    lang = _lang(request.query.get("lang"))
    token = request.query.get("t", "")
    async with request.app[WEB].pool.acquire() as conn:
        sid = await optins.confirm(conn, token_hash(token)) if 20 <= len(token) <= 100 else None
        row = await optins.subscription(conn, sid) if sid is not None else None
    if sid is None or row is None:
        return _message(lang, _t(lang)["expired"], 410)
    lang = _lang(row["language"])
    link = {"href": pub.links.manage_url(sid), "label": _t(lang)["manage"]}
    return _message(lang, _t(lang)["confirmed"], link=link)


def _subscription_id(request: web.Request, purpose: str) -> int:
    sid = _pub(request).links.subscription_of(request.query.get("t", "")[:200], purpose)
    if sid is None:
        raise web.HTTPNotFound(text="this link is not valid")
    return sid


async def manage_form(request: web.Request) -> web.Response:
    pub = _pub(request)
    sid = _subscription_id(request, "manage")
    async with request.app[WEB].pool.acquire() as conn:
        row = await optins.subscription(conn, sid)
    if row is None:
        raise web.HTTPNotFound(text="this link is not valid")
    return _manage(request, pub, sid, row, [])


def _manage(
    request: web.Request, pub: Publication, sid: int, row: Any, errors: list[str], status: int = 200
) -> web.Response:
    lang = _lang(row["language"])
    t = _t(lang)
    chosen = [a for a in row["areas"] if a not in set(row["located_areas"] or ())]
    return _form(
        request, pub, lang, title=t["manage"], errors=errors, ask_email=False, email=mask(row["address"]),
        chosen=chosen, language=row["language"], level=str(row["min_level"] or ""), status=status,
        action=f"/subscription?t={pub.links.manage_token(sid)}", unsubscribe=pub.links.unsubscribe_url(sid),
    )  # fmt: skip


async def manage(request: web.Request) -> web.Response:
    pub = _pub(request)
    sid = _subscription_id(request, "manage")
    form = await request.post()
    async with request.app[WEB].pool.acquire() as conn:
        row = await optins.subscription(conn, sid)
        if row is None:
            raise web.HTTPNotFound(text="this link is not valid")
        lang = _lang(row["language"])
        if not _csrf_ok(request, pub, form):
            return _manage(request, pub, sid, row, [_t(lang)["csrf"]], 403)
        areas, language, level, errors = await _choices(pub, form, lang)
        if errors:
            return _manage(request, pub, sid, row, errors, 400)
        await optins.change(conn, sid, areas=areas, language=language, min_level=level)
    return _message(
        language, _t(language)["saved"], link={"href": pub.links.manage_url(sid), "label": _t(language)["manage"]}
    )


async def unsubscribe_page(request: web.Request) -> web.Response:
    _subscription_id(request, "unsubscribe")
    lang = _lang(request.query.get("lang"))
    t = _t(lang)
    button = {"action": f"/unsubscribe?t={request.query.get('t', '')}", "label": t["unsubscribe"]}
    return _page("site_message.html", lang, t["unsubscribe"], message=t["stop_q"], button=button, link=None)


async def unsubscribe(request: web.Request) -> web.Response:
    """RFC 8058's one-click POST (body ``List-Unsubscribe=One-Click``) or the page's button."""
    sid = _subscription_id(request, "unsubscribe")
    await request.post()
    async with request.app[WEB].pool.acquire() as conn:
        row = await optins.subscription(conn, sid)
        if row is None:
            raise web.HTTPNotFound(text="this link is not valid")
        changed = await optins.unsubscribe(conn, sid, "unsubscribed by the subscriber (one-click link)")
    log.info("e-mail subscription ended by its link", extra={"subscription_id": sid, "was_active": changed})
    lang = _lang(row["language"])
    return _message(lang, _t(lang)["stopped"])


def routes() -> list[web.RouteDef]:
    return [
        web.get("/subscribe", subscribe_form),
        web.post("/subscribe", subscribe),
        web.get("/subscribe/confirm", confirm),
        web.get("/subscription", manage_form),
        web.post("/subscription", manage),
        web.get("/unsubscribe", unsubscribe_page),
        web.post("/unsubscribe", unsubscribe),
    ]
