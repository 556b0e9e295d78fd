-- 0010: residents run their own subscription from a chat app (dispatcher/residents/):
-- their level and quiet hours, their places, the conversation's state, the bots'
-- replies in the outbox, and the updates the bots receive.

-- The level a resident chose, as the loudest alert class that still reaches them
-- (dispatcher/residents/levels.py: 0 life-threatening, 1 warnings, 2 everything;
-- NULL: not a resident's subscription, everything as before), and quiet hours in
-- minutes after midnight, Japan time, during which classes 1-3 are held back.
ALTER TABLE subscriptions
    ADD COLUMN max_class smallint CONSTRAINT subscriptions_max_class CHECK (max_class BETWEEN 0 AND 2),
    ADD COLUMN quiet_start smallint,
    ADD COLUMN quiet_end smallint,
    -- A public Telegram channel of a district ([channels.telegram] district_channels),
    -- kept in step with the configuration at start; posted to once per alert.
    ADD COLUMN district_channel boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT subscriptions_quiet CHECK (
        (quiet_start IS NULL) = (quiet_end IS NULL)
        AND quiet_start BETWEEN 0 AND 1439 AND quiet_end BETWEEN 0 AND 1439 AND quiet_start <> quiet_end
    );

-- Where a resident's conversation is (dispatcher.residents.conversation.Step) and
-- what they chose besides language (subscribers.language) and places.
CREATE TABLE residents (
    subscription_id bigint PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    step            text NOT NULL DEFAULT 'language',
    onboarded       boolean NOT NULL DEFAULT false,
    level           text NOT NULL DEFAULT 'all' CHECK (level IN ('all', 'warnings', 'critical')),
    -- A shared location waiting for "keep the point?": {"place": i, "lat": …, "lon": …}.
    pending_point   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Up to five places per resident; their codes are merged into subscriptions.areas, so
-- an alert's audience is still the one indexed query. The point only when kept.
CREATE TABLE resident_places (
    subscription_id bigint NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    position        smallint NOT NULL CHECK (position BETWEEN 0 AND 4),
    label           text NOT NULL,
    codes           text[] NOT NULL,
    latitude        double precision,
    longitude       double precision,
    -- GeoIndex.version the codes of a kept point were matched with (re-matched when it changes).
    layers_version  text,
    PRIMARY KEY (subscription_id, position),
    CONSTRAINT resident_places_point CHECK ((latitude IS NULL) = (longitude IS NULL))
);

-- A bot's reply is a delivery too (same outbox, same rate limits, a priority after
-- every alert): no alert, and its text and buttons in `reply`.
ALTER TABLE deliveries ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN reply jsonb;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_alert_or_reply CHECK ((alert_id IS NULL) <> (reply IS NULL));

-- Updates a bot received (Telegram webhook or getUpdates, LINE events), durable before
-- they are acknowledged, processed in order, once: `update_key` is the provider's id.
CREATE TABLE bot_updates (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    update_key  text NOT NULL,
    body        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    UNIQUE (channel, update_key)
);
CREATE INDEX bot_updates_todo ON bot_updates (channel, id) WHERE done_at IS NULL;

-- getUpdates long polling: the next offset, written in the transaction that stores the
-- updates it confirms, so a restart neither loses nor repeats one.
CREATE TABLE bot_offsets (
    channel    text PRIMARY KEY,
    next_id    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- 0010: when the quiet hours [start, end) (minutes after midnight, Japan time) that
-- `at` falls in end; NULL when `at` is not in them.
CREATE FUNCTION quiet_until(start_min smallint, end_min smallint, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    WITH t AS (SELECT (at AT TIME ZONE 'Asia/Tokyo') AS local_at),
    m AS (SELECT local_at, (extract(hour FROM local_at) * 60 + extract(minute FROM local_at))::int AS minute FROM t)
    SELECT CASE
        WHEN start_min IS NULL OR end_min IS NULL THEN NULL
        WHEN (start_min < end_min AND minute >= start_min AND minute < end_min)
          OR (start_min > end_min AND (minute >= start_min OR minute < end_min))
        THEN ((date_trunc('day', local_at) + make_interval(mins => end_min)
               + CASE WHEN minute >= end_min THEN interval '1 day' ELSE interval '0' END) AT TIME ZONE 'Asia/Tokyo')
        END
    FROM m
$$;
