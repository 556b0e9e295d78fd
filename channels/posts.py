"""What broadcast channels share: the log of their posts, and a message that knows its thread.

A broadcast channel (``broadcast = True``: Mastodon, X, Bluesky) posts once per alert.
To thread an update under the post of the alert it replaces, and to edit or delete
that post when the alert is cancelled, it needs to remember what it posted: the
:class:`PostLog` port, given in :class:`channels.base.ChannelContext` (the daemon's is
``dispatcher.store.posts.StorePostLog``; channels import nothing of the store). Without
one (a test, a bench), :class:`MemoryPostLog` keeps them in memory.

:func:`broadcast_extra` is what such a channel's ``render`` adds to the message so that
``send`` knows which alert it is and whether it updates or cancels another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatcher.model import Alert, Message, MsgType


@dataclass(frozen=True, slots=True)
class PostRef:
    """One post a channel made: the provider's id and what else it needs to refer to it."""

    remote_id: str
    public_id: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    # "edited" or "deleted" once a cancel has retracted it.
    retracted: str | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    """The posts of one channel for an alert (``own``: a retry after a lost answer) and those it replaces.

    ``earlier`` is nearest first: ``earlier[0]`` is the post of the alert this one
    directly replaces, the last is the thread's root.
    """

    own: tuple[PostRef, ...] = ()
    earlier: tuple[PostRef, ...] = ()

    @property
    def parent(self) -> PostRef | None:
        """The post to reply to: the newest earlier one still standing."""
        return next((p for p in self.earlier if p.retracted != "deleted"), None)

    @property
    def root(self) -> PostRef | None:
        standing = [p for p in self.earlier if p.retracted != "deleted"]
        return standing[-1] if standing else None


class PostLog(Protocol):
    """Where a broadcast channel remembers its posts (see the module docstring)."""

    async def thread(self, channel: str, public_id: str) -> Thread:
        """The posts of ``channel`` for the alert ``public_id`` and for the alerts it replaces."""
        ...

    async def remember(self, channel: str, public_id: str, remote_id: str, meta: Mapping[str, Any]) -> None:
        """Record a post made for the alert ``public_id``."""
        ...

    async def retracted(self, channel: str, remote_id: str, how: str) -> None:
        """Record that a cancel ``edited`` or ``deleted`` the post."""
        ...


class MemoryPostLog:
    """A :class:`PostLog` in memory, for channels built without the daemon.

    ``replaces`` maps a public id to the public id it replaces (the pipeline's
    ``replaced_by``, backwards); a message's ``replaces`` extra fills it in.
    """

    def __init__(self) -> None:
        self.posts: dict[tuple[str, str], list[PostRef]] = {}
        self.replaces: dict[str, str] = {}

    async def thread(self, channel: str, public_id: str) -> Thread:
        earlier: list[PostRef] = []
        seen = {public_id}
        current = self.replaces.get(public_id)
        while current is not None and current not in seen:
            seen.add(current)
            earlier.extend(self.posts.get((channel, current), []))
            current = self.replaces.get(current)
        return Thread(own=tuple(self.posts.get((channel, public_id), [])), earlier=tuple(earlier))

    async def remember(self, channel: str, public_id: str, remote_id: str, meta: Mapping[str, Any]) -> None:
        self.posts.setdefault((channel, public_id), []).append(PostRef(remote_id, public_id, dict(meta)))

    async def retracted(self, channel: str, remote_id: str, how: str) -> None:
        for key, refs in self.posts.items():
            self.posts[key] = [
                PostRef(r.remote_id, r.public_id, r.meta, how) if r.remote_id == remote_id else r for r in refs
            ]


def broadcast_extra(alert: Alert, local: bool = True) -> dict[str, Any]:
    """What a broadcast channel's message carries besides its text (see :func:`kind_of`).

    ``local``: the alert concerns the city (the city's accounts post nothing else).
    """
    return {
        "local": local,
        "alert_identifier": alert.identifier,
        "event": alert.event,
        "public_id": alert.public_id,
        "msg_type": alert.msg_type.value,
        "headline": alert.headline,
    }


def not_ours(message: Message) -> bool:
    """A message for an alert that does not concern the city: the city's accounts do not post it."""
    return message.extra.get("local") is False


SKIPPED = "not posted: the alert does not concern the city ([service] area_codes)"


def kind_of(message: Message) -> MsgType:
    """Whether ``message`` announces, updates or cancels (an unknown value: a new alert)."""
    try:
        return MsgType(str(message.extra.get("msg_type", "alert")))
    except ValueError:
        return MsgType.ALERT


# What an edited post says first once its alert was cancelled (the correction follows).
RETRACTED = {
    "ja": "【取消】この投稿の情報は取り消されました。",
    "ja-easy": "【とりけし】この おしらせは とりけされました。",
    "en": "[Cancelled] The alert in this post was cancelled.",
}


def retracted_note(language: str) -> str:
    return RETRACTED.get(language, RETRACTED["ja"])


class ProviderBudget:
    """The provider's own count of what we may still send, from its rate-limit headers.

    When an answer says nothing is left (``remaining`` 0), later sends are held, without
    a request, until the window resets: the worker gets a rate-limited ``Retry`` and
    pauses the channel for exactly that long.
    """

    def __init__(self, clock: Any = None) -> None:
        import time

        self.clock = clock or time.time
        self.until = 0.0
        self.remaining: int | None = None

    def update(self, remaining: str | None, reset_at: float | None) -> None:
        """Take the headers of one answer (``reset_at``: wall-clock epoch seconds)."""
        if remaining is None:
            return
        try:
            self.remaining = int(remaining)
        except ValueError:
            return
        if self.remaining <= 0 and reset_at is not None:
            self.until = max(self.until, reset_at)

    def wait(self) -> float:
        """Seconds until the provider's window resets, if it is spent (0: go ahead)."""
        return max(0.0, self.until - self.clock())
