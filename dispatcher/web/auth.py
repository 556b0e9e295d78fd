"""Who is asking: staff logins, server-side sessions, roles per route, and CSRF on every form.

**Sessions.** ``POST /login`` checks the password (argon2id, off the event loop) and
makes a new session (a new random token in the cookie, its SHA-256 in
``staff_sessions``; any session the browser had is ended first: no fixation). A session
ends after ``[console] session_idle_minutes`` without a request and
``session_absolute_hours`` after login, at logout, when its account's password changes
or the account is disabled. The cookie is ``HttpOnly`` and ``SameSite=Strict``; when
``[service] public_url`` is https it is also ``Secure`` and named ``__Host-…``.

**Failed logins** are answered ``login_failure_delay_seconds`` late, and counted per
account name (known or not) and per client address: at the limit the name or the
address is locked for ``login_lock_minutes`` (429), whatever password comes next.

**Routes.** Every handler needs a viewer's session unless marked: :func:`public`
(the login, residents' pages, ``/healthz``, static files; ``/hooks/*`` carry their own
signatures) or :func:`requires` a higher role. Without a session, a page answers 303 to
``/login?next=…`` and the JSON API (``/api/*``, ``/audit.csv``) 401 JSON; with too low a
role, 403.

**CSRF.** Every POST behind the login must carry the session's token (a
``csrf_token`` form field, or ``X-CSRF-Token`` for the preview script), compared in
constant time (:func:`hmac.compare_digest`); else 403. The login form has its own
token before any session exists: a random value in a ``SameSite=Strict`` cookie that
the form must repeat (double submit).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from dispatcher.console import accounts
from dispatcher.console.accounts import Actor, Role
from dispatcher.store import audit, staff
from dispatcher.web.context import WEB
from dispatcher.web.templating import page

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

_REQUIRED = "required_role"
PUBLIC_PREFIXES = ("/hooks/", "/static/")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Staff:
    """The logged-in staff member of a request."""

    id: int
    username: str
    display_name: str
    role: Role
    csrf_token: str
    session: str

    def actor(self, request: web.Request) -> Actor:
        return Actor(self.username, self.role.value, request.remote or "", self.id)


def public(handler: H) -> H:
    """Mark ``handler`` as open to anyone."""
    setattr(handler, _REQUIRED, None)
    return handler


def requires(role: Role) -> Callable[[H], H]:
    """Mark a handler as needing at least ``role`` (unmarked handlers need a viewer)."""

    def mark(handler: H) -> H:
        setattr(handler, _REQUIRED, role)
        return handler

    return mark


STAFF: web.RequestKey[Staff] = web.RequestKey("staff", Staff)


def current(request: web.Request) -> Staff | None:
    """The logged-in staff member, or None."""
    return request.get(STAFF)


def staff_of(request: web.Request) -> Staff:
    """The logged-in staff member of a handler behind the login."""
    found = current(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    return found


def cookie_name(request: web.Request, name: str) -> str:
    return f"__Host-{name}" if request.app[WEB].secure_cookies else name


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        cookie_name(request, name),
        value,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.app[WEB].secure_cookies,
    )


def _clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    response.del_cookie(cookie_name(request, name), path="/")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _wants_json(request: web.Request) -> bool:
    return (
        request.path.startswith("/api/")
        or request.path == "/audit.csv"
        or request.path.endswith("/preview")
        or "application/json" in request.headers.get("Accept", "")
    )


def _requirement(request: web.Request) -> Role | None:
    if request.match_info.http_exception is not None or request.path.startswith(PUBLIC_PREFIXES):
        return None  # no such route (its 404 says nothing), or a route guarded otherwise
    return getattr(request.match_info.handler, _REQUIRED, Role.VIEWER)


async def _session(request: web.Request) -> Staff | None:
    token = request.cookies.get(cookie_name(request, "session"))
    if not token or len(token) > 100:
        return None
    ctx = request.app[WEB]
    cfg = ctx.accounts
    async with ctx.pool.acquire() as conn:
        row = await staff.touch_session(
            conn,
            _digest(token),
            idle_seconds=cfg.session_idle_minutes * 60,
            absolute_seconds=cfg.session_absolute_hours * 3600,
        )
    if row is None:
        return None
    return Staff(row["id"], row["username"], row["display_name"], Role(row["role"]), row["csrf_token"], _digest(token))


async def _csrf_ok(request: web.Request, expected: str) -> bool:
    given = request.headers.get("X-CSRF-Token", "")
    if not given and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf_token", "")
        given = value if isinstance(value, str) else ""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def forbidden(request: web.Request, why: str, status: int = 403) -> web.Response:
    if _wants_json(request):
        return web.json_response(
            {"error": "forbidden" if status == 403 else "unauthenticated", "reason": why}, status=status
        )
    response = page(request, "message.html", "許可されていません / Not allowed", {"text": why, "back": "/console"})
    response.set_status(status)
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring: a session for every route but the public ones, the role, the CSRF token."""
    needed = _requirement(request)
    if needed is None:
        return await handler(request)
    found = await _session(request)
    if found is None:
        if _wants_json(request):
            return web.json_response({"error": "unauthenticated", "login": "/login"}, status=401)
        target = request.path_qs if request.method == "GET" else "/console"
        raise web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")
    request[STAFF] = found
    if not found.role.allows(needed):
        return forbidden(request, f"this needs the {needed.value} role; you are {found.role.value}")
    if request.method in UNSAFE and not await _csrf_ok(request, found.csrf_token):
        log.warning("request without a valid CSRF token refused", extra={"path": request.path, "staff": found.username})
        return forbidden(request, "the form's csrf_token is missing or wrong: reload the page and try again")
    return await handler(request)


