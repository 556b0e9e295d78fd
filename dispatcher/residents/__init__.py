"""Residents run their own subscription from a chat app: the provider-neutral conversation core.

The Telegram bot (``channels/telegram_bot.py``) and the LINE official account turn their
provider's events into the :mod:`~dispatcher.residents.conversation` events below, and
send the replies that come back through the outbox like any delivery. Nothing here knows
a provider.

Layers
======

``conversation.py``  pure rules: :func:`handle` ``(resident, event) → Outcome``; no I/O.
``levels.py``        pure: the class of an alert (0 life-threatening … 3 below the city's
                     defaults) that a resident's :class:`Level` is compared with.
``texts.py``         the bot's own words, ``config/templates/bot/<lang>.toml`` (six languages).
``directory.py``     :class:`GeoDirectory`: districts, point → district and zones, name search.
``service.py``       :class:`ResidentService`: load the resident, call :func:`handle`, store
                     the result, queue the replies, all in one transaction (the I/O side).

API for an adapter (stable)
===========================

Simplest use, with storage and the outbox handled for you::

    service = ResidentService(pool, directory=GeoDirectory(index), ui=load_ui_texts(),
                              city_codes=("2220300",), public_url=...)
    replies = await service.handle_event("line", user_id, Press("L:en"))
    # The replies are already queued in the outbox as deliveries of channel "line" to
    # address user_id (deliveries.reply, see below); the return value is for tests/logs.

Events (``dispatcher.residents.conversation``):

* ``Follow()`` — opened/added the bot (LINE follow). Telegram's /start is ``Command("start")``.
* ``Unfollow()`` — blocked/left: all data deleted, nothing sent.
* ``Text(text)`` — typed text; while choosing places it is a district name search.
* ``Command(name, arg="")`` — ``start``, ``places``, ``settings``, ``latest``, ``test``,
  ``stop``, ``help`` (a LINE adapter may map typed "/latest" or rich-menu postbacks here).
* ``SharedLocation(lat, lon)`` — matched to a district and hazard zones, then the resident
  is asked whether to keep the point (buttons ``K:1`` / ``K:0``); otherwise it is dropped.
* ``Press(data)`` — a button's data (Telegram callback_data, LINE postback data).

Replies: :class:`Reply` ``(text, buttons, columns, edit)``; at most :data:`MAX_BUTTONS` (13,
LINE's quick-reply limit) :class:`Button` ``(label, data)`` each, ``data`` at most 64 bytes of
UTF-8. ``edit`` marks a keyboard page that may replace the message whose button was pressed.
Button data formats (opaque to adapters, listed for logs): ``L:<lang>`` language, ``P:<n>``
district page, ``D:<code>`` add district, ``R:<i>`` remove place, ``K:1|0`` keep point,
``V:all|warnings|critical`` level, ``Q:<start>-<end>|off`` quiet hours (minutes JST),
``M:done|places|level|quiet|language|settings`` menus.

Outcome: ``resident`` (None = delete everything), ``replies``, ``changed``, ``request``
(``Request.LATEST``: the service looks the alerts up and answers with
:func:`latest_reply`).

Settings kept (``dispatcher.store.residents``, migration 0010): language (``ja``,
``ja-easy``, ``en``, ``pt``, ``vi``, ``zh``) in ``subscribers.language``; up to 5 places in
``resident_places`` (their codes merged into ``subscriptions.areas``, so the fan-out's
audience query is unchanged); the level as ``subscriptions.max_class``; quiet hours as
``subscriptions.quiet_start/quiet_end`` (minutes, Japan time); the conversation step in
``residents``. The fan-out (``dispatcher/store/fanout.py``) skips alerts whose class is
above ``max_class`` and holds class 1–3 back (``not_before``) until quiet hours end.

Outbox replies: deliveries with ``alert_id`` NULL, ``reply`` = ``{"text", "buttons":
[[{"label","data"}…]…], "edit"}`` and priority :data:`REPLY_PRIORITY` (after every
alert: a CRITICAL alert overtakes queued replies). A channel finds the reply in
``Message.extra["reply"]`` (the same dict), so it can render buttons its own way
(Telegram inline keyboard, LINE quick reply).
"""

from __future__ import annotations

from dispatcher.residents.conversation import (
    LANGUAGE_NAMES,
    LANGUAGES,
    MAX_BUTTONS,
    MAX_DATA_BYTES,
    MAX_PLACES,
    Button,
    Command,
    Directory,
    District,
    Event,
    Follow,
    LatestItem,
    Outcome,
    Place,
    PointMatch,
    Press,
    Quiet,
    Reply,
    Request,
    Resident,
    SharedLocation,
    Step,
    Text,
    Unfollow,
    handle,
    latest_reply,
)
from dispatcher.residents.levels import Level, ResidentDefaults, alert_class
from dispatcher.residents.texts import UiTexts, load_ui_texts

# Queue order of interactive replies: after every alert (dispatcher.model.Priority.LOW = 3).
REPLY_PRIORITY = 9

__all__ = [
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "MAX_BUTTONS",
    "MAX_DATA_BYTES",
    "MAX_PLACES",
    "REPLY_PRIORITY",
    "Button",
    "Command",
    "Directory",
    "District",
    "Event",
    "Follow",
    "LatestItem",
    "Level",
    "Outcome",
    "Place",
    "PointMatch",
    "Press",
    "Quiet",
    "Reply",
    "Request",
    "Resident",
    "ResidentDefaults",
    "SharedLocation",
    "Step",
    "Text",
    "UiTexts",
    "Unfollow",
    "alert_class",
    "handle",
    "latest_reply",
    "load_ui_texts",
]
