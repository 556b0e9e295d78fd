"""LINE webhook requests: the signature check and the events, parsed into a provider-neutral form.

Webhook: https://developers.line.biz/en/reference/messaging-api/#webhooks (the body
``{"destination", "events": [...]}``; follow, unfollow, message, postback events; a
``replyToken`` where the user can be answered; ``mode`` "active" or "standby";
``deliveryContext.isRedelivery``), signature:
https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/ (``X-Line-Signature``
= base64 of HMAC-SHA256 over the raw body, keyed with the channel secret). Pure: no I/O;
the route is :mod:`dispatcher.web.line_hook`.

An :class:`Inbound` says what the person did, whatever the provider: started following
(``follow``), left (``unfollow``), typed a ``text``, shared a ``location``, pressed a
button (``press``, the postback's data). Events of other kinds (a sticker, an image,
joining a group) are ``other`` and answered with nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["follow", "unfollow", "text", "location", "press", "other"]


def signature(channel_secret: str, body: bytes) -> str:
    """The ``X-Line-Signature`` LINE sends with ``body``."""
    return base64.b64encode(hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()).decode()


def signed(channel_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body``, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature(channel_secret, body).encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing a person did in the chat, provider-neutral.

    ``address`` is who did it (LINE: the user ID), ``reply_token`` how to answer this
    event once (LINE: within a minute; None: cannot be answered), ``event_id`` the
    provider's id of the event (a redelivery carries the same one).
    """

    kind: Kind
    channel: str
    address: str
    event_id: str = ""
    reply_token: str | None = None
    text: str = ""
    latitude: float | None = None
    longitude: float | None = None
    # A postback's data (``press``); a location's title and address when LINE knows a place there.
    data: str = ""
    title: str = ""
    place_address: str = ""
    timestamp_ms: int = 0
    redelivery: bool = False
    raw_type: str = ""
    params: dict[str, str] = field(default_factory=dict)


class BadWebhook(ValueError):
    """The body is not a LINE webhook request (what is wrong, for the 400 answer)."""


def parse(body: bytes, channel: str = "line") -> list[Inbound]:
    """The events of a signed webhook request that come from a person in a one-to-one chat, in order.

    Events in ``standby`` mode (another channel answers the chat), from groups or rooms,
    and without a user ID are left out: the service talks only to the person themselves.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadWebhook(f"body is not JSON: {exc}") from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise BadWebhook("no events list")
    out: list[Inbound] = []
    for event in events:
        item = _event(event, channel) if isinstance(event, dict) else None
        if item is not None:
            out.append(item)
    return out


def _event(event: dict[str, Any], channel: str) -> Inbound | None:
    source = event.get("source")
    if not isinstance(source, dict) or source.get("type") != "user" or not isinstance(source.get("userId"), str):
        return None
    if event.get("mode", "active") != "active":
        return None
    kind = str(event.get("type", ""))
    context = event.get("deliveryContext")
    common: dict[str, Any] = {
        "channel": channel,
        "address": source["userId"],
        "event_id": str(event.get("webhookEventId", "")),
        "reply_token": event.get("replyToken") if isinstance(event.get("replyToken"), str) else None,
        "timestamp_ms": int(event.get("timestamp", 0) or 0),
        "redelivery": bool(context.get("isRedelivery")) if isinstance(context, dict) else False,
        "raw_type": kind,
    }
    if kind in ("follow", "unfollow"):
        return Inbound(kind, **common)  # type: ignore[arg-type]
    if kind == "postback":
        postback = event.get("postback")
        data = postback.get("data") if isinstance(postback, dict) else None
        if not isinstance(data, str):
            return Inbound("other", **common)
        params = postback.get("params") if isinstance(postback, dict) else None
        clean = {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
        return Inbound("press", data=data, params=clean, **common)
    message = event.get("message") if kind == "message" else None
    if not isinstance(message, dict):
        return Inbound("other", **common)
    if message.get("type") == "text" and isinstance(message.get("text"), str):
        return Inbound("text", text=message["text"], **common)
    if message.get("type") == "location":
        try:
            lat, lon = float(message["latitude"]), float(message["longitude"])
        except (KeyError, TypeError, ValueError):
            return Inbound("other", **common)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return Inbound("other", **common)
        return Inbound(
            "location",
            latitude=lat,
            longitude=lon,
            title=str(message.get("title") or ""),
            place_address=str(message.get("address") or ""),
            **common,
        )
    return Inbound("other", **common)
