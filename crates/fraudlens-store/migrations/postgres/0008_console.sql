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

-- The case page shows an entity's recent transactions, approved ones too; the
-- queue's entity filter uses it as well (so its partial index goes).
CREATE INDEX transactions_entity_time ON transactions (entity, event_time);
DROP INDEX transactions_queue_entity;

-- The overview counts a time range's decisions by decision, label, score and
-- decision time: this index carries them all (an index-only scan). It
-- replaces the event-time index of 0005 (a rebuild's cutoff, which reads seq).
CREATE INDEX transactions_event_time_stats ON transactions (event_time) INCLUDE (decision, label, score, latency_us, seq);
DROP INDEX transactions_event_time;

-- The queue of every status at once, worst first or by time.
CREATE INDEX transactions_flagged_score ON transactions (score DESC, seq DESC) WHERE review_status IS NOT NULL;
CREATE INDEX transactions_flagged_time ON transactions (event_time, seq) WHERE review_status IS NOT NULL;
