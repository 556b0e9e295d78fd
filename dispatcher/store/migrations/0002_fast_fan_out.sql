-- 0002: a faster fan-out.
--
-- On a 100,000-recipient alert the per-row foreign-key triggers of `deliveries`
-- cost as much as the insert itself (a probe and a row lock per delivery and
-- per key). They are replaced by checks once per statement in the insert
-- trigger: the alerts referenced are locked FOR KEY SHARE once each, as the
-- foreign key did, so an alert cannot vanish under its deliveries; the
-- subscriptions referenced are checked to exist, without locking 100,000 rows.
-- `ON DELETE SET NULL` of subscription_id becomes a statement trigger on
-- subscriptions. A subscription deleted while a fan-out naming it is in
-- flight can leave that delivery with a dangling subscription_id, which
-- nothing dereferences (it is only used to deactivate the subscription).
-- The index deliveries_alert is dropped: the unique (alert_id, channel,
-- address) index serves every lookup by alert.

ALTER TABLE deliveries DROP CONSTRAINT deliveries_alert_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subscription_id_fkey;
DROP INDEX deliveries_alert;

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
    IF EXISTS (SELECT 1 FROM new_rows n
               WHERE n.subscription_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = n.subscription_id)) THEN
        RAISE EXCEPTION 'deliveries reference a missing subscription' USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO delivery_events (delivery_id, state, attempt, detail)
    SELECT n.id, n.state, n.attempts, NULL FROM new_rows n;
    PERFORM pg_notify('deliveries', c.channel) FROM (SELECT DISTINCT channel FROM new_rows) c;
    RETURN NULL;
END $$;

CREATE FUNCTION subscriptions_forget_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deliveries d SET subscription_id = NULL FROM old_rows o WHERE d.subscription_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER subscriptions_after_delete AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_forget_deliveries();
