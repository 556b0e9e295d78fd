"""``[publication]``: the public site's static copy, its feeds, and e-mail subscriptions."""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.constraints import at_least, between, greater_than


@dataclass(frozen=True, slots=True)
class PublicationConfig:
    """``[publication]`` (every key is documented in ``config/default.toml``)."""

    enabled: bool = True
    # The static copy of the public pages and feeds; empty: <state_dir>/site.
    static_dir: str = ""
    # Signs public links (unsubscribe, manage) and form tokens; empty: a key minted once
    # in the database and shared by every daemon on it. At least 32 bytes when set.
    secret: str | None = field(default=None, repr=False)
    # How long the confirmation link of a subscription works.
    confirm_hours: float = field(default=48.0, metadata=greater_than(0))
    # Subscription requests per address, and per client, in an hour.
    requests_per_address: int = field(default=3, metadata=at_least(1))
    requests_per_client: int = field(default=20, metadata=at_least(1))
    # Entries in each Atom feed and the CAP index.
    feed_entries: int = field(default=50, metadata=between(1, 1000))
    # How long an alert without an expiry stays "current" on the site (hours).
    current_hours: float = field(default=24.0, metadata=greater_than(0))
    # How long what the municipal broadcast system aired stays listed on the site (hours).
    relisten_hours: float = field(default=24.0, metadata=at_least(24))
    # CAP <sender> and the Atom feeds' author.
    cap_sender: str = "bousai@city.numazu.example"
    author: str = "沼津市 危機管理課"

    def __post_init__(self) -> None:
        if self.secret is not None and len(self.secret.encode()) < 32:
            raise ValueError("secret must be at least 32 bytes (openssl rand -hex 32)")
