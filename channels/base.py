"""The Channel contract: how the dispatcher talks to one provider, and what every channel shares.

A channel is a subclass of :class:`Channel` in ``channels/<name>.py``. It declares its
limits as class attributes (the base class has defaults for all but ``name`` and
``config_class``), renders an alert into a message (pure; the base class renders
through :mod:`channels.templates`) and makes exactly one attempt per ``send`` call,
answering per recipient with :class:`Delivered`, :class:`Retry` or :class:`Reject`.
A provider without batches implements only :meth:`Channel.send_one`; the base class's
:meth:`Channel.send` calls it for each recipient in turn. A channel never sleeps,
loops over attempts or retries: the dispatcher does, from the database. Provider
exceptions are translated into these results inside the channel's own module.

A channel that speaks HTTP uses :attr:`Channel.http`, the service's one shared
aiohttp session (https://docs.aiohttp.org/en/stable/client_reference.html): one
connection pool for every such channel, no cookies kept. A channel built without a
service (tests, benches) gets a session of its own, closed by :meth:`Channel.close`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import aiohttp

from channels.lengths import characters
from channels.posts import PostLog, not_ours
from channels.quota import QuotaBook
from channels.templates import Templates, render_message
from dispatcher.model import Alert, Area, Message, Recipient

USER_AGENT = "numazu-dispatcher/0.1"
# A request that forgot its own timeout still ends: a worker's sender must not hang on it.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)


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
    # The recipient lives at another address now (a Telegram group migrated to a
    # supergroup): the dispatcher records it and sends the message there again.
    moved_to: str | None = None


SendResult = Delivered | Retry | Reject


@dataclass(frozen=True, slots=True)
class Sent:
    """A delivery the database calls delivered, as ``dispatcher reconcile`` asks its channel about it.

    ``retracted`` is what a cancel did to the post (``channel_posts``: "edited", "deleted").
    """

    delivery_id: int
    remote_id: str | None
    language: str
    alert: Alert | None = None
    retracted: str | None = None


# What a read-back found: the first two are mismatches between the provider and the database.
MISMATCHES = ("missing", "no_provider_id")
VERDICTS = (*MISMATCHES, "confirmed", "retracted", "skipped", "unchecked", "unverifiable")


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The verdict on one :class:`Sent` (one of :data:`VERDICTS`) and what the provider said."""

    verdict: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    """Outcome of :meth:`Channel.healthcheck`."""

    ok: bool
    detail: str = ""


def http_session() -> aiohttp.ClientSession:
    """The HTTP session channels share (the service makes one; call inside the event loop).

    No cookie jar: a message carries nothing but itself, so no cookie one endpoint sets
    is ever sent to another (or back to it). Each channel passes its own timeout.
    """
    return aiohttp.ClientSession(
        timeout=HTTP_TIMEOUT, headers={"User-Agent": USER_AGENT}, cookie_jar=aiohttp.DummyCookieJar()
    )


class SubscriberLinks(Protocol):
    """Signed links a message to one subscriber carries (``dispatcher.publication.tokens``).

    Unguessable and needing no account: whoever holds the mail may change what it
    follows or unsubscribe, nobody else.
    """

    def unsubscribe_url(self, subscription_id: int) -> str:
        """The one-click unsubscribe address (RFC 8058: POSTed to by the mail client)."""
        ...

    def manage_url(self, subscription_id: int) -> str:
        """The page where places, language and level are changed."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What every channel gets besides its own config section.

    ``templates`` are the message templates per language (``config/templates/``), with
    the city's own area codes (``[service] area_codes``) that pick a reader's default
    place; ``public_url`` is the base URL of the service's public site, for links to an
    alert's page; ``session`` is the service's shared HTTP session (None: each channel
    that needs one makes its own); ``posts`` is where broadcast channels remember their
    posts (None: in memory, per channel); ``links`` signs subscribers' own links (None:
    messages carry none); ``quotas`` is where a channel with a monthly message quota
    (LINE) records each reading of it, for operators (None: nowhere).
    """

    templates: Templates
    public_url: str = "http://127.0.0.1:8080"
    session: aiohttp.ClientSession | None = None
    posts: PostLog | None = None
    links: SubscriberLinks | None = None
    quotas: QuotaBook | None = None


