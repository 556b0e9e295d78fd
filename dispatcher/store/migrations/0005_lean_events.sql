-- 0005: cheaper delivery bookkeeping (a fifth to a quarter of PostgreSQL's work
-- per delivery was trigger bookkeeping).
--
-- The update trigger no longer keeps the old rows and joins them to the new
-- ones to find which rows changed state: every statement that updates
-- deliveries is a transition of each row it touches (claim, completion,
-- requeue, release, supersede), except the two that say so by setting
-- `dispatcher.quiet_update` for their own transaction: lease renewal and
-- forgetting a deleted subscription. The trigger resets the flag, so it silences
-- exactly one statement. (A trigger with a column list would do this alone,
-- but PostgreSQL allows no transition tables on such a trigger.)
--
-- The insert trigger no longer checks that each delivery's subscription exists
-- (an index probe per row, a fifth of a fan-out): every insert takes its
-- subscription ids from `subscriptions` or from earlier deliveries in the same
-- statement, and `subscription_id` was already a soft reference (a subscription
-- deleted during a fan-out could leave a dangling id, which nothing
-- dereferences: it only serves to deactivate the subscription). The alerts are
-- still checked and locked, once per alert.
--
-- delivery_events loses its primary-key index: the log is append-only, its ids
-- come from a sequence and order the events, and every lookup is by delivery
-- (delivery_events_delivery). One b-tree insert less per event, three per delivery.

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
    RETURN NULL;
END $$;

DROP TRIGGER deliveries_after_update ON deliveries;

CREATE OR REPLACE FUNCTION deliveries_log_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('dispatcher.quiet_update', true) = 'on' THEN
        PERFORM set_config('dispatcher.quiet_update', 'off', true);
        RETURN NULL;
    END IF;
    INSERT INTO delivery_events (delivery_id, state, attempt, detail)
    SELECT n.id, n.state, n.attempts, COALESCE(n.last_error, n.remote_id) FROM new_rows n;
    -- Deliveries back in the queue (a retry, a lease taken over) wake the workers.
    PERFORM pg_notify('deliveries', c.channel)
    FROM (SELECT DISTINCT n.channel FROM new_rows n WHERE n.state = 'queued') c;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_after_update AFTER UPDATE ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_log_update();

CREATE OR REPLACE FUNCTION subscriptions_forget_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('dispatcher.quiet_update', 'on', true);
    UPDATE deliveries d SET subscription_id = NULL FROM old_rows o WHERE d.subscription_id = o.id;
    RETURN NULL;
END $$;

ALTER TABLE delivery_events DROP CONSTRAINT delivery_events_pkey;
