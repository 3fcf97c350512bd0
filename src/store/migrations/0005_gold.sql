-- Gold models: what each model's current gold table was built from, so `conveyor sync`
-- rebuilds a model only when its SQL text or one of its input tables changed.
-- sql_hash is the sha256 (hex) of the model's SQL text; inputs is a JSON object mapping
-- each input table ("silver.orders", "gold.x") to the Delta version it was read at.
CREATE TABLE gold_models (
    name         TEXT PRIMARY KEY,
    sql_hash     TEXT NOT NULL,
    inputs       TEXT NOT NULL,
    gold_version BIGINT NOT NULL,
    built_at     BIGINT NOT NULL
);
