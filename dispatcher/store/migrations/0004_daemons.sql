-- 0004: the daemon processes sharing this database. Each registers at start and
-- beats every few seconds; the live ones split every channel's global budget
-- between them, and per-recipient-paced channels (Telegram) split the
-- recipients (by a hash of the address), so that together they stay within
-- the provider's limits.
CREATE TABLE daemons (
    id         bigserial PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    -- The channels it serves: a channel's budget is split among its own daemons.
    channels   text[] NOT NULL DEFAULT '{}',
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);
