"""[console]: the staff console (accounts, sessions, logins, the console's own alerts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.constraints import at_least, between, greater_than, non_empty


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """[console]: who the console's alerts are from, session lifetimes, login limits."""

    # The CAP sender of every alert the console sends. Updates and cancellations replace
    # only alerts of the same source and sender, so change it only between alerts.
    sender: str = field(default="console.city.numazu.example", metadata=non_empty())
    sender_name: str = field(default="沼津市 危機管理課", metadata=non_empty())
    # A TOML file of message templates laid over the packaged config/console/messages.toml.
    messages: str = ""
    session_idle_minutes: float = field(default=30.0, metadata=greater_than(0))
    session_absolute_hours: float = field(default=12.0, metadata=greater_than(0))
    # Failed logins before an account name (or a client address) is locked, counted
    # within lock_minutes; the lock lasts lock_minutes.
    login_failures_per_account: int = field(default=5, metadata=at_least(1))
    login_failures_per_address: int = field(default=20, metadata=at_least(1))
    login_lock_minutes: float = field(default=15.0, metadata=greater_than(0))
    # Every failed login is answered this much later (slows guessing).
    login_failure_delay_seconds: float = field(default=1.0, metadata=between(0, 30))
    # No alert of the console may run longer than this (the rule: 24 h).
    max_expiry_hours: float = field(default=24.0, metadata=between(0.25, 24))
