"""[web]: the daemon's HTTP server (dashboard, public pages, webhooks), served with aiohttp.

https://docs.aiohttp.org/en/stable/web_reference.html#running-applications
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.constraints import between, greater_than, non_empty


@dataclass(frozen=True, slots=True)
class WebConfig:
    """[web]: the HTTP server (dashboard, public pages, webhooks)."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=non_empty())
    port: int = field(default=8080, metadata=between(0, 65535))
    # A client has this long to send a request's headers, counted from when it
    # connected or got its previous answer; an idle keep-alive connection is closed
    # after as long (aiohttp's keep-alive timer is both). Slowloris defence.
    header_timeout_seconds: float = field(default=10.0, metadata=greater_than(0))
    # And this long, after its headers, to send the whole body.
    body_timeout_seconds: float = field(default=30.0, metadata=greater_than(0))
