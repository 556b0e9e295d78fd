"""The ``[broadcast]`` section's sources: the webhook (pushed) and the transcript feed (polled).

One section, two ways in (see :mod:`sources.broadcast`): the webhook is served when a
``secret`` is configured, the feed is polled when a ``feed_url`` is; both map
broadcasts with one :class:`~sources.broadcast.mapping.BroadcastPolicy`.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from sources.base import Source, SourceSetup
from sources.broadcast.config import BroadcastConfig
from sources.broadcast.feed import BroadcastFeed
from sources.broadcast.mapping import BroadcastPolicy
from sources.broadcast.webhook import BroadcastWebhook

log = logging.getLogger(__name__)


class BroadcastSource:
    """Registry entry of the municipal broadcast system: builds its webhook and feed from ``[broadcast]``."""

    section: ClassVar[str] = "broadcast"
    config_class: ClassVar[type[BroadcastConfig]] = BroadcastConfig

    @classmethod
    def from_config(cls, config: BroadcastConfig, setup: SourceSetup) -> list[Source]:
        """The webhook (with a secret) and the feed poller (with a URL); none when disabled."""
        if not config.enabled:
            return []
        policy = BroadcastPolicy(
            groups=config.groups,
            routes=config.routes,
            districts=setup.districts(),
            hold_emergency=config.hold_emergency,
            hold_ordinary=config.hold_ordinary,
        )
        for problem in policy.misconfigured():
            log.warning("[broadcast.groups] %s", problem)
        for category, names in config.routes.items():
            off = [n for n in names if n not in setup.channels]
            if off:
                log.warning("[broadcast.routes] %s names channels not enabled: %s", category, ", ".join(off))
        sources: list[Source] = []
        if config.secret:
            if not setup.web:
                log.warning("[broadcast] has a secret but [web] is disabled: no webhook")
            sources.append(
                BroadcastWebhook(
                    secret=config.secret,
                    policy=policy,
                    default_sender=config.default_sender,
                    senders=config.senders,
                    max_body_bytes=config.max_body_bytes,
                    max_skew_seconds=config.max_skew_seconds,
                )
            )
        if config.feed_url:
            sources.append(
                BroadcastFeed(
                    config.feed_url,
                    policy=policy,
                    sender=config.default_sender,
                    timeout=config.feed_timeout_seconds,
                    poll_seconds=config.feed_poll_seconds,
                )
            )
        return sources