class Channel:
    """One provider: its limits, its rendering and one attempt at sending.

    Subclasses set ``name`` (the registry key, also the configuration section
    ``[channels.<name>]``) and ``config_class`` (the dataclass that section is read into),
    override the limits the provider has, and implement :meth:`send_one` (or
    :meth:`send`, for a provider that takes many recipients in one request). A
    subclass narrows ``config`` to its config class (``config: TelegramConfig``).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[Any]]
    # Longest text the provider accepts (characters). Declare the provider's own.
    max_text_length: ClassVar[int] = 1000
    # Recipients per ``send`` call (LINE multicast: 500; most: 1).
    batch_size: ClassVar[int] = 1
    # Default global budget, messages (requests) per second: slow until the provider's
    # documented limit is declared.
    rate_per_second: ClassVar[float] = 1.0
    # Default minimum seconds between two messages to one recipient, if the
    # provider has such a limit (Telegram: 1 s per chat).
    per_recipient_interval: ClassVar[float | None] = None
    # Default longer budget (requests, seconds), if the provider counts one: at most
    # that many in any window of that length (Mastodon: 300 per 300 s; X: 200 per 900 s).
    rate_window: ClassVar[tuple[int, float] | None] = None
    # Default number of requests in flight at once, if the channel wants fewer than
    # ``[delivery] concurrency`` (None: that).
    concurrency: ClassVar[int | None] = None
    # True when the channel posts once per alert (Mastodon, website) rather
    # than once per subscriber.
    broadcast: ClassVar[bool] = False
    # Whether the provider names what it accepted (``Delivered.remote_id``): a delivery
    # the database calls delivered without one is then a mismatch (``dispatcher reconcile``).
    remote_ids: ClassVar[bool] = True
    # True when the provider takes an idempotency key per request of many recipients that
    # must be a fresh UUID per batch and the same on every retry of it (LINE's
    # X-Line-Retry-Key): the worker then mints the key, stores it with the batch's
    # deliveries before the request, and reuses it only for exactly the deliveries still
    # holding it (``Message.idempotency_key``). False: a key derived from the delivery ids.
    durable_batch_keys: ClassVar[bool] = False

    config: Any

    def __init__(self, config: Any, context: ChannelContext) -> None:
        self.config = config
        self.context = context
        self._own_session: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The service's shared HTTP session, or (built without one) this channel's own."""
        if self.context.session is not None:
            return self.context.session
        if self._own_session is None or self._own_session.closed:
            self._own_session = http_session()
        return self._own_session

    async def open(self) -> None:
        """Acquire connections and sessions; called once before any send. Nothing by default."""

    async def close(self) -> None:
        """Release what ``open`` acquired; an override calls this too (it closes an own session)."""
        session, self._own_session = self._own_session, None
        if session is not None:
            await session.close()

    async def healthcheck(self) -> Health:
        """Check the provider is reachable and our credentials work (default: nothing to check)."""
        return Health(ok=True, detail="no check")

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        """Turn an alert into this channel's message in ``language`` for a reader in ``place``. Pure.

        ``place`` is the alert area that concerns the recipients (the delivery's
        place); None lets the templates pick the city's own area. The text fits
        ``max_text_length`` and ends with the link to the alert's public page.
        """
        return render_message(
            self.context.templates,
            alert,
            language,
            max_length=self.max_text_length,
            public_url=self.context.public_url,
            place=place,
        )

    def measure(self, text: str) -> int:
        """The length of ``text`` as the provider counts it, against ``max_text_length``.

        Code points by default (Telegram's count); a provider counting otherwise uses its
        rule from :mod:`channels.lengths` (LINE: ``utf16_units``, X: ``x_weighted``…).
        """
        return characters(text)

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> Mapping[int, SendResult]:
        """One attempt; the answer maps each recipient's ``delivery_id`` to a result.

        By default one :meth:`send_one` per recipient, one after another (the worker's
        pacing spaces them; its sender pool runs several ``send`` calls at once).
        """
        results: dict[int, SendResult] = {}
        for recipient in recipients:
            results[recipient.delivery_id] = await self.send_one(message, recipient)
        return results

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        """One attempt for one recipient: what a provider without batches implements."""
        raise NotImplementedError(f"{type(self).__name__} implements neither send_one nor send")

    async def confirm(self, sent: Sequence[Sent]) -> Mapping[int, Confirmation]:
        """Ask the provider whether what the database calls delivered exists there, by ``delivery_id``.

        The read-back of ``dispatcher reconcile``: the default reads nothing back (see
        :meth:`unconfirmed`); a provider that can say whether a message exists overrides it
        (Mastodon: ``GET /api/v1/statuses/:id``). Like ``send``, it translates the
        provider's errors (``unverifiable``) instead of raising.
        """
        return {s.delivery_id: self.unconfirmed(s) for s in sent}

    def unconfirmed(self, s: Sent) -> Confirmation:
        """The verdict without asking the provider: a missing id is a mismatch where the provider gives one."""
        if s.remote_id:
            return Confirmation("unchecked", f"{self.name} offers no read-back")
        if not self.remote_ids:
            return Confirmation("unchecked", f"{self.name} gives no id for what it accepts")
        if self.broadcast and s.alert is not None and not_ours(self.render(s.alert, s.language)):
            return Confirmation("skipped", "not posted: the alert does not concern the city")
        return Confirmation("no_provider_id", "delivered without the provider's id for it")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
