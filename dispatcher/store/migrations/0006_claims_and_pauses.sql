-- 0006: attempts count real provider attempts; a claim counter fences completions.
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
