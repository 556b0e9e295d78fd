"""The delivery outbox in PostgreSQL: claiming, leases, completion, and each channel's state.

Deliveries are written by the fan-out (:mod:`dispatcher.store.fanout`). Workers claim
them with ``FOR UPDATE SKIP LOCKED`` ordered by priority then age, renew the leases
of what they hold, and write what became of a batch in one statement
(:func:`complete`); every state change is logged to ``delivery_events`` by triggers
(see ``schema.sql``), which also ``NOTIFY deliveries`` with the channel name
(:mod:`dispatcher.store.wakeups`). ``channel_state`` and ``recipient_pauses`` hold
the pauses every worker and every restart honours: the provider's, the backoff after
failures, an operator's hold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dispatcher.model import DeliveryState


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker now holds ("sending", leased).

    ``attempts`` counts the provider attempts before this one. ``claim`` (the
    row's claim counter) fences the completion: a row whose lease expired and
    was claimed again carries another, so a late answer of the first owner
    cannot overwrite the second's. ``alert_state`` and ``alert_expires`` are
    read in the same statement, so a cancel committed before the claim is
    always seen; ``alert_received`` (when the service received the alert)
    starts the maximum age of an alert without expiry.
    """

    id: int
    alert_id: int
    address: str
    language: str
    subscription_id: int | None
    priority: int
    attempts: int
    alert_state: str = "active"
    alert_expires: datetime | None = None
    claim: int = 0
    alert_received: datetime | None = None
    # Which of the alert's areas is this recipient's place (see fan_out), if known.
    place: int | None = None
    # 0010: a bot's reply (no alert; ``alert_id`` is 0): text and buttons (residents.service.reply_payload).
    reply: Mapping[str, Any] | None = None
    # The idempotency key of the batch it was last sent in (channels with durable_batch_keys).
    retry_key: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.reply is not None


def _reply(value: Any) -> Mapping[str, Any] | None:
    """A reply payload, whether or not the pool decodes jsonb."""
    if value is None:
        return None
    decoded: Mapping[str, Any] = json.loads(value) if isinstance(value, str) else value
    return decoded


def _partition_args(partition: tuple[int, int] | None) -> tuple[int | None, int | None]:
    """``(n, k)`` for the queries' ``abs(hashtext(address)) % n = k`` test; (None, None): no split."""
    return partition if partition is not None and partition[0] > 1 else (None, None)


