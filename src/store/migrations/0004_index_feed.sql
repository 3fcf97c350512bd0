-- The index feed: the silver version of each connector's table that was last indexed
-- (saved after indexing), so a feed that could not run is caught up by the next one.
ALTER TABLE connector_state ADD COLUMN indexed_version BIGINT;
