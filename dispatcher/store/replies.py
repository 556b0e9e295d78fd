"""What the LINE adapter adds to the bot replies the residents' core queued: the event's reply token.

A LINE event can be answered once, free of the monthly quota, with up to five messages
through its reply token (https://developers.line.biz/en/reference/messaging-api/#send-reply-message).
So the replies queued for one event (``deliveries.reply``, :mod:`dispatcher.store.residents`)
are bundled, in the same transaction, into the first of them with the token; the
channel sends them in one reply request (or one push, if the token has expired).
Also the record of webhook events already handled (``bot_updates``), so a redelivered
event is answered once.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

# LINE's reply and push take at most five messages.
MAX_MESSAGES = 5


async def last_delivery_id(conn: asyncpg.Connection) -> int:
    """The highest delivery id so far (replies queued after it are the current event's)."""
    return int(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM deliveries") or 0)


def _payload(value: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(value) if isinstance(value, str) else dict(value)
    return decoded


async def bundle_replies(conn: asyncpg.Connection, channel: str, address: str, after_id: int, token: str) -> int:
    """Put the replies queued for ``address`` since ``after_id`` into the first, with ``token``; return them.

    The first keeps its own payload and gets ``reply_token`` and ``more`` (the others'
    payloads, up to five messages in all); the others are deleted (never claimed: the
    caller's transaction has not committed them). Beyond five, the rest stay as they are.
    """
    rows = await conn.fetch(
        "SELECT id, reply FROM deliveries WHERE channel = $1 AND address = $2 AND alert_id IS NULL"
        " AND state = 'queued' AND id > $3 ORDER BY id",
        channel,
        address,
        after_id,
    )
    if not rows:
        return 0
    first, rest = rows[0], rows[1:MAX_MESSAGES]
    payload = _payload(first["reply"])
    payload["reply_token"] = token
    payload["more"] = [_payload(r["reply"]) for r in rest]
    # Not a transition: no delivery event (dispatcher.quiet_update).
    await conn.execute(
        "WITH quiet AS (SELECT set_config('dispatcher.quiet_update', 'on', true))"
        " UPDATE deliveries d SET reply = $2::jsonb FROM quiet WHERE d.id = $1",
        first["id"],
        json.dumps(payload, ensure_ascii=False),
    )
    if rest:
        await conn.execute("DELETE FROM deliveries WHERE id = ANY($1::bigint[])", [r["id"] for r in rest])
    return 1 + len(rest)


async def first_time(conn: asyncpg.Connection, channel: str, event_id: str, kind: str) -> bool:
    """Record the webhook event ``event_id`` as handled; False if it was already (a redelivery)."""
    result = await conn.execute(
        "INSERT INTO bot_updates (channel, update_key, body, done_at) VALUES ($1, $2, $3::jsonb, now())"
        " ON CONFLICT (channel, update_key) DO NOTHING",
        channel,
        event_id,
        json.dumps({"kind": kind}),
    )
    return bool(result.split()[-1] == "1")
