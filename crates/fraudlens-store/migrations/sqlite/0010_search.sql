-- Search (`GET /api/v1/search`): the words of review notes and case
-- narratives in FTS5 indexes kept by triggers (both tables are append-only);
-- case and entity ids are searched by prefix on their own indexes.
CREATE VIRTUAL TABLE search_notes USING fts5(note, content = 'audit_log', content_rowid = 'id');
INSERT INTO search_notes (rowid, note) SELECT id, note FROM audit_log WHERE note IS NOT NULL;
CREATE TRIGGER audit_log_search AFTER INSERT ON audit_log WHEN new.note IS NOT NULL BEGIN
    INSERT INTO search_notes (rowid, note) VALUES (new.id, new.note);
END;

CREATE VIRTUAL TABLE search_narratives USING fts5(assessment, content = 'case_narratives', content_rowid = 'id');
INSERT INTO search_narratives (rowid, assessment) SELECT id, assessment FROM case_narratives;
CREATE TRIGGER case_narratives_search AFTER INSERT ON case_narratives BEGIN
    INSERT INTO search_narratives (rowid, assessment) VALUES (new.id, new.assessment);
END;
