-- Narratives of cases (`fraudlens analyze`, the analysis API): each one
-- written is kept — by the rules or by an LLM (which model), its
-- recommendation, the evidence ids it cites, and why an LLM's answer was not
-- used when it was not, and the evidence as it stood (what its citations
-- meant) — so the review shows what the analyst was told.
CREATE TABLE case_narratives (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    model          TEXT,
    recommendation TEXT    NOT NULL,
    assessment     TEXT    NOT NULL,
    citations      TEXT    NOT NULL,
    note           TEXT,
    evidence       TEXT    NOT NULL
);
CREATE INDEX case_narratives_case ON case_narratives (transaction_id, id);
