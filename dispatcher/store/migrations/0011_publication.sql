-- 0011: publication. E-mail subscriptions by double opt-in, the posts the broadcast
-- channels made (so updates thread and cancels edit or delete), a per-subscription
-- minimum level, the signing key of public links, and a NOTIFY on every change an
-- alert's public pages must follow.

-- A resident's own choice of what is worth a mail: only alerts whose level for their
-- place is at least this (NULL: everything; an alert without a level always reaches them).
ALTER TABLE subscriptions ADD COLUMN min_level smallint
    CONSTRAINT subscriptions_min_level CHECK (min_level BETWEEN 1 AND 5);

-- A subscription asked for on the public form, not yet confirmed: nothing is sent to
-- the address before its owner follows the link in the confirmation mail.
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
