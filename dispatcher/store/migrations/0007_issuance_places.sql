-- 0007: one issuance, one message (dispatcher/folding.py), and the reader's place.
--
-- alerts.issuance groups the parallel JMA documents of one weather-warning issuance
-- (office, report time, status): a later document reaches a person only if it raises
-- the level for their place. deliveries.place is the index, in the alert's areas, of
-- the area that concerns that recipient (their municipality or district), so the
-- message says first what applies where they are; deliveries.level is that area's
-- 警戒レベル, which the folding compares.
ALTER TABLE alerts ADD COLUMN issuance text;
CREATE INDEX alerts_issuance ON alerts (issuance) WHERE issuance IS NOT NULL;
ALTER TABLE deliveries ADD COLUMN place smallint;
ALTER TABLE deliveries ADD COLUMN level smallint;
