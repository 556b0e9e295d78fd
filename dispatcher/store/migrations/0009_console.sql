-- 0009: the staff console. Staff accounts (argon2id hashes) and server-side sessions,
-- throttled logins, an append-only audit log, and the messages staff compose, each
-- on the two-person path draft → submitted → approved and sent | rejected | returned.
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
