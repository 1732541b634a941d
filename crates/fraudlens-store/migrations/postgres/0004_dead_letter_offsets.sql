-- A Kafka record is dead-lettered once: a batch retried after a failure (or
-- redelivered after a crash) finds its dead letters already stored. Uploads
-- (`source = 'upload'`, located by line) may repeat and are not covered.
DELETE FROM dead_letters
WHERE source LIKE 'kafka:%'
  AND id NOT IN (SELECT MIN(id) FROM dead_letters WHERE source LIKE 'kafka:%' GROUP BY source, location);
CREATE UNIQUE INDEX dead_letters_kafka_offset ON dead_letters (source, location) WHERE source LIKE 'kafka:%';
