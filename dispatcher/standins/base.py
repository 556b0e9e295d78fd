"""What the provider stand-ins (LINE, Mastodon, X, Bluesky) share: lifecycle, stats, refusals, rate windows, CLI.

Each stand-in is an aiohttp server on a local port answering in its provider's own
wire format (the provider's API link is in each module's docstring). This module holds
only what is the same for all of them, following the shape of
:mod:`dispatcher.standins.telegram_api` (which predates it and keeps its own copy):
``start()`` / ``stop()`` / ``base_url``, a ``GET /_standin/stats`` JSON endpoint for
benches that run a stand-in in another process, failures injected on demand, what
was refused and why, and a ``python -m dispatcher.standins.<name>`` entry point that
prints ``base_url`` and serves until SIGTERM.

Rate windows are fixed windows, the way the providers count: Mastodon's Rack::Attack
aligns them to multiples of the period since the epoch
(https://github.com/mastodon/mastodon/blob/main/config/initializers/rack_attack.rb),
while Bluesky's rate-limiter-flexible and X start a window at its first request.
They run on ``clock`` (wall-clock seconds, because the providers' reset headers are
wall-clock timestamps), which tests replace to move time without sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

STATS_PATH = "/_standin/stats"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One request the stand-in refused, and why (for assertions and stats)."""

    # time.monotonic() when answered.
    at: float
    method: str
    path: str
    status: int
    reason: str


@dataclass(slots=True)
class Injected:
    """A failure to answer instead of the real outcome, ``remaining`` more times."""

    status: int
    remaining: int
    # Only requests whose key (a recipient, an endpoint...) equals this; None: any.
    match: str | None = None
    # Seconds to ask the client to wait (429), where the provider says so.
    retry_after: int | None = None
    # Do the work, then answer the failure: the case idempotency keys exist for.
    after_accept: bool = False


class FailureQueue:
    """Failures queued by the tests' knobs, consumed in order by matching requests."""

    def __init__(self) -> None:
        self._items: list[Injected] = []

    def add(self, failure: Injected) -> None:
        self._items.append(failure)

    def take(self, key: str | None = None) -> Injected | None:
        """The next failure for a request with ``key``, spending one of its count."""
        for failure in self._items:
            if failure.remaining > 0 and failure.match in (None, key):
                failure.remaining -= 1
                self._items = [f for f in self._items if f.remaining > 0]
                return failure
        return None

    def clear(self) -> None:
        self._items.clear()


@dataclass(frozen=True, slots=True)
class Budget:
    """The state of one rate window for one key, as rate-limit headers report it."""

    name: str
    limit: int
    remaining: int
    # Wall-clock epoch seconds at which the window restarts.
    reset_at: float
    period: float
    allowed: bool = True


@dataclass(slots=True)
class FixedWindow:
    """``limit`` points per ``period`` seconds for each key.

    ``aligned``: windows start at multiples of ``period`` since the epoch (Rack::Attack);
    otherwise a window starts with the first request after the previous one ended.
    """

    name: str
    limit: int
    period: float
    aligned: bool = False
    _buckets: dict[str, tuple[float, int]] = field(default_factory=dict)

    def _current(self, key: str, now: float) -> tuple[float, int]:
        bucket = self._buckets.get(key)
        if self.aligned:
            start = now - now % self.period
            return start, bucket[1] if bucket is not None and bucket[0] == start else 0
        if bucket is None or now >= bucket[0] + self.period:
            return now, 0
        return bucket

    def peek(self, key: str, now: float, points: int = 1) -> Budget:
        """What taking ``points`` now would leave, without taking them."""
        start, used = self._current(key, now)
        allowed = used + points <= self.limit
        remaining = self.limit - used - points if allowed else max(0, self.limit - used)
        return Budget(self.name, self.limit, remaining, start + self.period, self.period, allowed)

    def take(self, key: str, now: float, points: int = 1) -> Budget:
        """Spend ``points`` if the window has them; a refused budget spends nothing."""
        budget = self.peek(key, now, points)
        if budget.allowed:
            start, used = self._current(key, now)
            self._buckets[key] = (start, used + points)
        return budget

    def clear(self) -> None:
        self._buckets.clear()


