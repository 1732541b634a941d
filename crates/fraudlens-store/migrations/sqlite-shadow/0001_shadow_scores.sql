-- A shadow model's verdict on a stored decision's feature vector, written
-- after the decision committed (best effort: a shadow never fails a request).
-- On SQLite in a file of its own (NAME-shadow.EXT beside the store's), so that
-- writing scores never takes the decisions' write lock.
CREATE TABLE shadow_scores (
    model_version  TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    event_time     INTEGER NOT NULL,
    score          REAL    NOT NULL,
    probability    REAL,
    decision       TEXT    NOT NULL,
    scored_at      INTEGER NOT NULL,
    latency_us     INTEGER NOT NULL,
    PRIMARY KEY (model_version, transaction_id)
);
CREATE INDEX shadow_scores_time ON shadow_scores (model_version, event_time);
