"""[delivery]: how the outbox workers claim, pace, retry and hand back deliveries.

Read by :class:`dispatcher.worker.OutboxWorker`; ``config/default.toml`` documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.constraints import at_least, greater_than


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """[delivery]: the outbox workers."""

    # Most deliveries one claim takes (a channel claims at most about a second of
    # its rate): fewer, larger claims cost PostgreSQL less per delivery.
    batch_size: int = field(default=250, metadata=at_least(1))
    # Fallback poll when no NOTIFY arrives (seconds).
    poll_interval: float = field(default=2.0, metadata=greater_than(0))
    # Retries are bounded by time: a delivery is retried until its alert expires or,
    # for an alert without expiry, until this many seconds after the alert came in.
    max_age: float = field(default=86400.0, metadata=at_least(60))
    backoff_base: float = field(default=2.0, metadata=greater_than(0))
    backoff_max: float = field(default=600.0, metadata=greater_than(0))
    # How long a claimed delivery may stay "sending" before another worker
    # assumes its owner died and re-queues it. Below a second, leases expire
    # between two renewals and live work is sent twice.
    lease_seconds: float = field(default=60.0, metadata=at_least(1))
    concurrency: int = field(default=32, metadata=at_least(1))
    shutdown_grace: float = field(default=10.0, metadata=at_least(0))
