"""A bot reply as a LINE message: the text, and its buttons as quick replies with postback actions.

Quick replies: https://developers.line.biz/en/reference/messaging-api/#quick-reply (at
most 13 items; an action's ``label`` at most 20 characters), postback actions:
https://developers.line.biz/en/reference/messaging-api/#postback-action (``data`` at most
300 characters, ``displayText`` what the chat shows as the person's own message), the
location action (quick replies only) opens LINE's location picker. Pure.

The reply comes from the residents' conversation (``dispatcher.residents``) as stored in
the outbox: ``{"text", "buttons": [[{"label", "data"}…]…], "edit"}``. LINE cannot edit a
message, so ``edit`` is ignored. A reply offering the district list (``P:0``) also offers
the location picker: sharing a location is the quickest way to say where one lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.lengths import utf16_units

MAX_ITEMS = 13
MAX_LABEL = 20
MAX_DATA = 300
MAX_TEXT = 5000

# The location picker's label, translated once (not at send time).
SHARE_LOCATION = {
    "ja": "📍現在地を送る",
    "ja-easy": "📍いる ところを おくる",
    "en": "📍Share location",
    "pt": "📍Enviar localização",
    "vi": "📍Gửi vị trí",
    "zh": "📍发送位置",
}


def _label(text: str) -> str:
    text = " ".join(text.split()) or "…"
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _text(text: str) -> str:
    text = text or "…"
    while utf16_units(text) > MAX_TEXT:
        text = text[: len(text) - (utf16_units(text) - MAX_TEXT) - 1] + "…"
    return text


def reply_message(reply: Mapping[str, Any], language: str) -> dict[str, Any]:
    """The LINE text message for ``reply`` (see the module docstring)."""
    message: dict[str, Any] = {"type": "text", "text": _text(str(reply.get("text") or ""))}
    items: list[dict[str, Any]] = []
    rows = reply.get("buttons") or []
    offers_districts = False
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if not isinstance(button, Mapping):
                continue
            data = str(button.get("data", ""))
            label = _label(str(button.get("label", "")))
            if not data or len(data) > MAX_DATA:
                raise ValueError(f"postback data must be 1-{MAX_DATA} characters: {data[:40]!r}")
            offers_districts |= data == "P:0"
            action = {"type": "postback", "label": label, "data": data, "displayText": label}
            items.append({"type": "action", "action": action})
    if offers_districts and len(items) < MAX_ITEMS:
        label = SHARE_LOCATION.get(language, SHARE_LOCATION["en"])
        items.insert(0, {"type": "action", "action": {"type": "location", "label": _label(label)}})
    if len(items) > MAX_ITEMS:
        raise ValueError(f"{len(items)} quick reply items: LINE takes at most {MAX_ITEMS}")
    if items:
        message["quickReply"] = {"items": items}
    return message
