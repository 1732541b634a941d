-- The content digest of a registered model (SHA-256 of its SHA256SUMS file,
-- which names a checksum for every file of the artifact). A promotion or a
-- server start that finds other content at the registered path is refused.
-- NULL for models registered before this column: re-registering the same
-- path fills it in.
ALTER TABLE models ADD COLUMN digest TEXT;
