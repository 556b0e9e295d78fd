"""The municipal broadcast system (同報系防災行政無線): what the loudspeakers announce reaches every phone.

Two ways in, one mapping:

* :class:`~sources.broadcast.webhook.BroadcastWebhook` (pushed): the broadcast console POSTs
  each broadcast to ``POST /hooks/broadcast`` as CAP 1.2
  (https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html) or as a small JSON
  document, signed with HMAC-SHA256 like ``channels/webhook.py`` signs what we send.
* :class:`~sources.broadcast.feed.BroadcastFeed` (polled): a transcript feed (RSS or Atom,
  read with feedparser, https://feedparser.readthedocs.io/) polled with a conditional GET;
  every entry is claimed in ``documents`` and sent once.

Both produce a :class:`~sources.broadcast.mapping.Broadcast`, which
:func:`~sources.broadcast.mapping.to_alert` turns into an Alert: the text verbatim, the
loudspeaker groups mapped to district codes (``[broadcast.groups]``), the priority and
the category deciding whether it is held for approval and which channels carry it.
:class:`~sources.broadcast.source.BroadcastSource` builds both from ``[broadcast]``
(:class:`~sources.broadcast.config.BroadcastConfig`).
"""

from __future__ import annotations

from sources.broadcast.feed import BroadcastFeed
from sources.broadcast.mapping import Broadcast, BroadcastPolicy, Mapped, to_alert
from sources.broadcast.parse import BodyError, parse_body, parse_cap_broadcast, parse_json_broadcast
from sources.broadcast.webhook import BroadcastWebhook

__all__ = [
    "BodyError",
    "Broadcast",
    "BroadcastFeed",
    "BroadcastPolicy",
    "BroadcastWebhook",
    "Mapped",
    "parse_body",
    "parse_cap_broadcast",
    "parse_json_broadcast",
    "to_alert",
]
