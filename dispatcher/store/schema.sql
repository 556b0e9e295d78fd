-- The current schema in one file, for readers and fresh installs: each object as
-- the migrations leave it (why it is so: the migration that changed it, named here).
-- It must equal the result of applying migrations/ in order: tests/integration/test_schema.py checks it.
-- Change the schema by adding a migration AND updating this file.

CREATE TYPE alert_status AS ENUM ('actual', 'exercise', 'test', 'draft');
CREATE TYPE alert_msg_type AS ENUM ('alert', 'update', 'cancel');
-- active: current; superseded: a newer alert of its series replaced it;
-- cancelled: withdrawn; stale: arrived after a newer one of its series;
-- held: waiting for approval.
CREATE TYPE alert_state AS ENUM ('active', 'superseded', 'cancelled', 'stale', 'held');
CREATE TYPE delivery_state AS ENUM ('queued', 'sending', 'delivered', 'failed', 'superseded', 'expired');

-- Every document a source fetched or received, parsed or not: the memory of
-- "have we fetched this?" (JMA blocks clients that fetch a file twice) and the
-- stored original of each alert (zlib-compressed).
CREATE TABLE documents (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    url         text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- pending (claimed, not yet fetched), parsed, unsupported, error, fetch_failed
    outcome     text NOT NULL DEFAULT 'pending',
    kind        text,
    title       text,
    error       text,
    size        integer,
    content     bytea,
    attempts    integer NOT NULL DEFAULT 0,
    UNIQUE (source, url)
);
CREATE INDEX documents_outcome ON documents (outcome, received_at DESC);

-- Conditional-GET state of each polled feed.
CREATE TABLE feed_state (
    url                  text PRIMARY KEY,
    etag                 text,
    last_modified        text,
    last_polled          timestamptz,
    last_status          integer,
    last_error           text,
    consecutive_failures integer NOT NULL DEFAULT 0
);

CREATE TABLE alerts (
    id           bigserial PRIMARY KEY,
    identifier   text NOT NULL,
    sender       text NOT NULL,
    source       text NOT NULL,
    kind         text NOT NULL DEFAULT '',
    sent         timestamptz NOT NULL,
    status       alert_status NOT NULL,
    msg_type     alert_msg_type NOT NULL,
    refs         text[] NOT NULL DEFAULT '{}',
    event        text NOT NULL,
    severity     text NOT NULL,
    urgency      text NOT NULL,
    certainty    text NOT NULL,
    priority     smallint NOT NULL,
    headline     text NOT NULL DEFAULT '',
    description  text NOT NULL DEFAULT '',
    instruction  text NOT NULL DEFAULT '',
    areas        jsonb NOT NULL DEFAULT '[]',
    area_codes   text[] NOT NULL DEFAULT '{}',
    -- area_codes expanded to everything a subscription may name (municipality
    -- and district codes): the audience is `subscriptions.areas && target_codes`.
    target_codes text[] NOT NULL DEFAULT '{}',
    expires      timestamptz,
    series_key   text,
    details      jsonb NOT NULL DEFAULT '{}',
    document_id  bigint REFERENCES documents (id),
    state        alert_state NOT NULL DEFAULT 'active',
    replaced_by  bigint REFERENCES alerts (id),
    received_at  timestamptz NOT NULL DEFAULT now(),
    -- 0006: the address of its public page, minted by the service (never a sender's string).
    public_id    text NOT NULL,
    -- 0007: the JMA issuance its parallel documents share (dispatcher/folding.py).
    issuance     text,
    UNIQUE (sender, identifier),
    CONSTRAINT alerts_public_id_key UNIQUE (public_id)
);
CREATE INDEX alerts_series ON alerts (series_key, sent DESC);
CREATE INDEX alerts_received ON alerts (received_at DESC);
CREATE INDEX alerts_document ON alerts (document_id) WHERE document_id IS NOT NULL;
CREATE INDEX alerts_issuance ON alerts (issuance) WHERE issuance IS NOT NULL;

-- 0006: what the links sent before public ids pointed to (identifier → its earliest
-- alert), frozen: nothing adds to it, so no later alert can take a link over.
CREATE TABLE alert_links (
    identifier text PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id)
);

