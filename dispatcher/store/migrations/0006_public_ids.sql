-- 0006: an alert's public page is addressed by an id the service mints, never by a
-- string a sender chose.
--
-- Residents' links used to carry the sender's identifier, resolved newest first
-- among every sender: a later broadcast reusing an identifier took over a page
-- residents had been sent. `public_id` is minted at storage (`YYYYMMDD-` and eight
-- random characters, see dispatcher/store/alerts.py); `alert_links` freezes what
-- the links already sent pointed to (each identifier to its earliest alert), and
-- nothing ever adds to it, so no later alert can take one over.
ALTER TABLE alerts ADD COLUMN public_id text;
UPDATE alerts SET public_id = to_char(received_at AT TIME ZONE 'Asia/Tokyo', 'YYYYMMDD') || '-'
    || substr(md5(random()::text || id::text), 1, 8);
ALTER TABLE alerts ALTER COLUMN public_id SET NOT NULL;
ALTER TABLE alerts ADD CONSTRAINT alerts_public_id_key UNIQUE (public_id);

CREATE TABLE alert_links (
    identifier text PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id)
);
INSERT INTO alert_links (identifier, alert_id)
SELECT DISTINCT ON (identifier) identifier, id FROM alerts ORDER BY identifier, id;

-- A pushed document is now claimed in the transaction that stores its alert, and
-- marked `parsed` there. Before, a broadcast could be marked parsed and its alert
-- never stored (a crash in between, or a value PostgreSQL refused): its sender was
-- answered "replay" forever. Such documents become claimable again.
UPDATE documents d SET outcome = 'error', error = 'its alert was never stored (released by migration 0006)'
WHERE d.source = 'broadcast' AND d.outcome = 'parsed'
  AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.document_id = d.id);
CREATE INDEX alerts_document ON alerts (document_id) WHERE document_id IS NOT NULL;
