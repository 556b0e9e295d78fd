"""What every request to the web server and every answer from it go through.

**Errors.** A path parameter that cannot be an id (longer than 200 characters, a NUL or
another control character) is a 404 before any handler runs. A handler's unexpected
exception is logged once (method, path, traceback) and answered with a plain
``500 Internal Server Error`` that shows nothing of it; a database that cannot be
reached (asyncpg connection errors, OSError, timeouts: :data:`dispatcher.store.db.DB_ERRORS`)
is a ``503`` JSON ``{"status": "error", "error": "unavailable", …}``, the webhook's
documented answer. Validation in the handlers makes both unreachable by a caller's
mistake; this is the net under it.

**Slow and greedy clients.** aiohttp has no header read timeout of its own, but its
keep-alive timer runs from the moment a connection is made and from each answer, and
closes a connection still waiting for a request: :func:`server_options` sets it to
``[web] header_timeout_seconds``, so a client trickling its headers (or idling) is
disconnected after that long. A request body must have arrived in full
``[web] body_timeout_seconds`` after the headers, else the reading handler gets
:class:`BodyTimeout` and the client a ``408`` and a closed connection. An answer given
before the body was read to its end (a ``413``, a ``401``) closes the connection, and
``lingering_time = 0`` keeps aiohttp from reading and discarding the rest first (it
would read for up to 10 s, i.e. all of a 50 MB body on a fast link).

**Malformed requests.** aiohttp answers a request it cannot parse (a request line over
8 KB, a broken header) with a 400 itself, and logs it at ERROR with a traceback; it is
the client's mistake, so :class:`_ClientErrorsInOneLine` makes it one WARNING line.

**Headers on every answer.** A Content-Security-Policy that allows nothing but the
stylesheet from ``/style.css`` and scripts of our own origin (the console's
``/static/console.js``, which may fetch its previews from us: ``connect-src 'self'``;
no inline script or style, no frames, no foreign form targets),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
``X-Frame-Options: DENY`` (what CSP's ``frame-ancestors`` says, for older browsers),
``Cache-Control: no-store`` except on the public pages (``no-cache``: always
revalidated, as an alert can be cancelled), and ``Server`` without a version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dispatcher.limits import name_problem
from dispatcher.store.db import DB_ERRORS
from dispatcher.web.config import WebConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVER = "numazu-dispatcher"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)
PUBLIC_HANDLERS: web.AppKey[frozenset[Any]] = web.AppKey("public_handlers", frozenset)


class BodyTimeout(Exception):
    """The request body did not arrive in time; raised to whoever reads it."""


def server_options(config: WebConfig) -> dict[str, Any]:
    """Keyword arguments for :class:`aiohttp.web.AppRunner` (passed on to each connection)."""
    return {"keepalive_timeout": config.header_timeout_seconds, "lingering_time": 0}


class _ClientErrorsInOneLine(logging.Filter):
    """aiohttp's "Error handling request" for a request it could not parse: one WARNING, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "bad HTTP request from %s: %s", (peer, str(exc.message)[:200])
            record.exc_info = record.exc_text = None
        return True


def install(app: web.Application, *, body_timeout: float, public: Collection[Handler] = ()) -> None:
    """Put the guard first among ``app``'s middlewares and the headers on every answer.

    ``public``: handlers of pages residents open (cached with revalidation, not ``no-store``).
    """
    app[BODY_TIMEOUT] = body_timeout
    app[PUBLIC_HANDLERS] = frozenset(public)
    app.middlewares.insert(0, guard)
    app.on_response_prepare.append(_headers)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientErrorsInOneLine) for f in server_log.filters):
        server_log.addFilter(_ClientErrorsInOneLine())


def _expire(request: web.Request) -> None:
    if not request.content.is_eof():
        request.content.set_exception(BodyTimeout())


def _close_if_unread(request: web.Request, response: web.StreamResponse) -> None:
    # Keep-alive would mean reading the rest of the body first: refuse to.
    if request.body_exists and not request.content.is_eof():
        response.force_close()


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring: ids checked, body deadline, every failure a clean answer."""
    timer = None
    if request.body_exists and not request.content.is_eof():
        timer = asyncio.get_running_loop().call_later(request.app[BODY_TIMEOUT], _expire, request)
    try:
        for key, value in request.match_info.items():
            wrong = name_problem(value, key)
            if wrong is not None:
                raise web.HTTPNotFound(text=f"no such page: {wrong}")
        response = await handler(request)
    except web.HTTPException as exc:  # an answer (404, 413…), not a failure
        _close_if_unread(request, exc)
        raise
    except BodyTimeout:
        log.warning("request body too slow; connection closed", extra=_where(request))
        response = web.Response(status=408, text="408 Request Timeout: the body did not arrive in time")
        response.force_close()
    except ConnectionResetError:
        raise  # the client went away: nobody to answer
    except DB_ERRORS as exc:
        log.warning("database unavailable for a request", extra={**_where(request), "error": str(exc)})
        response = web.json_response(
            {"status": "error", "error": "unavailable", "reason": "the database is unavailable; retry later"},
            status=503,
            headers={"Retry-After": "5"},
        )
    except Exception:
        # The one place a request failure is logged (aiohttp would log it again otherwise).
        log.exception("request failed", extra=_where(request))
        response = web.Response(status=500, text="500 Internal Server Error")
        response.force_close()
    finally:
        if timer is not None:
            timer.cancel()
    _close_if_unread(request, response)
    return response


def _where(request: web.Request) -> dict[str, str]:
    return {"method": request.method, "path": request.path, "peer": request.remote or ""}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Server"] = SERVER
    if "Cache-Control" not in response.headers:
        public = request.match_info.handler in request.app[PUBLIC_HANDLERS] and response.status < 400
        response.headers["Cache-Control"] = "no-cache" if public else "no-store"
