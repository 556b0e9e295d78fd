-- 0008: attempts count real provider attempts, a claim counter fences completions;
-- operators pause and resume channels, and every daemon follows the database.
--
-- A crash, a lease expiry or a shutdown must not spend a delivery's attempts (the
-- retry budget is a time, not a count), yet a late answer of an earlier lease
-- holder must still not overwrite the next holder's outcome. So the fencing token
-- is `claims`, incremented by every claim, and `attempts` is incremented only by
-- the completion of an attempt the provider answered (not a rate limit, nor a
-- delivery given back unsent).
ALTER TABLE deliveries ADD COLUMN claims integer NOT NULL DEFAULT 0;

-- A "sending" event carries the number of the attempt under way (attempts + 1).
CREATE OR REPLACE FUNCTION deliveries_log_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
    RETURN NULL;
END $$;

-- A pause is never silent and an operator can act on it (`dispatcher channel pause|resume`).
-- channel_state holds, besides the provider's pause (now with its reason) and the
-- backoff after failures, an operator's hold: since when, until when (NULL: until
-- resumed), by whom and why. `generation` counts operators' actions: a worker that
-- reads a newer one drops the pauses it holds in memory (set before it knew of the
-- action) and takes the database's state, and a provider pause answered under an
-- older generation is not written over a newer resume. Other writes leave it alone,
-- so a read that comes between a 429 and its write does not clear the pause.
ALTER TABLE channel_state
    ADD COLUMN pause_reason text,
    ADD COLUMN held_since timestamptz,
    ADD COLUMN held_until timestamptz,
    ADD COLUMN held_by text,
    ADD COLUMN held_reason text,
    ADD COLUMN generation bigint NOT NULL DEFAULT 0;

-- Append-only log of operators' pause and resume actions: who (the OS user) and why.
CREATE TABLE channel_actions (
    id         bigserial PRIMARY KEY,
    channel    text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    action     text NOT NULL CHECK (action IN ('pause', 'resume')),
    by_whom    text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    held_until timestamptz
);
