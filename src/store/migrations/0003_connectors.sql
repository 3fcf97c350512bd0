-- Connectors: one row per connector holds the run claim and the cursor.
-- A run owns its connector while run_id is set and lease_until (unix ms) is in the future;
-- a run that crashed is taken over after its lease. The cursor (JSON) is written only after
-- the run's data was committed to the lakehouse, in the same statement that frees the claim.
CREATE TABLE connector_state (
    connector   TEXT PRIMARY KEY,
    cursor      TEXT,
    run_id      TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL
);

-- Run history: one row per run, 'running' until it finishes as 'ok' or 'failed'.
-- issues is a JSON array of malformed records (file, line, reason), the first 100.
CREATE TABLE sync_runs (
    id             TEXT PRIMARY KEY,
    connector      TEXT NOT NULL,
    status         TEXT NOT NULL,
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    rows_read      BIGINT NOT NULL DEFAULT 0,
    rows_written   BIGINT NOT NULL DEFAULT 0,
    rows_deleted   BIGINT NOT NULL DEFAULT 0,
    rows_skipped   BIGINT NOT NULL DEFAULT 0,
    files_read     BIGINT NOT NULL DEFAULT 0,
    silver_version BIGINT,
    error          TEXT,
    issues         TEXT
);

CREATE INDEX sync_runs_connector ON sync_runs (connector, started_at);
