"""Rate limits used by the outbox workers' send gate (:mod:`dispatcher.gate`).

A :class:`RateLimiter` paces a channel's requests globally (Telegram: about 30
messages/s): a :class:`TokenBucket` smooths them, and a :class:`SlidingWindow`
guarantees what providers actually count, no more than N requests in any one
second, with a small margin for network jitter (requests leave 1/30 s apart
but do not arrive so). :class:`RecipientSpacing` keeps the minimum interval
between two messages to the same recipient (Telegram: 1 message/s per chat),
with the same margin. Pauses a provider asks for (HTTP 429) are not kept here
but in the gate and the database (``channel_state``, ``recipient_pauses``), so
that every worker and every restart honours them; backoff after failures is
:mod:`dispatcher.retry`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Seconds added to every window and interval: requests leave exactly spaced but
# arrive with a few milliseconds of jitter, and a provider counting "N per
# second" on arrival would answer 429 to the one that arrives early.
JITTER_MARGIN = 0.03


class TokenBucket:
    """Classic token bucket; ``acquire`` waits until a token is available.

    ``burst`` defaults to one second's worth of tokens, but at most
    ``max_burst``: starting a batch with a full second of tokens would exceed a
    strict per-second limit enforced over a sliding window.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self._burst = burst
        self._tokens = float("inf")  # starts full: set_rate caps it at the capacity
        self.set_rate(rate)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    def set_rate(self, rate: float) -> None:
        """(Re)set the rate; tokens beyond the new capacity are dropped."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, self._burst if self._burst is not None else min(rate, 1.0 + rate * 0.1))
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` now if nobody is waiting and they are there (no await)."""
        if self._lock.locked():
            return False  # waiters first: keep the order
        self._refill()
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    async def acquire(self, tokens: float = 1.0) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return
                await asyncio.sleep((tokens - self._tokens) / self.rate)


class SlidingWindow:
    """At most ``limit`` acquisitions in any ``window`` (+ margin) seconds."""

    def __init__(self, limit: int, window: float = 1.0, margin: float = JITTER_MARGIN) -> None:
        self.margin = margin
        self.set_limit(limit, window)
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    def set_limit(self, limit: int, window: float = 1.0) -> None:
        """(Re)set the limit; acquisitions already in the window still count."""
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window positive")
        self.limit = limit
        self.span = window + self.margin

    def _prune(self, now: float) -> None:
        """Forget acquisitions that have left the window."""
        while self._times and now - self._times[0] >= self.span:
            self._times.popleft()

    def try_acquire(self) -> bool:
        """Take a slot now if nobody is waiting and the window has room (no await)."""
        if self._lock.locked():
            return False
        now = time.monotonic()
        self._prune(now)
        if len(self._times) < self.limit:
            self._times.append(now)
            return True
        return False

    def wait(self) -> float:
        """Seconds until a slot is free (0: free now), not counting others already waiting."""
        now = time.monotonic()
        self._prune(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[len(self._times) - self.limit] + self.span - now

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._prune(now)
                if len(self._times) < self.limit:
                    self._times.append(now)
                    return
                await asyncio.sleep(self.span - (now - self._times[0]))


class RateLimiter:
    """A channel's global budget: smooth (token bucket) and exact per window (sliding window).

    A rate below one per second becomes one request per ``1/rate`` seconds.
    ``window`` ``(n, seconds)`` adds a provider's longer count, at most ``n``
    requests in any ``seconds`` (Mastodon: 300 per 5 min; X: 200 posts per
    15 min), which a burst may spend at the per-second rate.
    :meth:`set_share` gives a daemon its part of all of them (:mod:`dispatcher.peers`).
    """

    def __init__(self, rate: float, margin: float = JITTER_MARGIN, *, window: tuple[int, float] | None = None) -> None:
        self.base_rate = self.rate = rate
        self.base_window = window
        self.bucket = TokenBucket(rate)
        self.window = SlidingWindow(*self._per_second(rate), margin)
        self.long = SlidingWindow(window[0], window[1], margin) if window is not None else None

    @staticmethod
    def _per_second(rate: float) -> tuple[int, float]:
        return (int(rate), 1.0) if rate >= 1 else (1, 1.0 / rate)

    def set_share(self, parts: int) -> None:
        """Keep ``1/parts`` of every budget (``parts`` daemons share the provider); waiters keep their place."""
        rate = self.base_rate / max(1, parts)
        if rate != self.rate:
            self.rate = rate
            self.bucket.set_rate(rate)
            self.window.set_limit(*self._per_second(rate))
        if self.long is not None and self.base_window is not None:
            n, seconds = self.base_window
            self.long.set_limit(max(1, n // max(1, parts)), seconds)

    def window_wait(self) -> float:
        """Seconds until the longer window has room (0 without one, or when it has)."""
        return self.long.wait() if self.long is not None else 0.0

    async def acquire(self) -> None:
        # Fast path without awaiting: most sends find both budgets free.
        if not self.bucket.try_acquire():
            await self.bucket.acquire()
        if not self.window.try_acquire():
            await self.window.acquire()
        if self.long is not None and not self.long.try_acquire():
            await self.long.acquire()


class RecipientSpacing:
    """Minimum interval between two sends to one recipient (bounded memory), plus a jitter margin.

    :meth:`reserve` hands out consecutive slots per recipient before the sends
    queue for the channel's global budget; :meth:`sending` checks, right before
    the request, against when this process's previous request to the recipient
    actually left: a long queue for the global budget can make a request leave
    well after its slot, so close to the next one's that the provider would
    count two in one interval (Telegram: a per-chat 429).
    """

    def __init__(
        self,
        interval: float,
        max_entries: int = 100_000,
        margin: float = JITTER_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval + margin
        self._clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()  # latest reserved slot, or later send
        self._sent: OrderedDict[str, float] = OrderedDict()  # when the latest request left
        self._max = max_entries

    def _remember(self, table: OrderedDict[str, float], address: str, at: float) -> None:
        table[address] = at
        table.move_to_end(address)
        while len(table) > self._max:
            table.popitem(last=False)

    def reserve(self, address: str, max_wait: float | None = None) -> float:
        """Reserve the next slot for ``address``; return seconds to wait for it.

        With ``max_wait``, a slot further away than that is not reserved (the
        caller will come back later): an unused reservation would push every
        later one back, and a delivery given back again and again would never go.
        """
        now = self._clock()
        last = self._last.get(address)
        slot = now if last is None else max(now, last + self.interval)
        if max_wait is not None and slot - now > max_wait:
            return slot - now
        self._remember(self._last, address, slot)
        return slot - now

    def sending(self, address: str) -> float:
        """Right before a request to ``address``: 0 and recorded as sent now, or seconds it is too early."""
        now = self._clock()
        sent = self._sent.get(address)
        if sent is not None and now - sent < self.interval:
            return sent + self.interval - now
        self._remember(self._sent, address, now)
        if self._last.get(address, now) < now:
            # Later than its slot: the next reservations count from now.
            self._remember(self._last, address, now)
        return 0.0
