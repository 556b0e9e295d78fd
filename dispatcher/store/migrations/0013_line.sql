-- 0013: batched sends keep their provider idempotency key across retries and restarts
-- (LINE's X-Line-Retry-Key per multicast of up to 500), and providers' monthly message
-- quotas are kept where operators read them.

-- The key of the batch a delivery was last sent in (a channel with durable_batch_keys):
-- a retry of exactly the rows still holding a key reuses it, so the provider answers a
-- repeat of an accepted request with 409 instead of sending it twice.
ALTER TABLE deliveries ADD COLUMN retry_key uuid;
CREATE INDEX deliveries_retry_key ON deliveries (retry_key) WHERE retry_key IS NOT NULL;

-- A provider's monthly message quota as last read by a daemon (LINE: /v2/bot/message/quota
-- and /quota/consumption). quota NULL: no limit (LINE's 地方公共団体プラン, type "none").
CREATE TABLE channel_quotas (
    channel    text PRIMARY KEY,
    plan       text NOT NULL,
    quota      bigint,
    used       bigint NOT NULL DEFAULT 0,
    read_at    timestamptz NOT NULL DEFAULT now(),
    -- Why sends are held (the quota would be exceeded), else NULL.
    held       text
);
