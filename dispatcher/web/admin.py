"""Admins' pages: staff accounts and the audit log; approvers' channel pause and resume.

    GET  /staff                       [admin]    every account; forms to add one, change a role, set a
    POST /staff, /staff/{name}/role|passwd|disable|enable                  password, disable or enable
    GET  /audit                       [admin]    the latest entries of the audit log
    GET  /audit.csv?since=ISO         [admin]    the whole log (or since then) as CSV
    POST /channels/{name}/pause|resume [approver] what ``dispatcher channel pause|resume`` does, audited

Account changes go through :mod:`dispatcher.console.accounts`, as the CLI's do, so both
write the same audit entries.
"""

from __future__ import annotations

import math
from datetime import datetime
from urllib.parse import quote

from aiohttp import web

from dispatcher.console import accounts
from dispatcher.console.accounts import AccountError, Role
from dispatcher.console.auditlog import JST, csv_text
from dispatcher.store import audit, outbox, staff
from dispatcher.web.auth import requires, staff_of
from dispatcher.web.context import WEB
from dispatcher.web.templating import page


def _back(path: str, *, error: str = "", note: str = "") -> web.HTTPSeeOther:
    if error:
        return web.HTTPSeeOther(f"{path}?error={quote(error[:400])}")
    return web.HTTPSeeOther(f"{path}?note={quote(note[:400])}" if note else path)


@requires(Role.ADMIN)
async def staff_page(request: web.Request) -> web.StreamResponse:
    async with request.app[WEB].pool.acquire() as conn:
        rows = await staff.list_staff(conn)
    values = {
        "rows": rows,
        "roles": [r.value for r in Role],
        "error": request.query.get("error", "")[:400],
        "note": request.query.get("note", "")[:400],
    }
    return page(request, "staff.html", "職員アカウント / Staff accounts", values)


@requires(Role.ADMIN)
async def staff_add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name, role = str(form.get("username", "")).strip().lower(), str(form.get("role", ""))
    password, again = str(form.get("password", "")), str(form.get("password2", ""))
    try:
        if role not in {r.value for r in Role}:
            raise AccountError(f"unknown role {role!r}")
        if password != again:
            raise AccountError("the two passwords differ")
        async with request.app[WEB].pool.acquire() as conn:
            actor = staff_of(request).actor(request)
            await accounts.add_user(conn, actor, name, Role(role), password, str(form.get("display_name", "")))
    except AccountError as exc:
        raise _back("/staff", error=str(exc)) from None
    raise _back("/staff", note=f"account {name} ({role}) added")


@requires(Role.ADMIN)
async def staff_change(request: web.Request) -> web.StreamResponse:
    name, what = request.match_info["name"], request.match_info["what"]
    form = await request.post()
    actor = staff_of(request).actor(request)
    try:
        async with request.app[WEB].pool.acquire() as conn:
            if what == "role":
                role = str(form.get("role", ""))
                if role not in {r.value for r in Role}:
                    raise AccountError(f"unknown role {role!r}")
                await accounts.set_role(conn, actor, name, Role(role))
            elif what == "passwd":
                if str(form.get("password", "")) != str(form.get("password2", "")):
                    raise AccountError("the two passwords differ")
                await accounts.set_password(conn, actor, name, str(form.get("password", "")))
            elif what in ("disable", "enable"):
                await accounts.set_active(conn, actor, name, what == "enable")
            else:
                raise web.HTTPNotFound(text="no such change")
    except AccountError as exc:
        raise _back("/staff", error=str(exc)) from None
    raise _back("/staff", note=f"{name}: {what} done")


def _since(request: web.Request) -> datetime | None:
    raw = request.query.get("since", "")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="since must be an ISO 8601 time, e.g. 2026-06-01T00:00+09:00") from None
    return when if when.tzinfo else when.replace(tzinfo=JST)


@requires(Role.ADMIN)
async def audit_page(request: web.Request) -> web.StreamResponse:
    async with request.app[WEB].pool.acquire() as conn:
        rows = await audit.entries(conn, since=_since(request), limit=300, newest_first=True)
    return page(request, "audit.html", "監査ログ / Audit log", {"rows": rows})


@requires(Role.ADMIN)
async def audit_csv(request: web.Request) -> web.StreamResponse:
    async with request.app[WEB].pool.acquire() as conn:
        rows = await audit.entries(conn, since=_since(request))
    return web.Response(
        text=csv_text(rows),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@requires(Role.APPROVER)
async def channel_action(request: web.Request) -> web.StreamResponse:
    """Pause or resume a channel from the dashboard, as ``dispatcher channel`` does (every daemon follows)."""
    name, what = request.match_info["name"], request.match_info["what"]
    ctx = request.app[WEB]
    if name not in ctx.known_channels or what not in ("pause", "resume"):
        raise web.HTTPNotFound(text="no such channel or action")
    form = await request.post()
    reason = str(form.get("reason", ""))[:500]
    raw = str(form.get("minutes", "")).strip()
    minutes = None
    if what == "pause" and raw:
        try:
            minutes = float(raw)
        except ValueError:
            minutes = -1.0
        if not 0 < minutes < math.inf:
            raise web.HTTPBadRequest(text="minutes must be a positive number")
    me = staff_of(request)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if what == "pause":
            await outbox.hold_channel(
                conn, name, seconds=minutes * 60 if minutes else None, by=me.username, reason=reason
            )
        else:
            await outbox.resume_channel(conn, name, by=me.username, reason=reason)
        await audit.append(
            conn,
            actor=me.username,
            role=me.role.value,
            action=f"channel.{what}",
            target=f"channel:{name}",
            address=request.remote or "",
            after={"reason": reason, "minutes": minutes},
        )
    raise web.HTTPSeeOther("/")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/staff", staff_page)
    app.router.add_post("/staff", staff_add)
    app.router.add_post("/staff/{name}/{what}", staff_change)
    app.router.add_get("/audit", audit_page)
    app.router.add_get("/audit.csv", audit_csv)
    app.router.add_post("/channels/{name}/{what}", channel_action)
