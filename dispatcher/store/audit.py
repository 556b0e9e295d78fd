"""The append-only audit log of staff actions (migration 0009).

Rows are only ever inserted: a trigger refuses UPDATE, DELETE and TRUNCATE, so the
log cannot be rewritten by the service, nor by an operator with the service's
database role short of dropping the trigger (which is itself a schema change).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

COLUMNS = ("id", "at", "actor", "role", "action", "target", "address", "before", "after")


def _jsonable(value: Mapping[str, Any] | None) -> Any:
    return None if value is None else json.loads(json.dumps(dict(value), ensure_ascii=False, default=str))


async def append(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    role: str = "",
    target: str = "",
    address: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> int:
    """One entry; its id."""
    value = await conn.fetchval(
        "INSERT INTO audit_log (actor, role, action, target, address, before, after)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) RETURNING id",
        actor,
        role,
        action,
        target,
        address,
        _jsonable(before),
        _jsonable(after),
    )
    return int(value)


async def entries(
    conn: asyncpg.Connection, *, since: datetime | None = None, limit: int | None = None, newest_first: bool = False
) -> list[asyncpg.Record]:
    """Entries at or after ``since`` (all by default), oldest first unless ``newest_first``."""
    order = "DESC" if newest_first else "ASC"
    return list(
        await conn.fetch(
            f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE $1::timestamptz IS NULL OR at >= $1"  # noqa: S608
            f" ORDER BY id {order} LIMIT $2",
            since,
            limit,
        )
    )
