-- 0005: cheaper delivery-event logging (PostgreSQL's work per delivery was a
-- fifth trigger bookkeeping).
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
-- delivery_events loses its primary-key index: the log is append-only, its ids
-- come from a sequence and order the events, and every lookup is by delivery
-- (delivery_events_delivery). One b-tree insert less per event, three per delivery.

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
