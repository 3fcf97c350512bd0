-- The inbox: every message a surface acknowledged before answering it (a chat platform's
-- event, an async webhook delivery) is written here first, so a crash between the
-- acknowledgement and the answer loses nothing. msg_key is the message's ingress-ledger key
-- ({channel}:{idempotency key}); a redelivery of the same message finds the row and is not
-- queued twice. state is 'queued' (to be answered), 'done' or 'failed'. A queued row is owned
-- by `owner` until lease_until (unix ms); the owner renews the lease while it answers, and
-- after it runs out (the owner crashed) any process may claim the row and answer it. attempts
-- counts the claims, so a row that keeps failing is given up ('failed', last_error) instead of
-- being retried forever. payload is the surface's JSON (the message and where its reply goes),
-- cleared once the row is done.
CREATE TABLE inbox (
    msg_key     TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    done_at     BIGINT
);

CREATE INDEX inbox_due ON inbox (state, lease_until);
