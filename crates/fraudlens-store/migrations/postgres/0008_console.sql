-- Console sessions (`/ui`): a signed-in browser holds a random token in a
-- cookie; only its SHA-256 is kept. A session ends at its expiry, at sign-out,
-- or as soon as its API key is revoked (checked on every request).
CREATE TABLE console_sessions (
    token_sha256   TEXT    PRIMARY KEY,
    key_id         TEXT    NOT NULL REFERENCES api_keys (key_id),
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    ended_at       BIGINT
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- The console's case page shows an entity's recent transactions, approved
-- ones too (the queue's entity index holds only the flagged few).
CREATE INDEX transactions_entity_time ON transactions (entity, event_time);
