"""Delivery channels, one module per provider, and the registry naming them.

A new channel is one module (a :class:`channels.base.Channel` subclass), one line in
:data:`REGISTRY` with its loader, and one test file (see ``DESIGN.md`` §2).

The registry is typed: each entry is a loader function whose return type mypy checks
(a subclass of ``Channel``), and :func:`load_channel_class` checks at run time that
the class's ``name`` is its key. The loader imports the channel's module only when
called, so that a deployment without, say, Telegram configured never imports
python-telegram-bot.
"""

from __future__ import annotations

from collections.abc import Callable

from channels.base import Channel

ChannelClass = type[Channel]


def _telegram() -> ChannelClass:
    from channels.telegram import TelegramChannel

    return TelegramChannel


def _email() -> ChannelClass:
    from channels.email import EmailChannel

    return EmailChannel


def _webhook() -> ChannelClass:
    from channels.webhook import WebhookChannel

    return WebhookChannel


def _mastodon() -> ChannelClass:
    from channels.mastodon import MastodonChannel

    return MastodonChannel


def _x() -> ChannelClass:
    from channels.x import XChannel

    return XChannel


def _line() -> ChannelClass:
    from channels.line import LineChannel

    return LineChannel


def _bluesky() -> ChannelClass:
    from channels.bluesky import BlueskyChannel

    return BlueskyChannel


# Channel name (also the configuration section [channels.<name>]) -> its class's loader.
REGISTRY: dict[str, Callable[[], ChannelClass]] = {
    "telegram": _telegram,
    "email": _email,
    "webhook": _webhook,
    "mastodon": _mastodon,
    "x": _x,
    "bluesky": _bluesky,
    "line": _line,
}


class UnknownChannelError(KeyError):
    """No channel is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else "unknown channel"


def load_channel_class(name: str) -> ChannelClass:
    """Import and return the class registered as ``name``."""
    try:
        loader = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownChannelError(f"unknown channel {name!r}; known channels: {known}") from None
    cls = loader()
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"registry entry {name!r} is not a Channel class: {cls!r}")
    if cls.name != name:
        raise TypeError(f"registry entry {name!r} loads {cls.__name__}, whose name is {cls.name!r}")
    return cls
