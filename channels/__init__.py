"""Delivery channels, one module per provider, and the registry naming them.

A new channel is one module, one line in :data:`REGISTRY` and one test file
(see ``DESIGN.md`` §2). Modules are imported lazily so that a deployment
without, say, Telegram configured never imports python-telegram-bot.
"""

from __future__ import annotations

import importlib

# Channel name (also the configuration section [channels.<name>]) -> "module:Class".
REGISTRY: dict[str, str] = {
    "telegram": "channels.telegram:TelegramChannel",
    "email": "channels.email:EmailChannel",
    "webhook": "channels.webhook:WebhookChannel",
}


class UnknownChannelError(KeyError):
    """No channel is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else "unknown channel"


def load_channel_class(name: str) -> type:
    """Import and return the class registered as ``name``."""
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownChannelError(f"unknown channel {name!r}; known channels: {known}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not isinstance(cls, type):
        raise TypeError(f"registry entry {name!r} -> {target!r} is not a class")
    return cls
