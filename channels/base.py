"""The Channel contract: how the dispatcher talks to one provider.

A channel declares its limits as class attributes, renders an alert into a
message (pure), and makes exactly one attempt per ``send`` call, answering per
recipient with :class:`Delivered`, :class:`Retry` or :class:`Reject`. A channel
never sleeps, loops or retries: the dispatcher does, from the database. Provider
exceptions are translated into these results inside the channel's own module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from dispatcher.model import Alert, Area, Message, Recipient


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider accepted the message; ``remote_id`` is its id for it, if any."""

    remote_id: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: try again later.

    ``after`` is the wait in seconds the provider asked for (Telegram's
    ``retry_after``, an HTTP ``Retry-After``); ``None`` lets the dispatcher
    choose a jittered exponential backoff. ``rate_limited`` marks a 429 or its
    equivalent: the dispatcher pauses the bucket concerned for exactly
    ``after`` seconds and spends no retry budget on it. ``bucket`` names that
    bucket: ``None`` is the whole channel, otherwise the recipient's address.
    """

    reason: str
    after: float | None = None
    rate_limited: bool = False
    bucket: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """A permanent failure for this recipient (4xx, blocked bot, bad address).

    ``unsubscribe`` says the provider told us the person is gone (blocked the
    bot, deleted the account, address does not exist): the dispatcher
    deactivates the subscription.
    """

    reason: str
    unsubscribe: bool = False


SendResult = Delivered | Retry | Reject


@dataclass(frozen=True, slots=True)
class Health:
    """Outcome of :meth:`Channel.healthcheck`."""

    ok: bool
    detail: str = ""


@runtime_checkable
class Channel(Protocol):
    """One provider. Implementations live in ``channels/<name>.py``."""

    # Registry name, also the configuration section ``[channels.<name>]``.
    name: ClassVar[str]
    # Longest text the provider accepts (characters).
    max_text_length: ClassVar[int]
    # Recipients per ``send`` call (LINE multicast: 500; most: 1).
    batch_size: ClassVar[int]
    # Default global budget, messages (requests) per second.
    rate_per_second: ClassVar[float]
    # Default minimum seconds between two messages to one recipient, if the
    # provider has such a limit (Telegram: 1 s per chat).
    per_recipient_interval: ClassVar[float | None]
    # Default longer budget (requests, seconds), if the provider counts one: at most
    # that many in any window of that length (Mastodon: 300 per 300 s; X: 200 per 900 s).
    rate_window: ClassVar[tuple[int, float] | None]
    # Default number of requests in flight at once, if the channel wants fewer than
    # ``[delivery] concurrency`` (None: that). A heavy client (python-telegram-bot)
    # with many requests started at once delays the first until all are prepared.
    concurrency: ClassVar[int | None]
    # True when the channel posts once per alert (Mastodon, website) rather
    # than once per subscriber.
    broadcast: ClassVar[bool]

    async def open(self) -> None:
        """Acquire connections and sessions; called once before any send."""

    async def healthcheck(self) -> Health:
        """Check the provider is reachable and our credentials work."""

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        """Turn an alert into this channel's message in ``language`` for a reader in ``place``. Pure.

        ``place`` is the alert area that concerns the recipients (the delivery's
        place); None lets the templates pick the city's own area.
        """

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> Mapping[int, SendResult]:
        """One attempt; the answer maps each recipient's ``delivery_id`` to a result."""

    async def close(self) -> None:
        """Release what ``open`` acquired."""


class ChannelFactory(Protocol):
    """What the registry holds: a class built from its config section."""

    name: ClassVar[str]
    config_class: ClassVar[type[Any]]

    def __call__(self, config: Any, context: ChannelContext) -> Channel: ...


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What every channel gets besides its own config section.

    ``templates`` is a :class:`channels.templates.Templates` (message templates
    per language, from ``config/templates/``); ``public_url`` is the base URL
    of the service's public site, for links to an alert's page.
    """

    templates: Any
    public_url: str = "http://127.0.0.1:8080"
    city_name: str = "沼津市"
