"""Approvers put failed deliveries back in the queue, audited like the console's actions.

    POST /deliveries/{id}/retry           [approver] one failed delivery
    POST /alerts/{id}/deliveries/retry    [approver] every failed delivery of the alert (form field
                                          ``channel``: of one channel only)

Both need the session's CSRF token (:mod:`dispatcher.web.auth`), write an audit entry
(``delivery.retry``) in the same transaction as the requeue, and answer 303 back to the
page (JSON ``{"requeued": [...]}`` when asked for JSON). Only ``failed`` deliveries move:
a retry of anything else requeues nothing and says so.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from dispatcher.console.accounts import Role
from dispatcher.limits import integer_problem
from dispatcher.store import alerts as alert_store
from dispatcher.store import audit, progress, reports
from dispatcher.web.auth import requires, staff_of
from dispatcher.web.context import WEB


def _id(request: web.Request, what: str) -> int:
    key = request.match_info["id"]
    if integer_problem(key, what, low=1) is not None:
        raise web.HTTPNotFound(text=f"no {what} {key[:60]!r}")
    return int(key)


def _answer(request: web.Request, back: str, requeued: list[int]) -> web.StreamResponse:
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"requeued": requeued})
    note = f"{len(requeued)} failed deliveries requeued" if requeued else "nothing to retry: no failed delivery"
    raise web.HTTPSeeOther(f"{back}?note={quote(note)}")


async def _retry(
    request: web.Request, alert_id: int, *, delivery_id: int | None, channel: str | None, target: str
) -> list[int]:
    me = staff_of(request)
    async with request.app[WEB].pool.acquire() as conn, conn.transaction():
        ids = await progress.retry_failed(conn, alert_id=alert_id, delivery_id=delivery_id, channel=channel)
        await audit.append(
            conn,
            actor=me.username,
            role=me.role.value,
            action="delivery.retry",
            target=target,
            address=request.remote or "",
            after={"alert_id": alert_id, "channel": channel, "requeued": len(ids), "ids": ids[:100]},
        )
    return ids


@requires(Role.APPROVER)
async def retry_delivery(request: web.Request) -> web.StreamResponse:
    """One failed delivery back in the queue."""
    delivery_id = _id(request, "delivery")
    async with request.app[WEB].pool.acquire() as conn:
        d = await reports.delivery_history(conn, delivery_id)
    if d is None:
        raise web.HTTPNotFound(text=f"no delivery {delivery_id}")
    ids = await _retry(request, int(d["alert_id"]), delivery_id=delivery_id, channel=None,
                       target=f"delivery:{delivery_id}")  # fmt: skip
    return _answer(request, f"/deliveries/{delivery_id}", ids)


@requires(Role.APPROVER)
async def retry_alert(request: web.Request) -> web.StreamResponse:
    """Every failed delivery of an alert (or of one channel of it) back in the queue."""
    alert_id = _id(request, "alert")
    form = await request.post()
    channel = str(form.get("channel", "")) or None
    if channel is not None and channel not in request.app[WEB].known_channels:
        raise web.HTTPBadRequest(text=f"no channel {channel[:60]!r}")
    async with request.app[WEB].pool.acquire() as conn:
        exists = await alert_store.alert_by_id(conn, alert_id)
    if exists is None:
        raise web.HTTPNotFound(text=f"no alert {alert_id}")
    ids = await _retry(request, alert_id, delivery_id=None, channel=channel, target=f"alert:{alert_id}")
    return _answer(request, f"/alerts/{alert_id}/deliveries", ids)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/deliveries/{id}/retry", retry_delivery)
    app.router.add_post("/alerts/{id}/deliveries/retry", retry_alert)
