-- 0012: operators see delivery progress live. Each statement that inserts or changes
-- deliveries (a fan-out, a claim, a recorder's batch) sends ONE notification on
-- channel 'delivery_progress' naming the alerts it touched ('*' when too many for a
-- payload); the daemon's one listener (dispatcher/web/live.py) coalesces them and
-- reads the counts once per batch for every dashboard.

CREATE OR REPLACE FUNCTION deliveries_log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
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
    -- 0012: the live dashboard's one notification per statement, whatever its rows.
    PERFORM pg_notify('delivery_progress', CASE WHEN length(p.ids) > 7000 THEN '*' ELSE p.ids END)
    FROM (SELECT string_agg(DISTINCT n.alert_id::text, ',') AS ids FROM new_rows n) p WHERE p.ids IS NOT NULL;
    RETURN NULL;
END $$;