CREATE TABLE subscribers (
    id           bigserial PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    language     text NOT NULL DEFAULT 'ja',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id                 bigserial PRIMARY KEY,
    subscriber_id      bigint NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    channel            text NOT NULL,
    address            text NOT NULL,
    -- JMA municipality codes and district codes this subscription follows.
    areas              text[] NOT NULL DEFAULT '{}',
    active             boolean NOT NULL DEFAULT true,
    -- Receives exercise and test traffic (訓練/試験), which never goes public.
    test_recipient     boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    deactivated_at     timestamptz,
    deactivated_reason text,
    -- 0003: a subscription may follow a shared location. Its districts and hazard
    -- zones are computed once (on subscribing, and by `dispatcher relocate` after a
    -- layer change) and merged into `areas`, so the audience of an alert stays
    -- `areas && target_codes` under subscriptions_areas: no geometry at send time.
    latitude           double precision,
    longitude          double precision,
    -- The codes the location added to `areas` (district codes, zone ids) that the
    -- subscriber did not also choose: `areas - located_areas` is what they chose.
    located_areas      text[] NOT NULL DEFAULT '{}',
    -- GeoIndex.version of the layers located_areas was computed with.
    layers_version     text,
    -- 0011: only alerts whose level for the place is at least this (NULL: all).
    min_level          smallint CONSTRAINT subscriptions_min_level CHECK (min_level BETWEEN 1 AND 5),
    -- 0010: a resident's level as the loudest alert class that reaches them
    -- (dispatcher/residents/levels.py; NULL: not a resident, everything), and quiet
    -- hours (minutes after midnight, Japan time) holding classes 1-3 back.
    max_class          smallint CONSTRAINT subscriptions_max_class CHECK (max_class BETWEEN 0 AND 2),
    quiet_start        smallint,
    quiet_end          smallint,
    -- 0010: a district's public Telegram channel ([channels.telegram] district_channels).
    district_channel   boolean NOT NULL DEFAULT false,
    UNIQUE (channel, address),
    CONSTRAINT subscriptions_quiet CHECK (
        (quiet_start IS NULL) = (quiet_end IS NULL)
        AND quiet_start BETWEEN 0 AND 1439 AND quiet_end BETWEEN 0 AND 1439 AND quiet_start <> quiet_end
    ),
    CONSTRAINT subscriptions_location CHECK (
        (latitude IS NULL) = (longitude IS NULL)
        AND latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180
    )
);
CREATE INDEX subscriptions_areas ON subscriptions USING gin (areas) WHERE active;
CREATE INDEX subscriptions_located ON subscriptions (id) WHERE latitude IS NOT NULL;

-- The outbox: one row per (alert, channel, recipient address).
-- 0002: no foreign keys, whose per-row checks would weigh on a large fan-out: the
-- insert trigger below checks and locks (FOR KEY SHARE) the alerts referenced once
-- per statement, and subscriptions_after_delete sets subscription_id to NULL when
-- a subscription is deleted.
-- subscription_id is a soft reference, only used to deactivate the subscription
-- (0005: not checked on insert; every insert takes it from subscriptions or from
-- earlier deliveries).
-- Every lookup by alert uses the unique (alert_id, channel, address) index.
-- 0010: a bot's reply is a delivery without an alert, its text and buttons in `reply`.
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint,
    channel         text NOT NULL,
    subscription_id bigint,
    address         text NOT NULL,
    language        text NOT NULL DEFAULT 'ja',
    state           delivery_state NOT NULL DEFAULT 'queued',
    priority        smallint NOT NULL,
    -- 0008: real provider attempts (answered, not rate limited); a crash, a lease
    -- expiry or a shutdown spends none.
    attempts        integer NOT NULL DEFAULT 0,
    -- 0008: incremented by every claim; the fencing token of completions (a late
    -- answer of an earlier lease holder is not written).
    claims          integer NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    remote_id       text,
    last_error      text,
    -- 0007: which of the alert's areas is this recipient's place (index), and its level.
    place           smallint,
    level           smallint,
    -- 0013: the provider idempotency key of the batch it was last sent in (LINE's
    -- X-Line-Retry-Key): a retry of exactly the rows still holding it reuses it.
    retry_key       uuid,
    reply           jsonb,
    UNIQUE (alert_id, channel, address),
    CONSTRAINT deliveries_alert_or_reply CHECK ((alert_id IS NULL) <> (reply IS NULL))
);
CREATE INDEX deliveries_queue ON deliveries (channel, priority, id) WHERE state = 'queued';
CREATE INDEX deliveries_sending ON deliveries (lease_until) WHERE state = 'sending';
CREATE INDEX deliveries_retry_key ON deliveries (retry_key) WHERE retry_key IS NOT NULL;

