-- 0014: each alert's first and last delivery per channel, written once, when nothing of
-- the alert is left queued or sending on the channel, by whichever daemon sees it first
-- (dispatcher/metrics.py): the latency histograms of /metrics observe every (alert,
-- channel) exactly once however many daemons share the database, and operators' pages
-- can read the figures without scanning deliveries.
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
