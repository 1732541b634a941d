-- Search (`GET /api/v1/search`): the words of review notes and case
-- narratives through GIN indexes of their text search vectors (the 'simple'
-- configuration: no language's stemming, as SQLite's FTS5 index);
-- case and entity ids are searched by prefix on their own indexes.
CREATE INDEX audit_log_note_search ON audit_log USING GIN (to_tsvector('simple', note)) WHERE note IS NOT NULL;
CREATE INDEX case_narratives_search ON case_narratives USING GIN (to_tsvector('simple', assessment));
