-- The entity-state shard that observed a transaction: `TOPIC/PARTITION` for a
-- Kafka detector (each assigned partition has its own feature state, rebuilt
-- from these rows when the partition moves to another detector), NULL for the
-- API (one state over the whole store).
ALTER TABLE transactions ADD COLUMN shard TEXT;
CREATE INDEX transactions_shard ON transactions (shard, seq) WHERE shard IS NOT NULL;
