"""Fan-out in PostgreSQL: the deliveries of an alert, written in one statement.

All deliveries of an alert are written by one ``INSERT … SELECT`` over the matching
subscriptions, under the ``(alert_id, channel, address)`` unique constraint, so
re-running it is harmless. Each recipient's place (the area of the alert that
concerns them) and its 警戒レベル are written with the delivery, and a later
document of the same issuance reaches only those it tells something new
(:mod:`dispatcher.folding`). Updates and cancels supersede what is still queued for
the alerts they replace and follow whoever received those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

# Residents' own choices (0010, dispatcher/residents/levels.py): a subscription with a
# max_class gets only alerts of that class or louder ($8: the alert's class), and
# during its quiet hours everything but class 0 waits (not_before) until they end.
_RESIDENT_FILTER = "(s.max_class IS NULL OR $8::smallint <= s.max_class)"
_NOT_BEFORE = (
    "COALESCE(CASE WHEN $8::smallint > 0 AND s.quiet_start IS NOT NULL"
    " THEN quiet_until(s.quiet_start, s.quiet_end, now()) END, now())"
)

_FAN_OUT = f"""
    INSERT INTO deliveries (alert_id, channel, subscription_id, address, language, priority, place, level, not_before)
    SELECT $1, s.channel, s.id, s.address, sub.language, $2, $6, $7, {_NOT_BEFORE}
    FROM subscriptions s JOIN subscribers sub ON sub.id = s.subscriber_id
    WHERE s.active AND s.channel = ANY($3::text[]) AND s.areas && $4::text[]
      AND ($5 OR s.test_recipient)
      AND (s.min_level IS NULL OR $7::smallint IS NULL OR $7::smallint >= s.min_level)
      AND {_RESIDENT_FILTER}
"""  # noqa: S608 (constants)

# A subscription with a min_level (0011, chosen on the subscriber's own page) skips an
# alert whose level for its place is lower; one without a level reaches everyone.
# Each subscription gets the most specific of the alert's areas among the codes it
# follows ($6/$7: code → area index, -1 for none; none found: no place), that area's
# level ($8), and nothing when a sibling document of the same issuance ($9) already
# reached it at that level or higher (dispatcher/folding.py). Unnesting each
# subscription's few codes and hash-joining them with the alert's code table keeps
# this linear in subscribers.
_FAN_OUT_PLACES = f"""
    WITH t AS (SELECT * FROM unnest($6::text[], $7::int[]) AS t(code, place)),
    m AS (
        SELECT s.id, min(t.place) AS place
        FROM subscriptions s CROSS JOIN LATERAL unnest(s.areas) AS a(code) JOIN t ON t.code = a.code
        WHERE s.active AND s.channel = ANY($3::text[]) AND s.areas && $4::text[] AND ($5 OR s.test_recipient)
        GROUP BY s.id
    )
    INSERT INTO deliveries (alert_id, channel, subscription_id, address, language, priority, place, level, not_before)
    SELECT $1, s.channel, s.id, s.address, sub.language, $2, NULLIF(m.place, -1), ($8::int[])[m.place + 1],
           {_NOT_BEFORE.replace("$8", "$10")}
    FROM subscriptions s JOIN subscribers sub ON sub.id = s.subscriber_id LEFT JOIN m ON m.id = s.id
    WHERE s.active AND s.channel = ANY($3::text[]) AND s.areas && $4::text[] AND ($5 OR s.test_recipient)
      AND (s.min_level IS NULL OR ($8::int[])[m.place + 1] IS NULL OR ($8::int[])[m.place + 1] >= s.min_level)
      AND {_RESIDENT_FILTER.replace("$8", "$10")}
      AND (cardinality($9::bigint[]) = 0 OR NOT EXISTS (
        SELECT 1 FROM deliveries d
        WHERE d.alert_id = ANY($9::bigint[]) AND d.channel = s.channel AND d.address = s.address
          AND d.state IN ('queued', 'sending', 'delivered')
          AND COALESCE(d.level, 0) >= COALESCE(($8::int[])[m.place + 1], 0)
      ))