-- Append-only log of every delivery state transition, written by triggers so
-- no code path can forget it. 0005: no primary-key index; the ids come from a
-- sequence and order the events, and every lookup is by delivery.
CREATE TABLE delivery_events (
    id          bigserial,
    delivery_id bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    state       delivery_state NOT NULL,
    attempt     integer NOT NULL DEFAULT 0,
    detail      text
);
CREATE INDEX delivery_events_delivery ON delivery_events (delivery_id, id);

CREATE FUNCTION deliveries_log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    found  bigint;
BEGIN
    SELECT count(DISTINCT alert_id) INTO wanted FROM new_rows;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM alerts a WHERE a.id IN (SELECT n.alert_id FROM new_rows n) FOR KEY SHARE OF a
    ) locked;
    IF found <> wanted THEN
        RAISE EXCEPTION 'deliveries reference a missing alert' USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO delivery_events (delivery_id, state, attempt, detail)
    SELECT n.id, n.state, n.attempts, NULL FROM new_rows n;
    PERFORM pg_notify('deliveries', c.channel) FROM (SELECT DISTINCT channel FROM new_rows) c;
    -- 0012: the live dashboard's one notification per statement, whatever its rows.
    PERFORM pg_notify('delivery_progress', CASE WHEN length(p.ids) > 7000 THEN '*' ELSE p.ids END)
    FROM (SELECT string_agg(DISTINCT n.alert_id::text, ',') AS ids FROM new_rows n) p WHERE p.ids IS NOT NULL;
    RETURN NULL;
END $$;

-- 0005: every statement that updates deliveries is a transition of each row it
-- touches, except the two that set `dispatcher.quiet_update` for one statement
-- (lease renewal, and forgetting a deleted subscription); no old rows are kept.
-- (A trigger with a column list would do this alone, but PostgreSQL allows no
-- transition tables on such a trigger.) 0008: a "sending" event carries the number
-- of the attempt under way.
CREATE FUNCTION deliveries_log_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('dispatcher.quiet_update', true) = 'on' THEN
        PERFORM set_config('dispatcher.quiet_update', 'off', true);
        RETURN NULL;
    END IF;
    INSERT INTO delivery_events (delivery_id, state, attempt, detail)
    SELECT n.id, n.state, CASE WHEN n.state = 'sending' THEN n.attempts + 1 ELSE n.attempts END,
           COALESCE(n.last_error, n.remote_id)
    FROM new_rows n;
    -- Deliveries back in the queue (a retry, a lease taken over) wake the workers.
    PERFORM pg_notify('deliveries', c.channel)
    FROM (SELECT DISTINCT n.channel FROM new_rows n WHERE n.state = 'queued') c;
    -- 0012: the live dashboard's one notification per statement, whatever its rows.
    PERFORM pg_notify('delivery_progress', CASE WHEN length(p.ids) > 7000 THEN '*' ELSE p.ids END)
    FROM (SELECT string_agg(DISTINCT n.alert_id::text, ',') AS ids FROM new_rows n) p WHERE p.ids IS NOT NULL;
    RETURN NULL;
END $$;

CREATE FUNCTION subscriptions_forget_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('dispatcher.quiet_update', 'on', true);
    UPDATE deliveries d SET subscription_id = NULL FROM old_rows o WHERE d.subscription_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_after_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_log_insert();
CREATE TRIGGER deliveries_after_update AFTER UPDATE ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_log_update();
CREATE TRIGGER subscriptions_after_delete AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_forget_deliveries();

