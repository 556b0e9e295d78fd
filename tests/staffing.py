"""Staff for tests: an account, and an HTTP client logged in with it through the real ``/login``.

The operator pages need a login since the staff console ([console]); tests that read
them log in first with :func:`staff_session`, exactly as a person would (the login
form's token, the session cookie).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import aiohttp

from dispatcher.console import accounts
from dispatcher.console.accounts import Actor, Role
from dispatcher.store import db

PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def create_staff(dsn: str, username: str, role: Role | str = Role.VIEWER, password: str = PASSWORD) -> None:
    """An account (no-op when it exists)."""
    conn = await db.connect(dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM staff WHERE username = $1", username) is None:
            await accounts.add_user(conn, Actor("test-setup", "cli", "test"), username, Role(role), password)
    finally:
        await conn.close()


def csrf_token(html: str) -> str:
    """The first form token on a page."""
    found = TOKEN.search(html)
    assert found is not None, "no csrf_token on the page"
    return found.group(1)


async def log_in(
    http: aiohttp.ClientSession, base: str, username: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    """Submit the login form as a browser would; the answer (a 303 when it worked), not followed."""
    async with http.get(f"{base}/login") as form:
        token = csrf_token(await form.text())
    fields = {"username": username, "password": password, "csrf_token": token, "next": "/"}
    async with http.post(f"{base}/login", data=fields, allow_redirects=False) as answer:
        await answer.read()
        return answer


@contextlib.asynccontextmanager
async def staff_session(
    base: str, dsn: str, username: str = "operator", role: Role | str = Role.VIEWER
) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client logged in as ``username`` (created with ``role`` if missing)."""
    await create_staff(dsn, username, role)
    # The daemon listens on 127.0.0.1: aiohttp keeps cookies of IP hosts only when told to.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        answer = await log_in(http, base, username)
        assert answer.status == 303, f"login failed: {answer.status}"
        yield http


async def page_token(http: aiohttp.ClientSession, url: str) -> str:
    """The csrf_token of the page at ``url`` (the session's)."""
    async with http.get(url) as resp:
        return csrf_token(await resp.text())