"""  # noqa: S608 (constants)

# Deliveries that reached someone: what a sibling document of an issuance counts against.
_REACHED = "('queued', 'sending', 'delivered')"


@dataclass(frozen=True, slots=True)
class Targets:
    """Who an alert reaches and what each recipient's place is (see :data:`_FAN_OUT_PLACES`).

    ``codes`` are what subscriptions may name; ``place_codes``/``places`` map each of
    them to the index of the alert area that concerns its follower, ``levels`` give
    each area's 警戒レベル, ``siblings`` the alerts of the same issuance already stored.
    """

    codes: Sequence[str]
    place_codes: Sequence[str] = ()
    places: Sequence[int] = ()
    levels: Sequence[int | None] = ()
    siblings: Sequence[int] = ()

    @property
    def uniform_place(self) -> int | None:
        """The single place of every recipient, when there is one and no folding to decide."""
        if self.siblings:
            return None
        distinct = set(self.places)
        if len(distinct) > 1:
            return None
        return next(iter(distinct), -1)

    def level_of(self, place: int | None) -> int | None:
        if place is None or not 0 <= place < len(self.levels):
            return None
        return self.levels[place]


async def _insert_once(conn: asyncpg.Connection, sql: str, args: Sequence[object]) -> int:
    """Run a fan-out insert without ``ON CONFLICT``, redoing it with one should a delivery exist already.

    These are an alert's first deliveries (the pipeline runs this right after storing
    the alert, or on releasing a held one, before anything else can queue for it) and
    subscriptions are unique per (channel, address), so the insert goes without
    ``ON CONFLICT``, whose speculative insertion (one more index probe and lock per
    row) weighs on a large fan-out. Should a delivery exist anyway (the statement run twice), the attempt is
    rolled back to a savepoint and redone skipping the existing rows: re-running it
    stays harmless.
    """
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            result = await conn.execute(sql, *args)
    except asyncpg.UniqueViolationError:
        result = await conn.execute(sql + "ON CONFLICT (alert_id, channel, address) DO NOTHING", *args)
    return int(result.split()[-1])


async def fan_out(
    conn: asyncpg.Connection,
    *,
    alert_id: int,
    priority: int,
    channels: Sequence[str],
    target_codes: Sequence[str] | Targets,
    public: bool,
    alert_class: int = 2,
) -> int:
    """Queue one delivery per active matching subscription; return rows written.

    Exercise and test alerts (``public`` false) reach only test recipients.
    ``alert_class`` (:func:`dispatcher.residents.levels.alert_class`) is compared with
    residents' levels and quiet hours; other subscriptions do not look at it.
    ``target_codes`` given as :class:`Targets` also records each recipient's place and
    level and folds an issuance's later documents; the common case (one place for
    everyone, nothing to fold) takes the plain statement.
    """
    targets = target_codes if isinstance(target_codes, Targets) else Targets(target_codes)
    head: tuple[object, ...] = (alert_id, priority, list(channels), list(targets.codes), public)
    uniform = targets.uniform_place
    if uniform is not None:
        place = None if uniform < 0 else uniform
        return await _insert_once(conn, _FAN_OUT, (*head, place, targets.level_of(place), alert_class))
    args = (
        *head,
        list(targets.place_codes),
        list(targets.places),
        list(targets.levels),
        list(targets.siblings),
        alert_class,
    )
    return await _insert_once(conn, _FAN_OUT_PLACES, args)


async def fan_out_broadcast(
    conn: asyncpg.Connection,
    *,
    alert_id: int,
    priority: int,
    channels: Sequence[str],
    language: str = "ja",
    level: int | None = None,
    siblings: Sequence[int] = (),
) -> int:
    """One delivery per broadcast channel (a post, not a message per person).

    A channel that already posted a sibling document of the same issuance at this
    level or higher does not post again.
    """
    if not channels:
        return 0
    result = await conn.execute(
        f"""
        INSERT INTO deliveries (alert_id, channel, address, language, priority, level)
        SELECT $1, c, '*', $3, $2, $5::smallint FROM unnest($4::text[]) AS c
        WHERE NOT EXISTS (
            SELECT 1 FROM deliveries d
            WHERE d.alert_id = ANY($6::bigint[]) AND d.channel = c AND d.address = '*'
              AND d.state IN {_REACHED} AND COALESCE(d.level, 0) >= COALESCE($5::smallint, 0)
        )
        ON CONFLICT (alert_id, channel, address) DO NOTHING
        """,  # noqa: S608 (a constant)
        alert_id,
        priority,
        language,
        list(channels),
        level,
        list(siblings),
    )
    return int(result.split()[-1])


async def fan_out_followers(
    conn: asyncpg.Connection,
    *,
    alert_id: int,
    priority: int,
    replaced: Sequence[int],
    public: bool,
    targets: Targets | None = None,
) -> int:
    """An update or cancel also reaches everyone who received what it replaces.

    It keeps the fence of the alert it is: one that is not public (exercise, test)
    reaches only test recipients among them, never a public channel's post. With
    ``targets``, each follower gets its place and level, and one whom a sibling of the
    same issuance already reached at that level is not followed again.

    Deliveries still "sending" are followed too: the worker's completion of one may be
    committing at this very moment, invisible to this transaction, and its own
    follow-up (in :func:`dispatcher.store.outbox.complete`) cannot see the replacing
    alert that this transaction has not committed yet; between the two it would be
    lost. Following a delivery that then fails costs its recipient the update of
    something they did not receive, which is the news they need anyway.
    """
    t = targets or Targets(())
    result = await conn.execute(
        f"""
        WITH t AS (SELECT * FROM unnest($5::text[], $6::int[]) AS t(code, place))
        INSERT INTO deliveries (alert_id, channel, subscription_id, address, language, priority, place, level)
        SELECT DISTINCT ON (d.channel, d.address) $1, d.channel, d.subscription_id, d.address, d.language, $2,
               NULLIF(p.place, -1), ($7::int[])[p.place + 1]
        FROM deliveries d
        LEFT JOIN subscriptions s ON s.id = d.subscription_id
        LEFT JOIN LATERAL (
            SELECT min(t.place) AS place FROM unnest(s.areas) AS a(code) JOIN t ON t.code = a.code
        ) p ON true
        WHERE d.alert_id = ANY($3::bigint[]) AND d.state IN ('delivered', 'sending')
          AND (d.subscription_id IS NULL OR s.active)
          AND ($4 OR s.test_recipient)
          AND NOT EXISTS (
              SELECT 1 FROM deliveries x
              WHERE x.alert_id = ANY($8::bigint[]) AND x.channel = d.channel AND x.address = d.address
                AND x.state IN {_REACHED} AND COALESCE(x.level, 0) >= COALESCE(($7::int[])[p.place + 1], 0)
          )
        ON CONFLICT (alert_id, channel, address) DO NOTHING
        """,  # noqa: S608 (a constant)
        alert_id,
        priority,
        list(replaced),
        public,
        list(t.place_codes),
        list(t.places),
        list(t.levels),
        list(t.siblings),
    )
    return int(result.split()[-1])


async def supersede_queued(conn: asyncpg.Connection, alert_ids: Sequence[int], reason: str) -> int:
    """What is still queued for replaced alerts will not be sent."""
    result = await conn.execute(
        "UPDATE deliveries SET state = 'superseded', last_error = $2, updated_at = now()"
        " WHERE alert_id = ANY($1::bigint[]) AND state = 'queued'",
        list(alert_ids),
        reason,
    )
    return int(result.split()[-1])
