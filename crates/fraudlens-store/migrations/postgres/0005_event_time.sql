-- A rebuild of the entity state replays only the rows inside the features'
-- horizon: it starts at the first row dated at or after a cutoff.
CREATE INDEX transactions_event_time ON transactions (event_time);
