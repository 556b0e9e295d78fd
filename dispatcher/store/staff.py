"""Staff accounts, their sessions and the login throttle (migration 0009).

Named queries only; the rules (hashing, expiry times, limits) are the caller's
(:mod:`dispatcher.console.accounts`, :mod:`dispatcher.web.auth`). A session is
looked up by the SHA-256 of its cookie token, never by the token itself.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

ROLES = ("viewer", "author", "approver", "admin")


async def insert_staff(
    conn: asyncpg.Connection, username: str, *, role: str, password_hash: str, display_name: str = ""
) -> int | None:
    """A new account; None when ``username`` exists."""
    row = await conn.fetchrow(
        "INSERT INTO staff (username, display_name, role, password_hash) VALUES ($1, $2, $3::staff_role, $4)"
        " ON CONFLICT (username) DO NOTHING RETURNING id",
        username,
        display_name,
        role,
        password_hash,
    )
    return None if row is None else int(row["id"])


async def staff_by_name(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, username, display_name, role::text AS role, password_hash, active, created_at,"
        " password_changed_at FROM staff WHERE username = $1",
        username,
    )
    return row


async def list_staff(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every account with when it last used a session."""
    return list(
        await conn.fetch(
            "SELECT s.id, s.username, s.display_name, s.role::text AS role, s.active, s.created_at,"
            " s.password_changed_at, (SELECT max(last_seen) FROM staff_sessions WHERE staff_id = s.id) AS last_seen"
            " FROM staff s ORDER BY s.username"
        )
    )


async def set_password(conn: asyncpg.Connection, staff_id: int, password_hash: str) -> None:
    await conn.execute(
        "UPDATE staff SET password_hash = $2, password_changed_at = now() WHERE id = $1", staff_id, password_hash
    )


async def set_role(conn: asyncpg.Connection, staff_id: int, role: str) -> None:
    await conn.execute("UPDATE staff SET role = $2::staff_role WHERE id = $1", staff_id, role)


async def set_active(conn: asyncpg.Connection, staff_id: int, active: bool) -> None:
    await conn.execute("UPDATE staff SET active = $2 WHERE id = $1", staff_id, active)


async def create_session(
    conn: asyncpg.Connection, session_hash: str, staff_id: int, *, csrf_token: str, address: str, user_agent: str
) -> None:
    await conn.execute(
        "INSERT INTO staff_sessions (id, staff_id, csrf_token, address, user_agent) VALUES ($1, $2, $3, $4, $5)",
        session_hash,
        staff_id,
        csrf_token,
        address,
        user_agent[:300],
    )


async def touch_session(
    conn: asyncpg.Connection, session_hash: str, *, idle_seconds: float, absolute_seconds: float
) -> asyncpg.Record | None:
    """The live session's account (and its CSRF token), its idle timer restarted; None when expired or revoked."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        UPDATE staff_sessions s SET last_seen = now()
        FROM staff u
        WHERE s.id = $1 AND u.id = s.staff_id AND u.active AND s.revoked_at IS NULL
          AND s.last_seen > now() - make_interval(secs => $2)
          AND s.created_at > now() - make_interval(secs => $3)
        RETURNING u.id, u.username, u.display_name, u.role::text AS role, s.csrf_token, s.created_at
        """,
        session_hash,
        idle_seconds,
        absolute_seconds,
    )
    return row


async def revoke_session(conn: asyncpg.Connection, session_hash: str) -> int | None:
    """End one session; the account it belonged to, if it was live."""
    value = await conn.fetchval(
        "UPDATE staff_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING staff_id",
        session_hash,
    )
    return None if value is None else int(value)


async def revoke_sessions_of(conn: asyncpg.Connection, staff_id: int) -> int:
    """End every session of an account (password changed, account disabled); how many."""
    status = await conn.execute(
        "UPDATE staff_sessions SET revoked_at = now() WHERE staff_id = $1 AND revoked_at IS NULL", staff_id
    )
    return int(status.split()[-1])


async def locked_until(conn: asyncpg.Connection, keys: list[str]) -> datetime | None:
    """The latest lock still in force on any of ``keys``."""
    value: datetime | None = await conn.fetchval(
        "SELECT max(locked_until) FROM login_throttle WHERE key = ANY($1::text[]) AND locked_until > now()", keys
    )
    return value


async def record_failure(
    conn: asyncpg.Connection, key: str, *, limit: int, window_seconds: float, lock_seconds: float
) -> tuple[int, datetime | None]:
    """Count a failed login against ``key``; lock it when ``limit`` is reached. (failures, locked until)."""
    row = await conn.fetchrow(
        """
        INSERT INTO login_throttle AS t (key, failures, first_failed) VALUES ($1, 1, now())
        ON CONFLICT (key) DO UPDATE SET
            failures = CASE WHEN t.first_failed < now() - make_interval(secs => $2) THEN 1 ELSE t.failures + 1 END,
            first_failed = CASE WHEN t.first_failed < now() - make_interval(secs => $2) THEN now()
                                ELSE t.first_failed END
        RETURNING failures
        """,
        key,
        window_seconds,
    )
    assert row is not None
    failures = int(row["failures"])
    until = None
    if failures >= limit:
        until = await conn.fetchval(
            "UPDATE login_throttle SET locked_until = now() + make_interval(secs => $2), failures = 0,"
            " first_failed = now() WHERE key = $1 RETURNING locked_until",
            key,
            lock_seconds,
        )
    return failures, until


async def clear_failures(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute("DELETE FROM login_throttle WHERE key = $1", key)
