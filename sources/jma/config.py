"""[jma]: polling of JMA's disaster XML Atom feeds (https://xml.kishou.go.jp/xmlpull.html).

The section :class:`sources.jma.feed.JmaSource` is built from; ``config/default.toml``
documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.config import ConfigError
from dispatcher.constraints import at_least, between, greater_than, http_url, non_empty

JMA_FEEDS = (
    "https://www.data.jma.go.jp/developer/xml/feed/regular.xml",
    "https://www.data.jma.go.jp/developer/xml/feed/extra.xml",
    "https://www.data.jma.go.jp/developer/xml/feed/eqvol.xml",
    "https://www.data.jma.go.jp/developer/xml/feed/other.xml",
)


@dataclass(frozen=True, slots=True)
class JmaConfig:
    """[jma]: polling of the JMA disaster XML Atom feeds."""

    enabled: bool = True
    feeds: tuple[str, ...] = field(default=JMA_FEEDS, metadata=http_url(each=True))
    # Cron-like: every ``poll_seconds`` at ``poll_offset_seconds`` past the minute.
    # Whole minutes become a cron minute step, which stops at 30 (*/60 is no step).
    poll_seconds: int = field(default=60, metadata=between(1, 1800))
    poll_offset_seconds: int = field(default=20, metadata=between(0, 59))
    fetch_concurrency: int = field(default=4, metadata=at_least(1))
    timeout_seconds: float = field(default=10.0, metadata=greater_than(0))
    user_agent: str = field(
        default="numazu-dispatcher/0.1 (+https://www.city.numazu.shizuoka.jp/)", metadata=non_empty()
    )
    # Long feeds for catching up, in the order of ``feeds``; empty: derived by
    # inserting ``_l`` before ``.xml`` (eqvol.xml → eqvol_l.xml), as JMA names them.
    long_feeds: tuple[str, ...] = field(default=(), metadata=http_url(each=True))
    # How far back the high-frequency feeds reach (JMA: at least ten minutes);
    # after a longer gap since the last successful poll, the long feeds are read.
    catchup_window_seconds: int = field(default=600, metadata=at_least(0))
    # Never catch up further back than this.
    catchup_max_age_seconds: int = field(default=21600, metadata=at_least(0))

    def __post_init__(self) -> None:
        if self.long_feeds and len(self.long_feeds) != len(self.feeds):
            raise ConfigError(
                f"[jma] long_feeds must name one long feed per feed, in order "
                f"({len(self.long_feeds)} given for {len(self.feeds)} feeds), or be empty to derive them"
            )
