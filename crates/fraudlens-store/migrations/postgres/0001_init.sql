-- fraudlens store, PostgreSQL. Times are milliseconds since the epoch (UTC); JSON is text.

-- One row per scored transaction: the transaction (card numbers tokenised),
-- its decision, and where it stands in review. `features` holds the model
-- inputs as little-endian f64s (NaN: missing), named by models.feature_names.
CREATE TABLE transactions (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id    TEXT    NOT NULL UNIQUE,
    fingerprint       TEXT    NOT NULL,
    event_time        BIGINT  NOT NULL,
    received_at       BIGINT  NOT NULL,
    entity            TEXT,
    amount_minor      BIGINT  NOT NULL,
    currency          TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    score             DOUBLE PRECISION    NOT NULL,
    probability       DOUBLE PRECISION,
    raw_score         DOUBLE PRECISION,
    anomaly_score     DOUBLE PRECISION,
    decision          TEXT    NOT NULL CHECK (decision IN ('approve', 'review', 'decline')),
    reasons           TEXT    NOT NULL,
    features          BYTEA    NOT NULL,
    model_version     TEXT    NOT NULL,
    latency_us        BIGINT  NOT NULL,
    review_status     TEXT CHECK (review_status IN ('pending_review', 'confirmed_fraud', 'false_positive', 'escalated')),
    review_updated_at BIGINT,
    label             TEXT CHECK (label IN ('fraud', 'legit'))
);
-- the review queue holds the flagged few: partial indexes keep approvals out of them
CREATE INDEX transactions_queue_score ON transactions (review_status, score DESC, seq DESC)
    WHERE review_status IS NOT NULL;
CREATE INDEX transactions_queue_time ON transactions (review_status, event_time, seq)
    WHERE review_status IS NOT NULL;
CREATE INDEX transactions_queue_entity ON transactions (entity, event_time)
    WHERE review_status IS NOT NULL;

-- Who changed what, when: review status changes, labels, models, keys.
CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT  NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    before         TEXT,
    after          TEXT,
    note           TEXT
);
CREATE INDEX audit_log_subject ON audit_log (subject, id);

-- Ground truth as it arrives: analyst reviews, chargebacks, label uploads.
CREATE TABLE labels (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id TEXT    NOT NULL,
    label          TEXT    NOT NULL CHECK (label IN ('fraud', 'legit')),
    source         TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    at             BIGINT  NOT NULL
);
CREATE INDEX labels_transaction ON labels (transaction_id, id);

-- The model registry: one row per registered artifact directory.
CREATE TABLE models (
    version        TEXT    PRIMARY KEY,
    path           TEXT    NOT NULL,
    stage          TEXT    NOT NULL CHECK (stage IN ('staging', 'production', 'archived')),
    summary        TEXT    NOT NULL,
    feature_names  TEXT    NOT NULL,
    registered_at  BIGINT  NOT NULL,
    promoted_at    BIGINT
);
CREATE UNIQUE INDEX models_one_production ON models (stage) WHERE stage = 'production';

-- API keys: only a SHA-256 of the secret part is kept.
CREATE TABLE api_keys (
    key_id         TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('service', 'analyst', 'admin')),
    secret_sha256  TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    revoked_at     BIGINT
);

-- Records that could not be parsed, with where they came from and why.
CREATE TABLE dead_letters (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT  NOT NULL,
    source         TEXT    NOT NULL,
    location       TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    payload        TEXT    NOT NULL
);
