-- Champion/challenger comparisons (`fraudlens models compare`, `retrain`):
-- which model was compared with which, when, by whom, and the whole report
-- (metrics, intervals, the promotion rule's verdict) as JSON.
CREATE TABLE model_comparisons (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate      TEXT    NOT NULL,
    against        TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    report         TEXT    NOT NULL
);
CREATE INDEX model_comparisons_candidate ON model_comparisons (candidate, id);