-- Per-channel state shared by every worker and surviving restarts: a pause
-- asked for by the provider (429) and the backoff after consecutive failures;
-- 0008: an operator's hold (`dispatcher channel pause|resume`).
CREATE TABLE channel_state (
    channel       text PRIMARY KEY,
    paused_until  timestamptz,
    failures      integer NOT NULL DEFAULT 0,
    backoff_until timestamptz,
    last_error    text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Why the provider paused the channel (its 429 description).
    pause_reason  text,
    -- An operator's hold: since when, until when (NULL: until resumed), by whom, why.
    held_since    timestamptz,
    held_until    timestamptz,
    held_by       text,
    held_reason   text,
    -- Operators' actions so far. A worker that reads a newer generation drops the
    -- pauses it holds in memory and takes this row's state; a provider pause
    -- answered under an older one is not written over a newer resume. Nothing else
    -- changes it, so a read between a 429 and its write keeps the pause in memory.
    generation    bigint NOT NULL DEFAULT 0
);

-- 0008: append-only log of operators' pause and resume actions: who (the OS user) and why.
CREATE TABLE channel_actions (
    id         bigserial PRIMARY KEY,
    channel    text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    action     text NOT NULL CHECK (action IN ('pause', 'resume')),
    by_whom    text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    held_until timestamptz
);

-- Per-recipient pauses (e.g. Telegram's per-chat 429).
CREATE TABLE recipient_pauses (
    channel      text NOT NULL,
    address      text NOT NULL,
    paused_until timestamptz NOT NULL,
    PRIMARY KEY (channel, address)
);

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

-- 0009: the staff console: staff accounts (argon2id) and server-side sessions, throttled
-- logins, the append-only audit log, and the messages staff compose (two-person path).
CREATE TYPE staff_role AS ENUM ('viewer', 'author', 'approver', 'admin');

CREATE TABLE staff (
    id                  bigserial PRIMARY KEY,
    username            text NOT NULL,
    display_name        text NOT NULL DEFAULT '',
    role                staff_role NOT NULL,
    -- argon2id, in the PHC string format argon2-cffi writes ($argon2id$v=19$m=…).
    password_hash       text NOT NULL,
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT staff_username_key UNIQUE (username),
    CONSTRAINT staff_username_shape CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,62}$')
);

-- A session is a row, so that it can be revoked (logout, password change, disabling).
-- The cookie carries a random token; only its SHA-256 is stored, so a copy of the
-- table logs nobody in. Idle and absolute expiry are checked on every request.
CREATE TABLE staff_sessions (
    id         text PRIMARY KEY,
    staff_id   bigint NOT NULL REFERENCES staff (id),
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    address    text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    revoked_at timestamptz
);
CREATE INDEX staff_sessions_staff ON staff_sessions (staff_id) WHERE revoked_at IS NULL;

-- Failed logins per account name ('user:<name>', known or not) and per client
-- address ('address:<ip>'): counted in a window, locked when over the limit.
CREATE TABLE login_throttle (
    key          text PRIMARY KEY,
    failures     integer NOT NULL DEFAULT 0,
    first_failed timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz
);

-- Every staff action: who, in which role, what, on what, from where, before and after.
-- Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor   text NOT NULL,
    role    text NOT NULL DEFAULT '',
    action  text NOT NULL,
    target  text NOT NULL DEFAULT '',
    address text NOT NULL DEFAULT '',
    before  jsonb,
    after   jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- What staff compose. approved: decided, being handed to the pipeline; sent: its alert
-- exists (alert_id); cancelled: its retraction was sent (cancel_alert_id); superseded:
-- an approved update replaced it.
CREATE TYPE console_state AS ENUM
    ('draft', 'submitted', 'approved', 'sent', 'rejected', 'returned', 'cancelled', 'superseded');

