"""Path ids and query parameters, checked before any query: a bad one is a 404 or a 400 that says what is allowed."""

from __future__ import annotations

from typing import TypedDict

from aiohttp import web

from dispatcher.limits import BIGINT_MAX, integer_problem
from dispatcher.store.reports import FILTERS


class DeliveryFilters(TypedDict):
    """The operators' filters on an alert's deliveries (``reports.alert_deliveries``' keywords)."""

    state: str | None
    channel: str | None
    recipient: str | None
    after: int
    limit: int


def integer(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    """Query parameter ``key`` as an integer from ``low`` to ``high``, else a 400 that says so."""
    text = request.query.get(key)
    if text is None or text == "":
        return default
    wrong = integer_problem(text, key, low=low, high=high)
    if wrong is not None:
        raise web.HTTPBadRequest(text=wrong)
    return int(text)


def delivery_filters(request: web.Request, known_channels: tuple[str, ...]) -> DeliveryFilters:
    """The operators' filters, checked: a bad one is a 400 that says what is allowed."""
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in FILTERS:
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(FILTERS)}, not {state[:60]!r}")
    channel = q.get("channel") or None
    if channel is not None and channel not in known_channels:
        known = ", ".join(sorted(known_channels))
        raise web.HTTPBadRequest(text=f"channel must be one of {known}, not {channel[:60]!r}")
    # A recipient's address as the channel knows it (a chat id, an e-mail address), exactly.
    recipient = q.get("recipient", "").strip() or None
    if recipient is not None and len(recipient) > 320:
        raise web.HTTPBadRequest(text="recipient must be an address of at most 320 characters")
    # Delivery ids are bigint; more than 1000 rows is a dump, not a page.
    after = integer(request, "after", 0, 0, BIGINT_MAX)
    limit = integer(request, "limit", 200, 1, 1000)
    return {"state": state, "channel": channel, "recipient": recipient, "after": after, "limit": limit}