async def claim(
    conn: asyncpg.Connection,
    channel: str,
    limit: int,
    lease_seconds: float,
    *,
    partition: tuple[int, int] | None = None,
    more_urgent_than: int | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries of ``channel``, most urgent first.

    ``partition`` ``(n, k)``: only recipients whose address hashes to ``k`` modulo
    ``n`` (daemons sharing a per-recipient-paced channel, see :mod:`dispatcher.peers`).
    ``more_urgent_than``: only deliveries of a lower priority number (the worker's
    overtaking claim while it is full of less urgent work).
    """
    n, k = _partition_args(partition)
    rows = await conn.fetch(
        """
        WITH picked AS (
            SELECT d.id, d.alert_id FROM deliveries d
            WHERE d.channel = $1 AND d.state = 'queued' AND d.not_before <= now()
              AND ($4::int IS NULL OR abs(hashtext(d.address)::bigint) % $4 = $5)
              AND ($6::smallint IS NULL OR d.priority < $6::smallint)
              AND NOT EXISTS (SELECT 1 FROM recipient_pauses p
                              WHERE p.channel = d.channel AND p.address = d.address
                                AND p.paused_until > now())
            ORDER BY d.priority, d.id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE deliveries d
        SET state = 'sending', claims = d.claims + 1, updated_at = now(),
            lease_until = now() + make_interval(secs => $3)
        FROM picked LEFT JOIN alerts a ON a.id = picked.alert_id
        WHERE d.id = picked.id
        RETURNING d.id, COALESCE(d.alert_id, 0) AS alert_id, d.address, d.language, d.subscription_id, d.priority,
                  d.attempts, COALESCE(a.state::text, 'active') AS alert_state, a.expires, d.claims,
                  COALESCE(a.received_at, d.created_at) AS received_at, d.place, d.reply,
                  d.retry_key::text AS retry_key
        """,
        channel,
        limit,
        lease_seconds,
        n,
        k,
        more_urgent_than,
    )
    out = [
        Claimed(
            r["id"],
            r["alert_id"],
            r["address"],
            r["language"],
            r["subscription_id"],
            r["priority"],
            r["attempts"],
            r["alert_state"],
            r["expires"],
            r["claims"],
            r["received_at"],
            r["place"],
            _reply(r["reply"]),
            retry_key=r["retry_key"],
        )
        for r in rows
    ]
    out.sort(key=lambda c: (c.priority, c.id))
    return out


async def next_due(
    conn: asyncpg.Connection, channel: str, *, partition: tuple[int, int] | None = None
) -> datetime | None:
    """When the earliest queued delivery of ``channel`` (in ``partition``) becomes due (None: none queued)."""
    n, k = _partition_args(partition)
    value: datetime | None = await conn.fetchval(
        "SELECT min(not_before) FROM deliveries WHERE channel = $1 AND state = 'queued'"
        " AND ($2::int IS NULL OR abs(hashtext(address)::bigint) % $2 = $3)",
        channel,
        n,
        k,
    )
    return value


async def renew_leases(
    conn: asyncpg.Connection, ids: Sequence[int], claims: Sequence[int], lease_seconds: float
) -> int:
    """Extend the leases of deliveries still being worked on, each under the claim (fencing token) given.

    A delivery whose lease lapsed and was claimed again by another worker is not touched.
    """
    if not ids:
        return 0
    # Not a transition: dispatcher.quiet_update tells the trigger to log no delivery event.
    result = await conn.execute(
        """
        WITH quiet AS (SELECT set_config('dispatcher.quiet_update', 'on', true))
        UPDATE deliveries d SET lease_until = now() + make_interval(secs => $3)
        FROM quiet, unnest($1::bigint[], $2::int[]) AS v(id, claim)
        WHERE d.id = v.id AND d.state = 'sending' AND d.claims = v.claim
        """,
        list(ids),
        list(claims),
        lease_seconds,
    )
    return int(result.split()[-1])


async def retry_key_holders(conn: asyncpg.Connection, key: str) -> int:
    """How many deliveries that may still be sent (queued or sending) hold the batch key ``key``."""
    n = await conn.fetchval(
        "SELECT count(*) FROM deliveries WHERE retry_key = $1::uuid AND state IN ('queued', 'sending')", key
    )
    return int(n or 0)


async def assign_retry_key(conn: asyncpg.Connection, ids: Sequence[int], claims: Sequence[int], key: str) -> int:
    """Give the claimed deliveries ``ids`` (under their ``claims``) the batch key ``key``, before it is sent.

    Not a transition: no delivery event is logged (``dispatcher.quiet_update``).
    """
    if not ids:
        return 0
    result = await conn.execute(
        """
        WITH quiet AS (SELECT set_config('dispatcher.quiet_update', 'on', true))
        UPDATE deliveries d SET retry_key = $3::uuid
        FROM quiet, unnest($1::bigint[], $2::int[]) AS v(id, claim)
        WHERE d.id = v.id AND d.state = 'sending' AND d.claims = v.claim
        """,
        list(ids),
        list(claims),
        key,
    )
    return int(result.split()[-1])


@dataclass(frozen=True, slots=True)
class Completion:
    """What :func:`complete` writes back for one claimed delivery: its next state and why."""

    id: int
    state: DeliveryState
    remote_id: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    # The provider answered a real attempt (not a rate limit): it counts in ``attempts``.
    spent: bool = False
    # The claim's counter (fencing token); None writes unconditionally.
    claim: int | None = None


async def complete(conn: asyncpg.Connection, outcomes: Sequence[Completion]) -> int:
    """Write all outcomes of a batch in one statement (one round trip); return rows written.

    Only rows still "sending" under the same claim (``claim``) are written.
    Deliveries that went out for an alert which an update or cancel replaced
    meanwhile get a delivery of the replacing alert too, in the same statement
    (``FOR SHARE`` on the alert rows orders this against the pipeline's ``mark_replaced``).
    """
    if not outcomes:
        return 0
    written = await conn.fetchval(
        """
        WITH upd AS (
            UPDATE deliveries d SET
                state = v.state::delivery_state,
                remote_id = COALESCE(v.remote_id, d.remote_id),
                last_error = v.error,
                not_before = COALESCE(v.not_before, d.not_before),
                attempts = d.attempts + CASE WHEN v.spent THEN 1 ELSE 0 END,
                lease_until = NULL,
                updated_at = now()
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bool[], $7::int[])
                AS v(id, state, remote_id, error, not_before, spent, claim)
            -- state::text: keeps the planner off the partial index deliveries_sending,
            -- which it would scan whole (dead entries included, up to the next vacuum)
            -- instead of looking the batch's ids up in the primary key.
            WHERE d.id = v.id AND d.state::text = 'sending' AND (v.claim IS NULL OR d.claims = v.claim)
            RETURNING d.id, d.alert_id, d.channel, d.subscription_id, d.address, d.language, d.state
        ), old AS (
            SELECT a.id, a.replaced_by, a.status FROM alerts a
            WHERE a.id IN (SELECT alert_id FROM upd WHERE state = 'delivered')
            FOR SHARE
        ), followed AS (
            -- The replacing alert keeps the fence: replacement never crosses status
            -- (dispatcher.pipeline.fence), and this says so again where it matters.
            INSERT INTO deliveries (alert_id, channel, subscription_id, address, language, priority)
            SELECT r.id, upd.channel, upd.subscription_id, upd.address, upd.language, r.priority
            FROM upd JOIN old ON old.id = upd.alert_id JOIN alerts r ON r.id = old.replaced_by
            WHERE upd.state = 'delivered' AND r.state = 'active' AND r.status = old.status
              -- One issuance, one message: not if a sibling document already reached them.
              AND (r.issuance IS NULL OR NOT EXISTS (
                  SELECT 1 FROM deliveries x JOIN alerts xa ON xa.id = x.alert_id
                  WHERE xa.issuance = r.issuance AND xa.id <> r.id
                    AND x.channel = upd.channel AND x.address = upd.address
                    AND x.state IN ('queued', 'sending', 'delivered')))
            ON CONFLICT (alert_id, channel, address) DO NOTHING
        )
        SELECT count(*) FROM upd
        """,
        [o.id for o in outcomes],
        [str(o.state) for o in outcomes],
        [o.remote_id for o in outcomes],
        [o.error for o in outcomes],
        [o.not_before for o in outcomes],
        [o.spent for o in outcomes],
        [o.claim for o in outcomes],
    )
    return int(written or 0)


async def requeue_expired_leases(conn: asyncpg.Connection, channel: str, *, keep: Sequence[int] = ()) -> int:
    """Deliveries of ``channel`` left "sending" by a dead worker go back to the queue.

    ``keep``: deliveries the calling worker still holds, never requeued by it
    whatever their lease says. This is the only path to a duplicate: the provider
    may have accepted the message before the worker died.
    """
    result = await conn.execute(
        "UPDATE deliveries SET state = 'queued', lease_until = NULL, last_error = 'lease expired (worker died?)',"
        " updated_at = now() WHERE state = 'sending' AND lease_until < now() AND channel = $1"
        " AND id <> ALL($2::bigint[])",
        channel,
        list(keep),
    )
    return int(result.split()[-1])


async def release(conn: asyncpg.Connection, ids: Sequence[int], claims: Sequence[int], reason: str) -> int:
    """Give claimed-but-unsent deliveries back (shutdown), each under its claim; no attempt was made."""
    if not ids:
        return 0
    result = await conn.execute(
        "UPDATE deliveries d SET state = 'queued', lease_until = NULL, last_error = $3, updated_at = now()"
        " FROM unnest($1::bigint[], $2::int[]) AS v(id, claim)"
        " WHERE d.id = v.id AND d.state = 'sending' AND d.claims = v.claim",
        list(ids),
        list(claims),
        reason,
    )
    return int(result.split()[-1])


async def deactivate_subscriptions(conn: asyncpg.Connection, ids: Sequence[int], reason: str) -> None:
    if ids:
        await conn.execute(
            "UPDATE subscriptions SET active = false, deactivated_at = now(), deactivated_reason = $2"
            " WHERE id = ANY($1::bigint[]) AND active",
            list(ids),
            reason,
        )


async def move_recipient(conn: asyncpg.Connection, delivery_id: int, new_address: str) -> int | None:
    """The recipient of ``delivery_id`` moved (a Telegram group became a supergroup): follow it.

    Its subscription takes the new address (unless another subscription has it already),
    and the delivery is queued again for the new address; returns the new delivery's id
    (None: one exists already for that address).
    """
    async with conn.transaction():
        await conn.execute(
            "UPDATE subscriptions s SET address = $2 FROM deliveries d"
            " WHERE d.id = $1 AND s.id = d.subscription_id AND NOT EXISTS ("
            "   SELECT 1 FROM subscriptions o WHERE o.channel = s.channel AND o.address = $2)",
            delivery_id,
            new_address,
        )
        value = await conn.fetchval(
            "INSERT INTO deliveries (alert_id, channel, subscription_id, address, language, priority, place, level,"
            " reply)"
            " SELECT alert_id, channel, subscription_id, $2, language, priority, place, level, reply"
            " FROM deliveries WHERE id = $1"
            " ON CONFLICT (alert_id, channel, address) DO NOTHING RETURNING id",
            delivery_id,
            new_address,
        )
    return None if value is None else int(value)


async def pause_recipient(conn: asyncpg.Connection, channel: str, address: str, until: datetime) -> None:
    await conn.execute(
        "INSERT INTO recipient_pauses (channel, address, paused_until) VALUES ($1, $2, $3)"
        " ON CONFLICT (channel, address) DO UPDATE SET paused_until = GREATEST(recipient_pauses.paused_until,"
        " EXCLUDED.paused_until)",
        channel,
        address,
        until,
    )


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel's row of ``channel_state``: the provider's pause, the backoff, an operator's hold."""

    paused_until: datetime | None
    failures: int
    backoff_until: datetime | None
    pause_reason: str | None = None
    last_error: str | None = None
    held_since: datetime | None = None
    # None while held: until resumed.
    held_until: datetime | None = None
    held_by: str | None = None
    held_reason: str | None = None
    generation: int = 0
    channel: str = ""

    def held(self, now: datetime) -> bool:
        """Whether an operator holds the channel at ``now``."""
        return self.held_since is not None and (self.held_until is None or self.held_until > now)


def _state(row: asyncpg.Record) -> ChannelState:
    return ChannelState(**{f.name: row[f.name] for f in dataclasses.fields(ChannelState)})


async def channel_state(conn: asyncpg.Connection, channel: str) -> ChannelState:
    row = await conn.fetchrow("SELECT * FROM channel_state WHERE channel = $1", channel)
    if row is None:
        return ChannelState(None, 0, None, channel=channel)
    return _state(row)


async def channel_states(conn: asyncpg.Connection) -> list[ChannelState]:
    """Every channel's row, by name."""
    rows = await conn.fetch("SELECT * FROM channel_state ORDER BY channel")
    return [_state(r) for r in rows]


async def pause_channel(
    conn: asyncpg.Connection, channel: str, until: datetime, reason: str, *, generation: int
) -> None:
    """Record the provider's pause, answered while ``generation`` was the channel's.

    Not written over a newer operator action: a resume since then has cleared it.
    """
    await conn.execute(
        "INSERT INTO channel_state (channel, paused_until, pause_reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (channel) DO UPDATE SET"
        " pause_reason = CASE WHEN channel_state.paused_until > EXCLUDED.paused_until"
        " THEN channel_state.pause_reason ELSE EXCLUDED.pause_reason END,"
        " paused_until = GREATEST(channel_state.paused_until, EXCLUDED.paused_until), updated_at = now()"
        " WHERE channel_state.generation = $4",
        channel,
        until,
        reason,
        generation,
    )


async def hold_channel(
    conn: asyncpg.Connection, channel: str, *, seconds: float | None, by: str, reason: str
) -> ChannelState:
    """An operator pauses ``channel`` for ``seconds`` (None: until resumed); logged in channel_actions."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO channel_state (channel, held_since, held_until, held_by, held_reason, generation)"
            " VALUES ($1, now(), CASE WHEN $2::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $2) END,"
            " $3, $4, 1)"
            " ON CONFLICT (channel) DO UPDATE SET held_since = EXCLUDED.held_since, held_until = EXCLUDED.held_until,"
            " held_by = EXCLUDED.held_by, held_reason = EXCLUDED.held_reason,"
            " generation = channel_state.generation + 1, updated_at = now() RETURNING *",
            channel,
            seconds,
            by,
            reason,
        )
        await conn.execute(
            "INSERT INTO channel_actions (channel, action, by_whom, reason, held_until)"
            " VALUES ($1, 'pause', $2, $3, $4)",
            channel,
            by,
            reason,
            row["held_until"],
        )
    return _state(row)


async def resume_channel(conn: asyncpg.Connection, channel: str, *, by: str, reason: str = "") -> int:
    """An operator resumes ``channel``: hold, provider pause, backoff and recipient pauses end now.

    Deliveries the pauses had put off (``not_before`` later than now) become due
    (their number is returned), and the generation moves on, so every worker
    drops the pauses it holds in memory. Logged in channel_actions.
    """
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO channel_state (channel, generation) VALUES ($1, 1)"
            " ON CONFLICT (channel) DO UPDATE SET paused_until = NULL, pause_reason = NULL, backoff_until = NULL,"
            " held_since = NULL, held_until = NULL, held_by = NULL, held_reason = NULL,"
            " generation = channel_state.generation + 1, updated_at = now()",
            channel,
        )
        await conn.execute("DELETE FROM recipient_pauses WHERE channel = $1", channel)
        result = await conn.execute(
            "UPDATE deliveries SET not_before = now(), last_error = $2, updated_at = now()"
            " WHERE channel = $1 AND state = 'queued' AND not_before > now()",
            channel,
            f"channel resumed by {by}",
        )
        await conn.execute(
            "INSERT INTO channel_actions (channel, action, by_whom, reason) VALUES ($1, 'resume', $2, $3)",
            channel,
            by,
            reason,
        )
    return int(result.split()[-1])


async def record_channel_failure(conn: asyncpg.Connection, channel: str, reason: str) -> int:
    """Count a consecutive channel-wide failure; return the new count."""
    return int(
        await conn.fetchval(
            "INSERT INTO channel_state (channel, failures, last_error) VALUES ($1, 1, $2)"
            " ON CONFLICT (channel) DO UPDATE SET failures = channel_state.failures + 1,"
            " last_error = EXCLUDED.last_error, updated_at = now() RETURNING failures",
            channel,
            reason,
        )
    )


async def set_channel_backoff(conn: asyncpg.Connection, channel: str, until: datetime) -> None:
    await conn.execute(
        "UPDATE channel_state SET backoff_until = $2, updated_at = now() WHERE channel = $1", channel, until
    )


async def record_channel_success(conn: asyncpg.Connection, channel: str) -> None:
    await conn.execute(
        "UPDATE channel_state SET failures = 0, backoff_until = NULL, updated_at = now()"
        " WHERE channel = $1 AND (failures > 0 OR backoff_until IS NOT NULL)",
        channel,
    )
