-- API keys for the HTTP surface. Only a hash of each key's secret is kept: the key itself
-- (`cvk_<id>_<secret>`) is shown once, when it is created. scopes is a comma-separated list
-- of `chat`, `read`, `admin`. A revoked key keeps its row (revoked_at set) for the record.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  BIGINT,
    last_used_at BIGINT
);
