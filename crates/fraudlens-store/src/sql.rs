//! The two backends. They run the same SQL text, so one macro writes both
//! implementations of [`Store`]; only connecting (and migrations) differ.

use std::str::FromStr;
use std::time::Duration;

use fraudlens_core::redact_card_numbers;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

use crate::types::{label_str, parse, parse_label};
use crate::*;

/// SQLite's `synchronous` setting: what a commit waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    /// Every commit is on disk before it returns (fsync of the WAL): an
    /// acknowledged decision survives power loss. The default.
    #[default]
    Full,
    /// The WAL is synced at checkpoints only: commits survive a crash of the
    /// process, but the last ones can be lost on power loss or an OS crash.
    Normal,
}

/// The columns of a [`StoredDecision`], as a literal for `concat!` (sqlx takes only static SQL text).
macro_rules! decision_columns {
    () => {
        "seq, transaction_id, fingerprint, event_time, received_at, entity, amount_minor, \
     currency, body, score, probability, raw_score, anomaly_score, decision, reasons, features, model_version, \
     latency_us, review_status, review_updated_at, label, shard"
    };
}
const DECISION_COLUMNS: &str = decision_columns!();

macro_rules! insert_columns {
    () => {
        "INSERT INTO transactions (transaction_id, fingerprint, event_time, received_at, entity, amount_minor, \
         currency, body, score, probability, raw_score, anomaly_score, decision, reasons, features, model_version, \
         latency_us, review_status, shard) "
    };
}

/// Ids per `IN (…)` list and rows per multi-row statement.
const INSERT_CHUNK: usize = 500;

/// The stored form of a feature vector: little-endian f64s.
fn encode_features(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

fn decode_features(bytes: &[u8]) -> Result<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!(
            "a feature vector of {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| f64::from_le_bytes(chunk.try_into().unwrap_or_default()))
        .collect())
}

/// A cursor into the review queue: the sort key and the row of the last item.
fn encode_cursor(order: QueueOrder, item: &StoredDecision) -> String {
    match order {
        QueueOrder::ScoreDesc => format!("s{:016x}.{}", item.decision.score.to_bits(), item.seq),
        QueueOrder::TimeDesc | QueueOrder::TimeAsc => format!("t{}.{}", item.decision.event_time, item.seq),
    }
}

enum CursorKey {
    Score(f64, i64),
    Time(i64, i64),
}

fn decode_cursor(order: QueueOrder, cursor: &str) -> Result<CursorKey> {
    let invalid = || StoreError::Invalid(format!("invalid cursor {cursor:?} for this sort order"));
    let (key, seq) = cursor
        .get(1..)
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(invalid)?;
    let seq: i64 = seq.parse().map_err(|_| invalid())?;
    match (order, cursor.as_bytes().first()) {
        (QueueOrder::ScoreDesc, Some(b's')) => {
            let bits = u64::from_str_radix(key, 16).map_err(|_| invalid())?;
            Ok(CursorKey::Score(f64::from_bits(bits), seq))
        }
        (QueueOrder::TimeDesc | QueueOrder::TimeAsc, Some(b't')) => {
            Ok(CursorKey::Time(key.parse().map_err(|_| invalid())?, seq))
        }
        _ => Err(invalid()),
    }
}

