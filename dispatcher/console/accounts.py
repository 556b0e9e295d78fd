"""Staff accounts: roles, argon2id passwords, and account changes recorded in the audit log.

Roles are ordered, each including the ones below it: **viewer** (the dashboard, the
deliveries pages and the JSON API), **author** (composes and submits messages),
**approver** (approves, rejects, returns and cancels; releases held broadcasts; pauses
and resumes channels), **admin** (accounts and the audit log). Nobody approves a
message they wrote or submitted, whatever their role (:mod:`dispatcher.console.workflow`).

Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher``, RFC 9106 low-memory
profile parameters: https://argon2-cffi.readthedocs.io/en/stable/api.html). Hashing
takes tens of milliseconds of CPU on purpose, so it runs in a worker thread
(:func:`asyncio.to_thread`) and never on the event loop that sends alerts.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dispatcher.store import audit, staff


class Role(enum.StrEnum):
    """A staff member's role; a higher one may do everything a lower one may."""

    VIEWER = "viewer"
    AUTHOR = "author"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank


USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024

_hasher = PasswordHasher()  # argon2id, time_cost 3, 64 MiB, parallelism 4
# Verified against when the account does not exist, so that an unknown name costs as
# long as a wrong password (no account enumeration by timing).
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


class AccountError(ValueError):
    """An account change that cannot be made; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does something, for the audit log: a staff member, or an OS user at the CLI."""

    name: str
    role: str = ""
    address: str = ""
    staff_id: int | None = None


def username_problem(name: str) -> str | None:
    if not USERNAME.fullmatch(name):
        return "a username is 1-63 characters: lower-case letters, digits, '.', '_' and '-', not starting with a sign"
    return None


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` may not be used, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password has at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} characters"
    if username and username.casefold() in password.casefold():
        return "a password must not contain the username"
    if len(set(password)) < 5:
        return "a password needs more than a few distinct characters"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; ``None`` (no such account) is checked against a dummy, and fails."""

    def check() -> bool:
        try:
            return bool(_hasher.verify(password_hash or _DUMMY_HASH, password)) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with weaker parameters than today's (rehash at the next login)."""
    try:
        return bool(_hasher.check_needs_rehash(password_hash))
    except InvalidHashError:
        return True


def _record(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"username": row["username"], "role": row["role"], "active": row["active"], "name": row["display_name"]}


async def add_user(
    conn: asyncpg.Connection, actor: Actor, username: str, role: Role, password: str, display_name: str = ""
) -> int:
    """A new account (audited as ``user.add``); AccountError when the name or password is unfit or taken."""
    wrong = username_problem(username) or password_problem(password, username)
    if wrong:
        raise AccountError(wrong)
    hashed = await hash_password(password)
    async with conn.transaction():
        staff_id = await staff.insert_staff(
            conn, username, role=role.value, password_hash=hashed, display_name=display_name
        )
        if staff_id is None:
            raise AccountError(f"an account {username!r} exists already")
        after = {"username": username, "role": role.value, "active": True, "name": display_name}
        await audit.append(
            conn,
            actor=actor.name,
            role=actor.role,
            action="user.add",
            target=f"user:{username}",
            address=actor.address,
            after=after,
        )
    return staff_id


async def _existing(conn: asyncpg.Connection, username: str) -> asyncpg.Record:
    row = await staff.staff_by_name(conn, username)
    if row is None:
        raise AccountError(f"no account {username!r}")
    return row


async def set_password(conn: asyncpg.Connection, actor: Actor, username: str, password: str) -> None:
    """A new password (audited as ``user.passwd``, without the hashes); every session of the account ends."""
    wrong = password_problem(password, username)
    if wrong:
        raise AccountError(wrong)
    hashed = await hash_password(password)
    async with conn.transaction():
        row = await _existing(conn, username)
        await staff.set_password(conn, row["id"], hashed)
        ended = await staff.revoke_sessions_of(conn, row["id"])
        await audit.append(
            conn,
            actor=actor.name,
            role=actor.role,
            action="user.passwd",
            target=f"user:{username}",
            address=actor.address,
            after={"sessions_ended": ended},
        )


async def set_active(conn: asyncpg.Connection, actor: Actor, username: str, active: bool) -> None:
    """Disable (every session ends) or enable an account; audited as ``user.disable`` / ``user.enable``."""
    async with conn.transaction():
        row = await _existing(conn, username)
        if actor.staff_id == row["id"] and not active:
            raise AccountError("you cannot disable your own account")
        await staff.set_active(conn, row["id"], active)
        ended = 0 if active else await staff.revoke_sessions_of(conn, row["id"])
        after = {**(_record(row) or {}), "active": active, "sessions_ended": ended}
        await audit.append(
            conn,
            actor=actor.name,
            role=actor.role,
            action="user.enable" if active else "user.disable",
            target=f"user:{username}",
            address=actor.address,
            before=_record(row),
            after=after,
        )


async def set_role(conn: asyncpg.Connection, actor: Actor, username: str, role: Role) -> None:
    """Another role (audited as ``user.role``); it applies from the account's next request (read each time)."""
    async with conn.transaction():
        row = await _existing(conn, username)
        if actor.staff_id == row["id"]:
            raise AccountError("you cannot change your own role")
        await staff.set_role(conn, row["id"], role.value)
        await audit.append(
            conn,
            actor=actor.name,
            role=actor.role,
            action="user.role",
            target=f"user:{username}",
            address=actor.address,
            before=_record(row),
            after={**(_record(row) or {}), "role": role.value},
        )
