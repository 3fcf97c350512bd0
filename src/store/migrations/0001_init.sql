-- The one schema for SQLite and PostgreSQL, run through sqlx's Any driver.
-- Portability rules: TEXT ids (uuid v7 strings), BIGINT unix-millisecond timestamps,
-- INTEGER instead of BOOLEAN, JSON kept as TEXT, no backend-specific auto-increment.

-- Ingress ledger: one row per idempotency key. state is 'processing' or 'done'.
-- A 'processing' row whose claimed_at is older than the caller's lease belongs to a crashed
-- owner and may be taken over.
CREATE TABLE ingress (
    idem_key     TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    state        TEXT NOT NULL,
    owner        TEXT NOT NULL,
    response     TEXT,
    claimed_at   BIGINT NOT NULL,
    completed_at BIGINT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE conversations (
    conv_key   TEXT PRIMARY KEY,
    channel    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Message ids are uuid v7 strings, so ordering by id is ordering by creation time.
CREATE TABLE messages (
    id           TEXT PRIMARY KEY,
    conversation TEXT NOT NULL REFERENCES conversations (conv_key),
    role         TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    body         TEXT NOT NULL,
    meta         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE INDEX messages_conversation_id ON messages (conversation, id);

-- Egress ledger: every reply is written here before it is sent. state is 'pending' or
-- 'confirmed'; dedupe_key makes recording the same reply twice a no-op.
CREATE TABLE egress (
    id           TEXT PRIMARY KEY,
    channel      TEXT NOT NULL,
    conversation TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL UNIQUE,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    remote_id    TEXT,
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT
);

CREATE INDEX egress_channel_state ON egress (channel, state, created_at);

-- Audit log: append-only and hash-chained. id is assigned as MAX(id) + 1 while appends are
-- serialised (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL). arguments and
-- result hold canonical JSON text, which is exactly what the hash covers.
CREATE TABLE audit (
    id           BIGINT PRIMARY KEY,
    ts           BIGINT NOT NULL,
    user_id      TEXT NOT NULL,
    channel      TEXT NOT NULL,
    conversation TEXT NOT NULL,
    action       TEXT NOT NULL,
    arguments    TEXT NOT NULL,
    result       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