/// `$for_update`: what locks the rows a read-then-write transaction reads
/// (`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the
/// only write lock). `$lock_models`: a statement that serialises changes to the
/// model registry (its one-production rule spans rows).
macro_rules! sql_store {
    ($store:ident, $db:ty, $pool:ty, $row:ty, $backend:literal, $for_update:literal, $lock_models:literal) => {
        impl $store {
            fn decision_from_row(row: &$row) -> Result<StoredDecision> {
                let status: Option<String> = row.try_get("review_status")?;
                let label: Option<String> = row.try_get("label")?;
                let decision: String = row.try_get("decision")?;
                Ok(StoredDecision {
                    seq: row.try_get("seq")?,
                    decision: NewDecision {
                        transaction_id: row.try_get("transaction_id")?,
                        fingerprint: row.try_get("fingerprint")?,
                        event_time: row.try_get("event_time")?,
                        received_at: row.try_get("received_at")?,
                        entity: row.try_get("entity")?,
                        amount_minor: row.try_get("amount_minor")?,
                        currency: row.try_get("currency")?,
                        body: row.try_get("body")?,
                        score: row.try_get("score")?,
                        probability: row.try_get("probability")?,
                        raw_score: row.try_get("raw_score")?,
                        anomaly_score: row.try_get("anomaly_score")?,
                        decision: parse(&decision)?,
                        reasons: row.try_get("reasons")?,
                        features: decode_features(&row.try_get::<Vec<u8>, _>("features")?)?,
                        model_version: row.try_get("model_version")?,
                        latency_us: row.try_get("latency_us")?,
                        review_status: status.as_deref().map(parse).transpose()?,
                        shard: row.try_get("shard")?,
                    },
                    review_updated_at: row.try_get("review_updated_at")?,
                    label: label.as_deref().map(parse_label).transpose()?,
                })
            }

            fn model_from_row(row: &$row) -> Result<ModelEntry> {
                let stage: String = row.try_get("stage")?;
                let names: String = row.try_get("feature_names")?;
                Ok(ModelEntry {
                    version: row.try_get("version")?,
                    path: row.try_get("path")?,
                    stage: parse(&stage)?,
                    summary: row.try_get("summary")?,
                    feature_names: serde_json::from_str(&names)
                        .map_err(|error| StoreError::Corrupt(format!("feature names: {error}")))?,
                    registered_at: row.try_get("registered_at")?,
                    promoted_at: row.try_get("promoted_at")?,
                    digest: row.try_get("digest")?,
                })
            }

            fn key_from_row(row: &$row) -> Result<ApiKeyEntry> {
                let role: String = row.try_get("role")?;
                Ok(ApiKeyEntry {
                    key_id: row.try_get("key_id")?,
                    name: row.try_get("name")?,
                    role: parse(&role)?,
                    secret_sha256: row.try_get("secret_sha256")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            }

            async fn fetch_decisions(
                conn: &mut <$db as sqlx::Database>::Connection,
                ids: &[&str],
            ) -> Result<Vec<StoredDecision>> {
                let mut found = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(INSERT_CHUNK) {
                    let mut query = QueryBuilder::<$db>::new(format!(
                        "SELECT {DECISION_COLUMNS} FROM transactions WHERE transaction_id IN ("
                    ));
                    let mut list = query.separated(", ");
                    for id in chunk {
                        list.push_bind(id.to_string());
                    }
                    query.push(")");
                    for row in query.build().fetch_all(&mut *conn).await? {
                        found.push(Self::decision_from_row(&row)?);
                    }
                }
                Ok(found)
            }

            async fn audit_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                entry: &AuditEntry,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO audit_log (at, actor, action, subject, before, after, note) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(entry.at)
                .bind(&entry.actor)
                .bind(&entry.action)
                .bind(&entry.subject)
                .bind(&entry.before)
                .bind(&entry.after)
                .bind(&entry.note)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn put_decisions(&self, batch: &[NewDecision]) -> Result<Vec<PutOutcome>> {
                // a batch that fits one statement is atomic on its own (no BEGIN/COMMIT
                // round trips); larger ones get a transaction
                let mut inserted = if batch.len() <= Self::ONE_STATEMENT {
                    let mut conn = self.pool.acquire().await?;
                    Self::insert_new(&mut conn, batch).await?
                } else {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let inserted = Self::insert_new(&mut tx, batch).await?;
                    tx.commit().await?;
                    inserted
                };
                // An id inserted now counts once: its first occurrence in the batch.
                let mut outcomes = Vec::with_capacity(batch.len());
                let mut missing = Vec::new();
                for d in batch {
                    if inserted.remove(d.transaction_id.as_str()) {
                        outcomes.push(Some(PutOutcome::Inserted));
                    } else {
                        outcomes.push(None);
                        missing.push(d.transaction_id.as_str());
                    }
                }
                // rows already there are immutable in what is compared (id, fingerprint, decision)
                let stored = if missing.is_empty() {
                    Vec::new()
                } else {
                    Self::fetch_decisions(&mut *self.pool.acquire().await?, &missing).await?
                };
                let by_id: std::collections::HashMap<&str, &StoredDecision> =
                    stored.iter().map(|s| (s.decision.transaction_id.as_str(), s)).collect();
                batch
                    .iter()
                    .zip(outcomes)
                    .map(|(d, outcome)| match outcome {
                        Some(outcome) => Ok(outcome),
                        None => by_id
                            .get(d.transaction_id.as_str())
                            .map(|stored| PutOutcome::Existing(Box::new((*stored).clone())))
                            .ok_or_else(|| StoreError::Corrupt(format!("{} neither inserted nor stored", d.transaction_id))),
                    })
                    .collect()
            }

            async fn transaction(&self, id: &str) -> Result<Option<StoredDecision>> {
                let row = sqlx::query(concat!("SELECT ", decision_columns!(), " FROM transactions WHERE transaction_id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::decision_from_row).transpose()
            }

            async fn transactions_after(&self, seq: i64, limit: u32, shard: Option<&str>) -> Result<Vec<StoredDecision>> {
                let rows = match shard {
                    None => sqlx::query(concat!(
                        "SELECT ",
                        decision_columns!(),
                        " FROM transactions WHERE seq > $1 ORDER BY seq LIMIT $2"
                    ))
                    .bind(seq)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?,
                    Some(shard) => sqlx::query(concat!(
                        "SELECT ",
                        decision_columns!(),
                        " FROM transactions WHERE shard = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                    ))
                    .bind(shard)
                    .bind(seq)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?,
                };
                rows.iter().map(Self::decision_from_row).collect()
            }

            async fn last_seq(&self) -> Result<i64> {
                let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM transactions")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(seq.unwrap_or(0))
            }

            async fn count_transactions(&self) -> Result<u64> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transactions")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count.try_into().unwrap_or(0))
            }

            async fn anomalies(&self, q: &AnomalyQuery) -> Result<Page> {
                let limit = q.limit.max(1);
                let mut query = QueryBuilder::<$db>::new(format!(
                    "SELECT {DECISION_COLUMNS} FROM transactions WHERE review_status IS NOT NULL"
                ));
                if let Some(status) = q.status {
                    query.push(" AND review_status = ").push_bind(status.as_str());
                }
                if let Some(min) = q.min_score {
                    query.push(" AND score >= ").push_bind(min);
                }
                if let Some(from) = q.from {
                    query.push(" AND event_time >= ").push_bind(from);
                }
                if let Some(to) = q.to {
                    query.push(" AND event_time < ").push_bind(to);
                }
                if let Some(entity) = &q.entity {
                    query.push(" AND entity = ").push_bind(entity.clone());
                }
                match q.cursor.as_deref().map(|c| decode_cursor(q.order, c)).transpose()? {
                    None => {}
                    Some(CursorKey::Score(score, seq)) => {
                        query
                            .push(" AND (score < ")
                            .push_bind(score)
                            .push(" OR (score = ")
                            .push_bind(score)
                            .push(" AND seq < ")
                            .push_bind(seq)
                            .push("))");
                    }
                    Some(CursorKey::Time(time, seq)) => {
                        let cmp = if q.order == QueueOrder::TimeAsc { ">" } else { "<" };
                        query
                            .push(format!(" AND (event_time {cmp} "))
                            .push_bind(time)
                            .push(" OR (event_time = ")
                            .push_bind(time)
                            .push(format!(" AND seq {cmp} "))
                            .push_bind(seq)
                            .push("))");
                    }
                }
                query.push(match q.order {
                    QueueOrder::ScoreDesc => " ORDER BY score DESC, seq DESC",
                    QueueOrder::TimeDesc => " ORDER BY event_time DESC, seq DESC",
                    QueueOrder::TimeAsc => " ORDER BY event_time, seq",
                });
                query.push(" LIMIT ").push_bind(i64::from(limit) + 1);
                let rows = query.build().fetch_all(&self.pool).await?;
                let mut items = rows.iter().map(Self::decision_from_row).collect::<Result<Vec<_>>>()?;
                let next_cursor = if items.len() > limit as usize {
                    items.truncate(limit as usize);
                    items.last().map(|last| encode_cursor(q.order, last))
                } else {
                    None
                };
                Ok(Page { items, next_cursor })
            }

            async fn review(&self, change: &ReviewRequest) -> Result<ReviewOutcome> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let before: Option<Option<String>> =
                    sqlx::query_scalar(concat!(
                        "SELECT review_status FROM transactions WHERE transaction_id = $1",
                        $for_update
                    ))
                        .bind(&change.transaction_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(before) = before else {
                    return Err(StoreError::NotFound(format!("transaction {:?}", change.transaction_id)));
                };
                let before: Option<ReviewStatus> = before.as_deref().map(parse).transpose()?;
                let label = change.status.label();
                sqlx::query(
                    "UPDATE transactions SET review_status = $1, review_updated_at = $2, \
                     label = COALESCE($3, label) WHERE transaction_id = $4",
                )
                .bind(change.status.as_str())
                .bind(change.at)
                .bind(label.map(label_str))
                .bind(&change.transaction_id)
                .execute(&mut *tx)
                .await?;
                Self::audit_in(
                    &mut tx,
                    &AuditEntry {
                        at: change.at,
                        actor: change.actor.clone(),
                        action: "review".to_owned(),
                        subject: change.transaction_id.clone(),
                        before: before.map(|s| s.as_str().to_owned()),
                        after: Some(change.status.as_str().to_owned()),
                        note: change.note.clone(),
                    },
                )
                .await?;
                if let Some(label) = label {
                    sqlx::query(
                        "INSERT INTO labels (transaction_id, label, source, actor, at) VALUES ($1, $2, 'review', $3, $4)",
                    )
                    .bind(&change.transaction_id)
                    .bind(label_str(label))
                    .bind(&change.actor)
                    .bind(change.at)
                    .execute(&mut *tx)
                    .await?;
                }
                let transaction = Self::fetch_decisions(&mut tx, &[change.transaction_id.as_str()])
                    .await?
                    .pop()
                    .ok_or_else(|| StoreError::NotFound(format!("transaction {:?}", change.transaction_id)))?;
                tx.commit().await?;
                Ok(ReviewOutcome { before, transaction, label })
            }

            async fn put_labels(&self, labels: &[NewLabel]) -> Result<Vec<Option<StoredDecision>>> {
                let mut tx = Self::begin_write(&self.pool).await?;
                for label in labels {
                    sqlx::query(
                        "INSERT INTO labels (transaction_id, label, source, actor, at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&label.transaction_id)
                    .bind(label_str(label.label))
                    .bind(&label.source)
                    .bind(&label.actor)
                    .bind(label.at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE transactions SET label = $1 WHERE transaction_id = $2")
                        .bind(label_str(label.label))
                        .bind(&label.transaction_id)
                        .execute(&mut *tx)
                        .await?;
                }
                let ids: Vec<&str> = labels.iter().map(|l| l.transaction_id.as_str()).collect();
                let stored = Self::fetch_decisions(&mut tx, &ids).await?;
                tx.commit().await?;
                Ok(labels
                    .iter()
                    .map(|l| stored.iter().find(|s| s.decision.transaction_id == l.transaction_id).cloned())
                    .collect())
            }

            async fn labels(&self, transaction_id: &str) -> Result<Vec<LabelEntry>> {
                let rows = sqlx::query(
                    "SELECT label, source, actor, at FROM labels WHERE transaction_id = $1 ORDER BY id",
                )
                .bind(transaction_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let label: String = row.try_get("label")?;
                        Ok(LabelEntry {
                            label: parse_label(&label)?,
                            source: row.try_get("source")?,
                            actor: row.try_get("actor")?,
                            at: row.try_get("at")?,
                        })
                    })
                    .collect()
            }

            async fn audit(&self, subject: &str) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query(
                    "SELECT at, actor, action, subject, before, after, note FROM audit_log \
                     WHERE subject = $1 ORDER BY id",
                )
                .bind(subject)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(AuditEntry {
                            at: row.try_get("at")?,
                            actor: row.try_get("actor")?,
                            action: row.try_get("action")?,
                            subject: row.try_get("subject")?,
                            before: row.try_get("before")?,
                            after: row.try_get("after")?,
                            note: row.try_get("note")?,
                        })
                    })
                    .collect()
            }

            async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
                let mut conn = self.pool.acquire().await?;
                Self::audit_in(&mut conn, entry).await
            }

            async fn register_model(&self, model: &NewModel) -> Result<()> {
                let mut tx = Self::begin_write(&self.pool).await?;
                sqlx::query($lock_models).execute(&mut *tx).await?;
                let existing: Option<(String, Option<String>)> =
                    sqlx::query_as("SELECT path, digest FROM models WHERE version = $1")
                        .bind(&model.version)
                        .fetch_optional(&mut *tx)
                        .await?;
                match existing {
                    Some((path, Some(digest))) if path == model.path && digest == model.digest => return Ok(()),
                    // registered before digests were kept: this registration supplies it
                    Some((path, None)) if path == model.path => {
                        sqlx::query("UPDATE models SET digest = $1 WHERE version = $2")
                            .bind(&model.digest)
                            .bind(&model.version)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        return Ok(());
                    }
                    Some((path, Some(_))) if path == model.path => {
                        return Err(StoreError::Conflict(format!(
                            "model version {:?} is registered with other content: the files at {path:?} \
                             changed since its registration",
                            model.version
                        )));
                    }
                    Some((path, _)) => {
                        return Err(StoreError::Conflict(format!(
                            "model version {:?} is already registered with {path:?}",
                            model.version
                        )));
                    }
                    None => {}
                }
                sqlx::query(
                    "INSERT INTO models (version, path, stage, summary, feature_names, registered_at, digest) \
                     VALUES ($1, $2, 'staging', $3, $4, $5, $6)",
                )
                .bind(&model.version)
                .bind(&model.path)
                .bind(&model.summary)
                .bind(serde_json::to_string(&model.feature_names).unwrap_or_else(|_| "[]".to_owned()))
                .bind(model.registered_at)
                .bind(&model.digest)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn models(&self) -> Result<Vec<ModelEntry>> {
                let rows = sqlx::query(
                    "SELECT version, path, stage, summary, feature_names, registered_at, promoted_at, digest FROM models \
                     ORDER BY registered_at DESC, version DESC",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::model_from_row).collect()
            }

            async fn promote_model(&self, version: &str, at: i64, actor: &str) -> Result<ModelEntry> {
                let mut tx = Self::begin_write(&self.pool).await?;
                sqlx::query($lock_models).execute(&mut *tx).await?;
                let before: Option<String> =
                    sqlx::query_scalar("SELECT version FROM models WHERE stage = 'production'")
                        .fetch_optional(&mut *tx)
                        .await?;
                sqlx::query("UPDATE models SET stage = 'archived' WHERE stage = 'production' AND version <> $1")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(
                    "UPDATE models SET stage = 'production', promoted_at = $1 WHERE version = $2 \
                     RETURNING version, path, stage, summary, feature_names, registered_at, promoted_at, digest",
                )
                .bind(at)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::NotFound(format!("model version {version:?}")));
                };
                let entry = Self::model_from_row(&row)?;
                Self::audit_in(
                    &mut tx,
                    &AuditEntry {
                        at,
                        actor: actor.to_owned(),
                        action: "promote".to_owned(),
                        subject: format!("model:{version}"),
                        before,
                        after: Some(version.to_owned()),
                        note: None,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(entry)
            }

            async fn create_key(&self, key: &ApiKeyEntry) -> Result<()> {
                let mut tx = Self::begin_write(&self.pool).await?;
                sqlx::query(
                    "INSERT INTO api_keys (key_id, name, role, secret_sha256, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&key.key_id)
                .bind(&key.name)
                .bind(key.role.as_str())
                .bind(&key.secret_sha256)
                .bind(key.created_at)
                .bind(key.revoked_at)
                .execute(&mut *tx)
                .await?;
                Self::audit_in(
                    &mut tx,
                    &AuditEntry {
                        at: key.created_at,
                        actor: "cli".to_owned(),
                        action: "key_create".to_owned(),
                        subject: format!("key:{}", key.key_id),
                        before: None,
                        after: Some(key.role.as_str().to_owned()),
                        note: Some(key.name.clone()),
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn key(&self, key_id: &str) -> Result<Option<ApiKeyEntry>> {
                let row = sqlx::query(
                    "SELECT key_id, name, role, secret_sha256, created_at, revoked_at FROM api_keys WHERE key_id = $1",
                )
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::key_from_row).transpose()
            }

            async fn keys(&self) -> Result<Vec<ApiKeyEntry>> {
                let rows = sqlx::query(
                    "SELECT key_id, name, role, secret_sha256, created_at, revoked_at FROM api_keys \
                     ORDER BY created_at, key_id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::key_from_row).collect()
            }

            async fn revoke_key(&self, key_id: &str, at: i64, actor: &str) -> Result<bool> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let exists: Option<Option<i64>> =
                    sqlx::query_scalar(concat!("SELECT revoked_at FROM api_keys WHERE key_id = $1", $for_update))
                        .bind(key_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match exists {
                    None => return Err(StoreError::NotFound(format!("API key {key_id:?}"))),
                    Some(Some(_)) => return Ok(false),
                    Some(None) => {}
                }
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2")
                    .bind(at)
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await?;
                Self::audit_in(
                    &mut tx,
                    &AuditEntry {
                        at,
                        actor: actor.to_owned(),
                        action: "key_revoke".to_owned(),
                        subject: format!("key:{key_id}"),
                        before: None,
                        after: None,
                        note: None,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
                if letters.is_empty() {
                    return Ok(());
                }
                let mut tx = Self::begin_write(&self.pool).await?;
                for chunk in letters.chunks(INSERT_CHUNK) {
                    let mut query =
                        QueryBuilder::<$db>::new("INSERT INTO dead_letters (at, source, location, error, payload) ");
                    query.push_values(chunk, |mut row, letter| {
                        row.push_bind(letter.at)
                            .push_bind(letter.source.clone())
                            .push_bind(letter.location.clone())
                            .push_bind(redact_card_numbers(&letter.error).into_owned())
                            .push_bind(redact_card_numbers(&letter.payload).into_owned());
                    });
                    // a Kafka record already dead-lettered (a retried batch) is not stored again
                    query.push(" ON CONFLICT DO NOTHING");
                    query.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>> {
                let rows = sqlx::query(
                    "SELECT id, at, source, location, error, payload FROM dead_letters ORDER BY id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(StoredDeadLetter {
                            id: row.try_get("id")?,
                            letter: DeadLetter {
                                at: row.try_get("at")?,
                                source: row.try_get("source")?,
                                location: row.try_get("location")?,
                                error: row.try_get("error")?,
                                payload: row.try_get("payload")?,
                            },
                        })
                    })
                    .collect()
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

/// The embedded default: a SQLite file in WAL mode.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `sqlite://PATH` and migrates it.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_sync {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            // a ping per acquire is a round trip per commit; a broken connection fails its statement instead
            .test_before_acquire(false)
            .connect_with(connect)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// PostgreSQL, for several processes sharing one store.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl SqliteStore {
    /// A write transaction that takes SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred one that reads first and then writes fails with
    /// SQLITE_BUSY, without waiting, when another writer got there in between.
    async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Rows per INSERT statement.
    const ONE_STATEMENT: usize = 64;

    /// Inserts the new rows of a batch with multi-row statements of up to 64
    /// rows: few statements per batch (each is a round trip to sqlx's SQLite
    /// thread), and at most 64 SQL texts, each prepared once and cached.
    /// Returns the ids inserted.
    async fn insert_new(
        conn: &mut sqlx::SqliteConnection,
        batch: &[NewDecision],
    ) -> Result<std::collections::HashSet<String>> {
        let mut inserted = std::collections::HashSet::with_capacity(batch.len());
        let mut rest = batch;
        while !rest.is_empty() {
            let n = rest.len().min(Self::ONE_STATEMENT);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut query = QueryBuilder::<sqlx::Sqlite>::new(insert_columns!());
            query.push_values(chunk, |mut row, d| {
                row.push_bind(d.transaction_id.as_str())
                    .push_bind(d.fingerprint.as_str())
                    .push_bind(d.event_time)
                    .push_bind(d.received_at)
                    .push_bind(d.entity.as_deref())
                    .push_bind(d.amount_minor)
                    .push_bind(d.currency.as_str())
                    .push_bind(d.body.as_str())
                    .push_bind(d.score)
                    .push_bind(d.probability)
                    .push_bind(d.raw_score)
                    .push_bind(d.anomaly_score)
                    .push_bind(d.decision.as_str())
                    .push_bind(d.reasons.as_str())
                    .push_bind(encode_features(&d.features))
                    .push_bind(d.model_version.as_str())
                    .push_bind(d.latency_us)
                    .push_bind(d.review_status.map(ReviewStatus::as_str))
                    .push_bind(d.shard.as_deref());
            });
            query.push(" ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id");
            for row in query.build().persistent(true).fetch_all(&mut *conn).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(inserted)
    }
}

impl PostgresStore {
    /// A transaction (row locks and MVCC make an ordinary one enough).
    async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(pool.begin().await?)
    }

    /// Rows per INSERT statement.
    const ONE_STATEMENT: usize = INSERT_CHUNK;

    /// Inserts the new rows of a batch with one statement per 500 rows: every
    /// column as an array, `UNNEST`ed (a constant SQL text, so it is prepared
    /// once, and one round trip per chunk). Returns the ids inserted.
    async fn insert_new(
        conn: &mut sqlx::PgConnection,
        batch: &[NewDecision],
    ) -> Result<std::collections::HashSet<String>> {
        let mut inserted = std::collections::HashSet::with_capacity(batch.len());
        for chunk in batch.chunks(Self::ONE_STATEMENT) {
            let column = |f: &dyn Fn(&NewDecision) -> String| chunk.iter().map(f).collect::<Vec<String>>();
            let rows = sqlx::query(concat!(
                insert_columns!(),
                "SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::int8[], \
                 $7::text[], $8::text[], $9::float8[], $10::float8[], $11::float8[], $12::float8[], $13::text[], \
                 $14::text[], $15::bytea[], $16::text[], $17::int8[], $18::text[], $19::text[]) \
                 ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id"
            ))
            .bind(column(&|d| d.transaction_id.clone()))
            .bind(column(&|d| d.fingerprint.clone()))
            .bind(chunk.iter().map(|d| d.event_time).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|d| d.received_at).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|d| d.entity.clone()).collect::<Vec<Option<String>>>())
            .bind(chunk.iter().map(|d| d.amount_minor).collect::<Vec<i64>>())
            .bind(column(&|d| d.currency.clone()))
            .bind(column(&|d| d.body.clone()))
            .bind(chunk.iter().map(|d| d.score).collect::<Vec<f64>>())
            .bind(chunk.iter().map(|d| d.probability).collect::<Vec<Option<f64>>>())
            .bind(chunk.iter().map(|d| d.raw_score).collect::<Vec<Option<f64>>>())
            .bind(chunk.iter().map(|d| d.anomaly_score).collect::<Vec<Option<f64>>>())
            .bind(column(&|d| d.decision.as_str().to_owned()))
            .bind(column(&|d| d.reasons.clone()))
            .bind(
                chunk
                    .iter()
                    .map(|d| encode_features(&d.features))
                    .collect::<Vec<Vec<u8>>>(),
            )
            .bind(column(&|d| d.model_version.clone()))
            .bind(chunk.iter().map(|d| d.latency_us).collect::<Vec<i64>>())
            .bind(
                chunk
                    .iter()
                    .map(|d| d.review_status.map(|s| s.as_str().to_owned()))
                    .collect::<Vec<Option<String>>>(),
            )
            .bind(chunk.iter().map(|d| d.shard.clone()).collect::<Vec<Option<String>>>())
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(inserted)
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    SqlitePool,
    SqliteRow,
    "sqlite",
    "",
    "SELECT 1"
);
sql_store!(
    PostgresStore,
    sqlx::Postgres,
    PgPool,
    PgRow,
    "postgres",
    " FOR UPDATE",
    "LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE"
);