async def session_alive(request: web.Request) -> bool:
    """Whether the request's session is still live (for a long-lived answer: the dashboard's stream);
    a logout, a disabled account, a password change or a timeout ends it."""
    return await _session(request) is not None


def _next(value: str) -> str:
    """Where to go after login: a path of ours only (no //host, no scheme)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value and len(value) < 2000:
        return value
    return "/console"


def _login_page(request: web.Request, *, error: str = "", status: int = 200, next_url: str = "") -> web.Response:
    token = secrets.token_urlsafe(32)
    values = {"login_token": token, "error": error, "next": next_url or request.query.get("next", "")}
    response = page(request, "login.html", "ログイン / Staff login", values)
    response.set_status(status)
    _set_cookie(response, request, "login_csrf", token)
    return response


@public
async def login_form(request: web.Request) -> web.StreamResponse:
    """``GET /login``: the form (username, password, csrf_token), also to someone logged in (to switch)."""
    return _login_page(request)


@public
async def login(request: web.Request) -> web.StreamResponse:
    """``POST /login``: 303 to where the person was going, or the form again with why not."""
    ctx = request.app[WEB]
    cfg = ctx.accounts
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    next_url = _next(str(form.get("next", "")))
    token = request.cookies.get(cookie_name(request, "login_csrf"), "")
    given = str(form.get("csrf_token", ""))
    if not token or not given or not hmac.compare_digest(token.encode(), given.encode()):
        return forbidden(request, "the login form's csrf_token is missing or wrong: open /login again")
    address = request.remote or ""
    keys = [f"user:{username}", f"address:{address}"]
    async with ctx.pool.acquire() as conn:
        locked = await staff.locked_until(conn, keys)
        row = await staff.staff_by_name(conn, username) if locked is None and username else None
    if locked is not None:
        async with ctx.pool.acquire() as conn:
            await audit.append(
                conn,
                actor=username or "-",
                action="login.locked",
                target=f"user:{username}",
                address=address,
                after={"locked_until": locked},
            )
        await asyncio.sleep(cfg.login_failure_delay_seconds)
        return _login_page(
            request,
            status=429,
            next_url=next_url,
            error="ログインが一時的にロックされています。しばらくしてからもう一度。"
            " Too many failed logins: locked for now, try again later.",
        )
    ok = await accounts.verify_password(row["password_hash"] if row is not None else None, password)
    if not ok or row is None or not row["active"]:
        reason = "unknown account" if row is None else "wrong password" if not ok else "account disabled"
        async with ctx.pool.acquire() as conn, conn.transaction():
            lock_s = cfg.login_lock_minutes * 60
            for key, limit in ((keys[0], cfg.login_failures_per_account), (keys[1], cfg.login_failures_per_address)):
                await staff.record_failure(conn, key, limit=limit, window_seconds=lock_s, lock_seconds=lock_s)
            await audit.append(
                conn,
                actor=username or "-",
                action="login.failed",
                target=f"user:{username}",
                address=address,
                after={"reason": reason},
            )
        await asyncio.sleep(cfg.login_failure_delay_seconds)
        return _login_page(
            request,
            status=401,
            next_url=next_url,
            error="ユーザー名またはパスワードが違います。 Wrong username or password.",
        )
    if accounts.needs_rehash(row["password_hash"]):
        new_hash = await accounts.hash_password(password)
    else:
        new_hash = None
    session_token = secrets.token_urlsafe(32)
    old = request.cookies.get(cookie_name(request, "session"))
    async with ctx.pool.acquire() as conn, conn.transaction():
        if old:
            await staff.revoke_session(conn, _digest(old))
        if new_hash is not None:
            await staff.set_password(conn, row["id"], new_hash)
        await staff.clear_failures(conn, keys[0])
        await staff.create_session(
            conn,
            _digest(session_token),
            row["id"],
            csrf_token=secrets.token_urlsafe(32),
            address=address,
            user_agent=request.headers.get("User-Agent", ""),
        )
        await audit.append(
            conn, actor=row["username"], role=row["role"], action="login", target=f"user:{username}", address=address
        )
    response = web.HTTPSeeOther(next_url)
    _set_cookie(response, request, "session", session_token)
    _clear_cookie(response, request, "login_csrf")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: the session ends (its row is revoked) and the cookie goes."""
    me = staff_of(request)
    async with request.app[WEB].pool.acquire() as conn, conn.transaction():
        await staff.revoke_session(conn, me.session)
        await audit.append(
            conn,
            actor=me.username,
            role=me.role.value,
            action="logout",
            target=f"user:{me.username}",
            address=request.remote or "",
        )
    response = web.HTTPSeeOther("/login")
    _clear_cookie(response, request, "session")
    raise response


def install(app: web.Application) -> None:
    """Put the login in front of every route (after the hygiene guard)."""
    app.middlewares.append(authenticate)


__all__: list[Any] = ["Staff", "current", "install", "login", "login_form", "logout", "public", "requires"]
