"""The demo's staff accounts: one per role, with passwords made up at each start and printed, marked as demo.

``dispatcher demo`` calls :func:`create_demo_accounts` on its fresh database, so a
newcomer can log in to the console at once (``/login``) and try the two-person path:
``demo-author`` writes, ``demo-approver`` approves. Never for a real installation.
"""

from __future__ import annotations

import secrets

import asyncpg

from dispatcher.console import accounts
from dispatcher.console.accounts import Actor, Role

DEMO_ACCOUNTS = (
    ("demo-viewer", Role.VIEWER, "デモ 閲覧者"),
    ("demo-author", Role.AUTHOR, "デモ 作成者"),
    ("demo-approver", Role.APPROVER, "デモ 承認者"),
    ("demo-admin", Role.ADMIN, "デモ 管理者"),
)


async def create_demo_accounts(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    """Create the demo accounts; (username, role, password) of each, to print."""
    made = []
    for username, role, name in DEMO_ACCOUNTS:
        password = "demo-" + secrets.token_urlsafe(9)
        await accounts.add_user(conn, Actor("demo", "cli", "demo"), username, role, password, name)
        made.append((username, role.value, password))
    return made


def describe(made: list[tuple[str, str, str]], web_url: str | None) -> str:
    """The lines the demo prints at start."""
    lines = [f"DEMO staff accounts (for this demo only; log in at {web_url or ''}/login):"]
    lines += [f"  {u:<14} {r:<9} password {p}" for u, r, p in made]
    return "\n".join(lines)