def take_all(spends: Iterable[tuple[FixedWindow, str, int]], now: float) -> list[Budget]:
    """Spend (window, key, points) in every window or, if one would refuse, in none.

    Returns each window's budget; all of them are allowed when the points were spent.
    """
    spends = list(spends)
    budgets = [window.peek(key, now, points) for window, key, points in spends]
    if all(b.allowed for b in budgets):
        budgets = [window.take(key, now, points) for window, key, points in spends]
    return budgets


def tightest(budgets: Sequence[Budget]) -> Budget:
    """The budget rate-limit headers report: a refused one, else the one with the fewest points left.

    Mastodon and the atproto PDS both report the limit "you are closest to exceeding".
    """
    return next((b for b in budgets if not b.allowed), None) or min(budgets, key=lambda b: b.remaining)


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def json_body(request: web.Request) -> Any:
    """The request body parsed as JSON; ValueError (json.JSONDecodeError) if it is not."""
    return json.loads(await request.text())


class StandInServer:
    """An aiohttp server with the lifecycle, knobs and bookkeeping every stand-in shares.

    Subclasses add their routes in :meth:`add_routes` and their own figures in
    :meth:`provider_stats`, and answer refusals through :meth:`refused` so that
    each one is recorded with its reason.
    """

    # Appended to "http://host:port" to form base_url (Telegram's would be "/bot").
    url_prefix = ""

    def __init__(self) -> None:
        self.base_url = ""
        self.requests = 0
        self.refusals: list[Refusal] = []
        self.failures = FailureQueue()
        # Seconds to wait before answering each request: a slow provider.
        self.delay = 0.0
        # Wall clock for rate windows and token expiry; tests replace it.
        self.clock: Callable[[], float] = time.time
        self._runner: web.AppRunner | None = None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def fail(self, status: int = 503, *, count: int = 1) -> None:
        """Answer the next ``count`` writes with the server error ``status``."""
        self.failures.add(Injected(status, count))

    def throttle(self, *, count: int = 1) -> None:
        """Answer the next ``count`` writes with 429, as if the budget were spent."""
        self.failures.add(Injected(429, count))

    def provider_stats(self, since: int) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        """Forget what was received and every injected failure (limits and accounts stay)."""
        self.requests = 0
        self.refusals.clear()
        self.failures.clear()

    def refused(self, request: web.Request, response: web.Response, reason: str) -> web.Response:
        """Record that ``request`` was refused with ``response`` because of ``reason``; return it."""
        self.refusals.append(Refusal(time.monotonic(), request.method, request.path, response.status, reason))
        return response

    # -- lifecycle -----------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); return the ``base_url`` for clients."""
        app = web.Application(middlewares=[self._count])
        self.add_routes(app.router)
        app.router.add_get(STATS_PATH, self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}{self.url_prefix}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _count(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != STATS_PATH:
            self.requests += 1
            if self.delay:
                await asyncio.sleep(self.delay)
        return await handler(request)

    def stats(self, since: int = 0) -> dict[str, Any]:
        """What was received so far; lists from index ``since`` on (cheap polling)."""
        return {
            "clock": "monotonic",
            "now": time.monotonic(),
            "requests": self.requests,
            "since": since,
            "refusal_count": len(self.refusals),
            "refusals": [
                {"at": r.at, "method": r.method, "path": r.path, "status": r.status, "reason": r.reason}
                for r in self.refusals[since:]
            ],
            **self.provider_stats(since),
        }

    async def _stats(self, request: web.Request) -> web.Response:
        try:
            since = max(0, int(request.query.get("since", "0")))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        return web.json_response(self.stats(since))


# -- standalone ----------------------------------------------------------------


def cli_main(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    build: Callable[[argparse.Namespace], StandInServer],
    argv: list[str] | None = None,
) -> int:
    """``python -m dispatcher.standins.<name>``: print base_url, serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    parser.add_argument("--delay", type=float, default=0.0, help="answer every request N seconds late")
    add_arguments(parser)
    args = parser.parse_args(argv)

    async def serve() -> None:
        standin = build(args)
        standin.delay = args.delay
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        base_url = await standin.start(args.host, args.port)
        try:
            print(base_url, flush=True)
            await stop.wait()
        finally:
            await standin.stop()

    asyncio.run(serve())
    return 0
