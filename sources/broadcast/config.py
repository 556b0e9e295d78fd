"""[broadcast]: the municipal broadcast system (同報系防災行政無線), ``sources/broadcast/``.

The section :class:`sources.broadcast.source.BroadcastSource` is built from;
``config/default.toml`` documents every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dispatcher.config import ConfigError
from dispatcher.constraints import between, greater_than, http_url, replaced_whole, shaped_name, signing_secret


@dataclass(frozen=True, slots=True)
class BroadcastConfig:
    """[broadcast]: the municipal broadcast system (同報系防災行政無線), ``sources/broadcast/``.

    The webhook (``POST /hooks/broadcast``) is served when ``secret`` is set, the
    transcript feed is polled when ``feed_url`` is. ``groups`` maps loudspeaker groups to
    district codes (``all`` is built in: the whole city); ``routes`` maps a broadcast
    category to the only channels that carry it.
    """

    enabled: bool = False
    # The HMAC-SHA256 key the console signs with: at least 32 bytes.
    secret: str = field(default="", repr=False, metadata=signing_secret())
    # CAP senders accepted (empty: any sender holding the secret).
    senders: tuple[str, ...] = field(default=(), metadata=shaped_name(each=True))
    # Sender of JSON bodies without one, and of feed entries.
    default_sender: str = field(default="bousai-musen.city.numazu.shizuoka.jp", metadata=shaped_name())
    # Not above what the CAP parser reads (sources.cap.MAX_BYTES, 5 MB).
    max_body_bytes: int = field(default=262144, metadata=between(1024, 4 * 1024 * 1024))
    max_skew_seconds: int = field(default=300, metadata=between(1, 3600))
    feed_url: str = field(default="", metadata=http_url(empty=True))
    feed_poll_seconds: int = field(default=60, metadata=between(1, 1800))
    feed_timeout_seconds: float = field(default=10.0, metadata=greater_than(0))
    hold_emergency: bool = False
    hold_ordinary: bool = True
    # Mappings of the city's own: an operator's table replaces the packaged examples.
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, metadata=replaced_whole())
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict, metadata=replaced_whole())

    def __post_init__(self) -> None:
        if self.enabled and not self.secret and not self.feed_url:
            raise ConfigError("[broadcast] enabled = true needs secret_env / secret_file (webhook) or feed_url")
        if "all" in self.groups:
            raise ConfigError("[broadcast.groups] 'all' is built in (the whole city) and cannot be redefined")
