"""What every request to the web server goes through: the net under the handlers' checks.

A path parameter that cannot be an id (longer than 200 characters, a NUL or another
control character) is a 404 before any handler runs. A handler's unexpected exception
is logged once (method, path, traceback) and answered with a plain
``500 Internal Server Error`` that shows nothing of it; a database that cannot be
reached (asyncpg connection errors, OSError, timeouts: :data:`dispatcher.worker.DB_ERRORS`)
is a ``503`` JSON ``{"status": "error", "error": "unavailable", …}``, the webhook's
documented answer. Validation in the handlers makes both unreachable by a caller's
mistake.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from dispatcher.limits import name_problem
from dispatcher.worker import DB_ERRORS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def install(app: web.Application) -> None:
    """Put the guard first among ``app``'s middlewares."""
    app.middlewares.insert(0, guard)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring: ids checked, every failure a clean answer."""
    try:
        for key, value in request.match_info.items():
            wrong = name_problem(value, key)
            if wrong is not None:
                raise web.HTTPNotFound(text=f"no such page: {wrong}")
        return await handler(request)
    except web.HTTPException:  # an answer (404, 413…), not a failure
        raise
    except ConnectionResetError:
        raise  # the client went away: nobody to answer
    except DB_ERRORS as exc:
        log.warning("database unavailable for a request", extra={**_where(request), "error": str(exc)})
        return web.json_response(
            {"status": "error", "error": "unavailable", "reason": "the database is unavailable; retry later"},
            status=503,
            headers={"Retry-After": "5"},
        )
    except Exception:
        # The one place a request failure is logged (aiohttp would log it again otherwise).
        log.exception("request failed", extra=_where(request))
        response = web.Response(status=500, text="500 Internal Server Error")
        response.force_close()
        return response


def _where(request: web.Request) -> dict[str, str]:
    return {"method": request.method, "path": request.path, "peer": request.remote or ""}
