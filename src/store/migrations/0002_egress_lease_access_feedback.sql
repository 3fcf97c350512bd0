-- Egress retries: a pending reply is owned by the delivery that recorded it until lease_until
-- (unix ms); after that the resender may claim it (setting a new lease) and send it again.
-- A reply that keeps failing ends as state 'failed' with its last error.
ALTER TABLE egress ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE egress ADD COLUMN last_error TEXT;

CREATE INDEX egress_state_lease ON egress (state, lease_until);

-- Access: users let in by an admin (`conveyor access approve CODE`), per platform.
CREATE TABLE access_grants (
    channel    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    user_name  TEXT,
    granted_at BIGINT NOT NULL,
    granted_by TEXT NOT NULL,
    PRIMARY KEY (channel, user_id)
);

-- Pairing codes handed to unknown users in direct messages. A code is valid until
-- expires_at (unix ms); approved_at is set once an admin approved it.
CREATE TABLE pairing_codes (
    code        TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    user_name   TEXT,
    chat        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    approved_at BIGINT
);

CREATE INDEX pairing_codes_user ON pairing_codes (channel, user_id, expires_at);

-- Feedback on answers (👍 = 1, 👎 = -1), one vote per user and answer; a new vote replaces
-- the old one.
CREATE TABLE feedback (
    message_id TEXT NOT NULL REFERENCES messages (id),
    user_id    TEXT NOT NULL,
    channel    TEXT NOT NULL,
    rating     INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
