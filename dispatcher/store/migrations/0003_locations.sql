-- 0003: a subscription may follow a shared location. Its districts and hazard zones
-- are computed once (on subscribing, and by `dispatcher relocate` after a layer change)
-- and merged into `areas`, so the audience of an alert stays `areas && target_codes`
-- under the GIN index subscriptions_areas: no geometry at send time.
ALTER TABLE subscriptions
    ADD COLUMN latitude double precision,
    ADD COLUMN longitude double precision,
    -- The codes the location added to `areas` (district codes, zone ids) that the
    -- subscriber did not also choose: `areas - located_areas` is what they chose.
    ADD COLUMN located_areas text[] NOT NULL DEFAULT '{}',
    -- GeoIndex.version of the layers located_areas was computed with.
    ADD COLUMN layers_version text,
    ADD CONSTRAINT subscriptions_location CHECK (
        (latitude IS NULL) = (longitude IS NULL)
        AND latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180
    );
CREATE INDEX subscriptions_located ON subscriptions (id) WHERE latitude IS NOT NULL;
