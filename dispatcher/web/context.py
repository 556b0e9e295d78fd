"""What the web server is given: exactly what its pages read, not the whole service.

:class:`WebContext` is built by the daemon (``dispatcher.app.Service.web_context``)
and handed to :func:`dispatcher.web.app.create_app`; the handlers find it under
:data:`WEB` in the application. The web knows nothing of the Service, so the daemon
may import the web without the web importing the daemon back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import asyncpg
from aiohttp import web

from dispatcher.console.config import ConsoleConfig

if TYPE_CHECKING:
    from dispatcher.console.wiring import ConsoleSetup
if TYPE_CHECKING:
    from dispatcher.publication.wiring import Publication
if TYPE_CHECKING:
    from dispatcher.metrics import Metrics
    from dispatcher.reconcile import Report


class ShareView(Protocol):
    """This daemon's place among the live ones serving one channel (``dispatcher.peers.Share``)."""

    @property
    def live(self) -> int: ...

    @property
    def rank(self) -> int: ...


class PeersView(Protocol):
    """The daemon's registration among its peers, as ``/healthz`` shows it (``dispatcher.peers.Peers``)."""

    @property
    def id(self) -> int | None: ...

    @property
    def shares(self) -> Mapping[str, ShareView]: ...


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What the dashboard knows of an enabled channel's limits, for its health and its estimates.

    ``rate`` is recipients per second at most (the channel's budget times its batch
    size, within its longer window); ``price`` what one delivery is billed where the
    provider bills (X: a post), None where it is free; ``quota`` answers the remaining
    quota where the provider has one (LINE's monthly messages), None where not known:
    the hook a channel fills when it learns it.
    """

    rate: float
    batch_size: int = 1
    broadcast: bool = False
    price: Decimal | None = None
    quota: Callable[[], int | None] | None = None


@dataclass(frozen=True, slots=True)
class WebContext:
    """What the pages need from the daemon.

    ``site_name`` is ``[service] name``; ``body_timeout`` is ``[web] body_timeout_seconds``;
    ``channels`` are the enabled channels (the dashboard names them) and
    ``known_channels`` every registered one (what the deliveries pages may filter by);
    ``peers`` (live-updated) gives ``/healthz`` this daemon's shares; ``routes`` are
    the pushed sources' own (the broadcast webhook). ``accounts`` is ``[console]``
    (sessions and logins); ``secure_cookies`` is whether ``[service] public_url`` is
    https (cookies are then ``Secure`` and ``__Host-``); ``console`` is the staff
    console (None: its pages answer 404, the login still guards the rest);
    ``publication`` the public site, its feeds and the subscription forms (None: only
    the plain alert page). ``dsn`` is where the live dashboard LISTENs (None: on a
    connection of the pool, held); ``channel_info`` the enabled channels' limits;
    ``metrics`` the daemon's Prometheus metrics (None: ``/metrics``
    answers 404); ``reconcile`` runs ``dispatcher reconcile``'s comparison since a time with
    the daemon's own channels (None: ``/reconcile`` answers 404).
    """

    pool: asyncpg.Pool
    site_name: str
    body_timeout: float
    channels: tuple[str, ...] = ()
    known_channels: tuple[str, ...] = ()
    peers: PeersView | None = None
    routes: Sequence[web.AbstractRouteDef] = ()
    accounts: ConsoleConfig = field(default_factory=ConsoleConfig)
    secure_cookies: bool = False
    console: ConsoleSetup | None = None
    publication: Publication | None = None
    dsn: str | None = None
    channel_info: Mapping[str, ChannelInfo] = field(default_factory=dict)
    metrics: Metrics | None = None
    reconcile: Callable[[datetime], Awaitable[Report]] | None = None


WEB: web.AppKey[WebContext] = web.AppKey("web", WebContext)
