-- Shadow scores moved to a database file of their own (migrations/sqlite-shadow):
-- as a second writer of this file they made decision commits wait for the write lock.
DROP TABLE shadow_scores;
