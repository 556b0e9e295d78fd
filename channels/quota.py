"""A provider's monthly message quota, as a channel reads it and operators see it.

LINE counts the messages an official account sends per calendar month (Japan time)
against its plan's quota (https://developers.line.biz/en/docs/messaging-api/pricing/):
the free コミュニケーションプラン 200, the ライトプラン 5,000, the スタンダードプラン 30,000
(and more, paid per message), and none at all for the 地方公共団体プラン. A channel that
has one keeps a :class:`Quota`, refuses a batch that would exceed it, and hands every
reading to a :class:`QuotaBook` (the daemon's writes ``channel_quotas``, which
``dispatcher status`` and the dashboard read; channels import nothing of the store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dispatcher.model import JST


@dataclass(frozen=True, slots=True)
class Quota:
    """One reading: the plan, the month's limit (None: no limit), what was used, when it was read.

    ``used`` is the provider's count plus what this process sent since it was read (an
    upper bound: LINE does not count messages to people who blocked the account).
    ``held``: why sends are held back now (the quota would be exceeded), else None.
    """

    plan: str
    limit: int | None
    used: int
    read_at: float
    held: str | None = None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def would_exceed(self, messages: int) -> bool:
        """Whether sending ``messages`` more this month goes past the limit."""
        return self.limit is not None and self.used + messages > self.limit

    def share(self, messages: int = 0) -> float | None:
        """The part of the limit used once ``messages`` more are sent (None: no limit)."""
        if self.limit is None:
            return None
        return (self.used + messages) / self.limit if self.limit else 1.0


class QuotaBook(Protocol):
    """Where a channel writes what it read of its quota (see the module docstring)."""

    async def record(self, channel: str, quota: Quota) -> None:
        """Keep ``quota`` as the channel's latest reading."""
        ...


def next_month(now: datetime) -> datetime:
    """The start of the next calendar month in Japan time, when LINE's count starts again."""
    local = now.astimezone(JST)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=JST)
