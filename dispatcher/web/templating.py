"""The pages' template engine and stylesheet: Jinja2 through aiohttp-jinja2, autoescaped.

Templates live in ``dispatcher/web/templates/`` (https://jinja.palletsprojects.com/en/3.1.x/templates/),
each extending ``base.html`` (a header that leads home, the page, a footer); they are
rendered with :func:`page` (https://aiohttp-jinja2.readthedocs.io/). Autoescaping is on
for every template, and an undefined name is an error, not an empty string.

Every value printed goes through :func:`html.escape` first (:func:`_escape`, Jinja's
``finalize``), so pages spell an escaped quote ``&#x27;`` as they did before templates,
and markupsafe, seeing Markup, does not escape it twice; ``None`` prints as nothing.

The stylesheet is ``static/style.css``, served at ``/style.css`` as a file: with
``ETag`` and ``Last-Modified`` (a revalidation is a 304) and an hour of caching; the
console's script is ``static/console.js`` at ``/static/console.js`` and the live
dashboard's ``static/dashboard.js``, served the same way.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from dispatcher.privacy import mask
from dispatcher.status import JST, describe_pause
from dispatcher.web.context import WEB

STATIC = Path(__file__).parent / "static"
STYLESHEET = STATIC / "style.css"
CSS_HEADERS = {"Cache-Control": "public, max-age=3600", "Content-Type": "text/css; charset=utf-8"}
# The files under /static/: our own scripts only (the CSP allows scripts from 'self', none inline).
STATIC_FILES = {"console.js": "text/javascript; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}


def _escape(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value)))  # noqa: S704 (escaped on this line)


def _jst(value: datetime | str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time (or its ISO 8601 text) in JST by ``fmt``."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone(JST).strftime(fmt)


def _jst_ms(value: datetime) -> str:
    """A time in JST to the millisecond: ``2026-11-29 20:15:00.123``."""
    return value.astimezone(JST).isoformat(sep=" ", timespec="milliseconds")[:23]


def setup(app: web.Application) -> None:
    """Give ``app`` the template environment."""
    filters: dict[str, Callable[..., str]] = {
        "jst": _jst,
        "jst_ms": _jst_ms,
        "mask": mask,
        "describe_pause": describe_pause,
    }
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("dispatcher.web", "templates"),
        autoescape=True,
        finalize=_escape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
        filters=filters,
    )


def page(request: web.Request, template: str, title: str, values: Mapping[str, Any]) -> web.Response:
    """``template`` rendered with ``values``, the page ``title`` and the site's name."""
    # The logged-in staff member (dispatcher.web.auth) and their form token, for the header's
    # logout button and every form; ``exercise`` colours the page as the exercise console.
    from dispatcher.web.auth import current  # auth renders pages too: imported when first used

    staff = current(request)
    context = {
        "site_name": request.app[WEB].site_name,
        "title": title,
        "refresh": None,
        "staff": staff,
        "csrf_token": getattr(staff, "csrf_token", ""),
        "exercise": False,
        **values,
    }
    return aiohttp_jinja2.render_template(template, request, context)


async def stylesheet(_request: web.Request) -> web.StreamResponse:
    """The pages' CSS, from our own origin: the CSP allows no inline style."""
    return web.FileResponse(STYLESHEET, headers=CSS_HEADERS)


async def static_file(request: web.Request) -> web.StreamResponse:
    """``/static/{name}``: one of :data:`STATIC_FILES`, with validators and an hour of caching."""
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text="no such file")
    return web.FileResponse(
        STATIC / name, headers={"Cache-Control": "public, max-age=3600", "Content-Type": content_type}
    )


async def favicon(_request: web.Request) -> web.StreamResponse:
    """``/favicon.ico``: nothing (204), rather than a 404 in every browser's console."""
    return web.Response(status=204, headers={"Cache-Control": "public, max-age=86400"})