CREATE TABLE console_messages (
    id              bigserial PRIMARY KEY,
    exercise        boolean NOT NULL,
    kind            text NOT NULL,
    state           console_state NOT NULL DEFAULT 'draft',
    -- District codes, 'zone:<kind>' (every hazard zone of that kind) and 'city' (全域).
    areas           text[] NOT NULL DEFAULT '{}',
    -- language → {"headline": …, "text": …}; Japanese always.
    texts           jsonb NOT NULL DEFAULT '{}',
    expires         timestamptz NOT NULL,
    -- The sent message this one updates (its alert is referenced by the new alert).
    replaces        bigint REFERENCES console_messages (id),
    created_by      bigint NOT NULL REFERENCES staff (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Everyone who wrote, edited or submitted it: none of them may approve it.
    contributors    bigint[] NOT NULL DEFAULT '{}',
    submitted_by    bigint REFERENCES staff (id),
    submitted_at    timestamptz,
    decided_by      bigint REFERENCES staff (id),
    decided_at      timestamptz,
    -- Why it was rejected or returned (the author sees it), or why sending failed.
    reason          text NOT NULL DEFAULT '',
    alert_id        bigint REFERENCES alerts (id),
    cancel_alert_id bigint REFERENCES alerts (id),
    cancelled_by    bigint REFERENCES staff (id),
    -- Two people, checked by the database as well as by the server's code.
    CONSTRAINT console_messages_four_eyes CHECK (
        state NOT IN ('approved', 'sent', 'cancelled', 'superseded')
        OR (decided_by IS NOT NULL AND decided_by <> ALL (contributors))
    )
);
CREATE INDEX console_messages_state ON console_messages (exercise, state, id DESC);

-- 0011: publication (e-mail opt-ins, broadcast channels' posts, site keys, NOTIFY publication).
CREATE TABLE email_optins (
    id           bigserial PRIMARY KEY,
    address      text NOT NULL,
    areas        text[] NOT NULL,
    language     text NOT NULL DEFAULT 'ja',
    min_level    smallint CHECK (min_level BETWEEN 1 AND 5),
    -- SHA-256 of the random part of the confirmation link (the link itself is never stored).
    token_hash   bytea NOT NULL UNIQUE,
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    confirmed_at timestamptz,
    -- What became of the confirmation mail: NULL while unsent, 'sent', or the relay's error.
    mail_outcome text,
    subscription_id bigint
);
CREATE INDEX email_optins_address ON email_optins (lower(address), requested_at DESC);

-- One post of a broadcast channel (Mastodon status, X post, Bluesky record) per alert:
-- an update replies to the thread, a cancel edits or deletes what was posted.
CREATE TABLE channel_posts (
    id         bigserial PRIMARY KEY,
    channel    text NOT NULL,
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    remote_id  text NOT NULL,
    -- Whatever else the provider needs to refer to it (Bluesky: uri and cid of root and post).
    meta       jsonb NOT NULL DEFAULT '{}',
    posted_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when a cancel edited ('edited') or deleted ('deleted') it.
    retracted  text,
    UNIQUE (channel, remote_id)
);
CREATE INDEX channel_posts_alert ON channel_posts (alert_id, channel);

-- Keys minted once and shared by every daemon of the database (the public links'
-- signatures must verify on whichever daemon answers), unless the configuration sets one.
CREATE TABLE site_keys (
    name       text PRIMARY KEY,
    secret     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The public site and feeds follow every stored or changed alert within a second.
CREATE FUNCTION alerts_notify_publication() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('publication', n.id::text) FROM new_rows n;
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_after_insert_publication AFTER INSERT ON alerts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION alerts_notify_publication();
CREATE TRIGGER alerts_after_update_publication AFTER UPDATE ON alerts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION alerts_notify_publication();

-- 0014: each alert's first and last delivery per channel, written once, when nothing of
-- the alert is left queued or sending on the channel, by whichever daemon sees it first
-- (dispatcher/metrics.py): the latency histograms of /metrics observe every (alert,
-- channel) exactly once however many daemons share the database.
CREATE TABLE delivery_latency (
    alert_id           bigint NOT NULL,
    channel            text NOT NULL,
    received_at        timestamptz NOT NULL,
    first_delivered_at timestamptz NOT NULL,
    last_delivered_at  timestamptz NOT NULL,
    delivered          integer NOT NULL,
    settled_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, channel)
);

-- 0010: residents (dispatcher/residents/).
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

-- 0013: a provider's monthly message quota as last read (LINE); quota NULL: no limit.
CREATE TABLE channel_quotas (
    channel    text PRIMARY KEY,
    plan       text NOT NULL,
    quota      bigint,
    used       bigint NOT NULL DEFAULT 0,
    read_at    timestamptz NOT NULL DEFAULT now(),
    -- Why sends are held (the quota would be exceeded), else NULL.
    held       text
);
