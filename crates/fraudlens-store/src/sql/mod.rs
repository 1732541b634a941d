//! The two backends as one store generic over the database: [`SqlStore`]
//! runs the same SQL text on both (numbered `$n` parameters work on both);
//! the few differences (connecting, migrations, how a write transaction
//! starts, row locks, the bulk insert) sit behind [`Backend`], implemented in
//! `sqlite.rs` and `postgres.rs`.
//!
//! Each concept has its module: `decisions` (scored transactions), `reviews`
//! (the review queue, review changes and the audit log), `labels`, `models`
//! (the registry), `comparisons` (champion/challenger reports), `keys` (API
//! keys), `console` (sessions, queue counts, an entity's history) and `dead_letters`. This file wires them
//! to the [`Store`] trait.
//!
//! Every generic block states what sqlx needs of the database (the same
//! `where` list): that its connections execute queries, and that it encodes
//! and decodes the Rust types the store uses. Both backends meet it; it is
//! written out because Rust does not carry such bounds along with a trait.

/// The columns of a [`StoredDecision`], as a literal for `concat!` (sqlx takes only static SQL text).
macro_rules! decision_columns {
    () => {
        "seq, transaction_id, fingerprint, event_time, received_at, entity, amount_minor, \
         currency, body, score, probability, raw_score, anomaly_score, decision, reasons, features, model_version, \
         latency_us, review_status, review_updated_at, label, shard"
    };
}

/// The head of a decisions insert, as a literal for `concat!`.
macro_rules! insert_columns {
    () => {
        "INSERT INTO transactions (transaction_id, fingerprint, event_time, received_at, entity, amount_minor, \
         currency, body, score, probability, raw_score, anomaly_score, decision, reasons, features, model_version, \
         latency_us, review_status, shard) "
    };
}

mod comparisons;
mod console;
mod dead_letters;
mod decisions;
mod feature_codec;
mod keys;
mod labels;
mod models;
mod postgres;
mod reviews;
mod shadow;
mod sqlite;
mod vectors;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, Pool, Type};

use crate::*;

pub use sqlite::SqliteSync;
pub(crate) use sqlite::shadow_file;
pub use vectors::SimilarIndex;

/// The embedded default: a SQLite file in WAL mode.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

/// PostgreSQL, for several processes sharing one store.
pub type PostgresStore = SqlStore<sqlx::Postgres>;

/// A [`Store`] on a pool of one backend's connections.
#[derive(Clone, Debug)]
pub struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    /// Where shadow scores are read and written: on SQLite a file of their
    /// own (its own write lock), on PostgreSQL the same database.
    shadow: Pool<DB>,
    /// The similar-case vector index (PostgreSQL with pgvector).
    vectors: Arc<vectors::VectorIndex>,
}

/// What differs between the backends. (Public only because the bounds of
/// [`SqlStore`]'s methods name it; the crate does not export it.)
pub trait Backend: Database<Arguments: sqlx::IntoArguments<Self>> {
    /// The name [`Store::backend`] answers.
    const BACKEND: &'static str;

    /// Appended to a `SELECT` that reads rows a transaction then changes:
    /// `FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds
    /// the only write lock.
    const FOR_UPDATE: &'static str;

    /// A statement that serialises changes to the model registry (its
    /// one-production rule spans rows).
    const LOCK_MODELS: &'static str;

    /// Most rows [`Backend::insert_new`] writes in one statement: a batch up
    /// to this size is written without an explicit transaction.
    const ONE_STATEMENT: usize;

    /// A statement run in a promotion's transaction that announces the new
    /// production version (`$1`) to the processes listening, sent only on
    /// commit: `pg_notify` on PostgreSQL; SQLite has no such channel (`None`).
    const NOTIFY_MODELS: Option<&'static str>;

    /// SQL of the `position`-th entity key of a stored transaction's body
    /// (`{"entities": [key, …]}`), as text.
    fn body_entity(position: usize) -> String;

    /// SQL true when the text `column` holds the text parameter `$n`.
    fn contains(column: &str, parameter: usize) -> String;

    /// The reviews' notes matching the words `$1` (as [`Backend::words`]
    /// makes them), best first, at most `$2`: `subject`, `at`, `text` (the note). Other
    /// audit entries' notes (a key's name, a promotion's) are not searched.
    const SEARCH_NOTES: &'static str;

    /// The narratives matching the words `$1`, best first, at most `$2`:
    /// `subject` (the case), `at`, `text` (the assessment).
    const SEARCH_NARRATIVES: &'static str;

    /// A user's words as the text-search parameter: every word must match.
    fn words(query: &str) -> String;

    /// Starts a transaction that will write.
    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>>> + Send;

    /// Inserts the decisions whose transaction id is not stored yet; returns the ids inserted.
    fn insert_new(
        conn: &mut Self::Connection,
        batch: &[NewDecision],
    ) -> impl Future<Output = Result<std::collections::HashSet<String>>> + Send;

    /// Subscribes to the promotions announced by [`Backend::NOTIFY_MODELS`]
    /// (`None`: the backend has no such channel).
    fn model_changes(pool: &Pool<Self>) -> impl Future<Output = Result<Option<ModelChanges>>> + Send;

    /// [`Store::nearest_flagged`] (`None`: the backend has no vector index).
    fn nearest_flagged(
        store: &SqlStore<Self>,
        at: Timestamp,
        reasons: &str,
        limit: u32,
        exact_up_to: u32,
    ) -> impl Future<Output = Result<Option<Vec<StoredDecision>>>> + Send;
}

#[async_trait::async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
    for<'a> Option<i64>: Encode<'a, DB>,
    for<'a> Option<f64>: Encode<'a, DB>,
    String: for<'a> Encode<'a, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'a> Encode<'a, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    f64: for<'a> Encode<'a, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn put_decisions(&self, batch: &[NewDecision]) -> Result<Vec<PutOutcome>> {
        self.put_decisions_in(batch).await
    }

    async fn transaction(&self, id: &str) -> Result<Option<StoredDecision>> {
        self.decision(id).await
    }

    async fn transactions_after(&self, seq: i64, limit: u32, shard: Option<&str>) -> Result<Vec<StoredDecision>> {
        self.decisions_after(seq, limit, shard).await
    }

    async fn last_seq(&self) -> Result<i64> {
        self.max_seq().await
    }

    async fn latest_event_time(&self) -> Result<Option<Timestamp>> {
        self.max_event_time().await
    }

    async fn first_seq_since(&self, event_time: Timestamp, shard: Option<&str>) -> Result<Option<i64>> {
        self.min_seq_since(event_time, shard).await
    }

    async fn count_transactions(&self) -> Result<u64> {
        self.count_decisions().await
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Page> {
        self.queue(query).await
    }

    async fn review(&self, change: &ReviewRequest) -> Result<ReviewOutcome> {
        self.change_review(change).await
    }

    async fn put_labels(&self, labels: &[NewLabel]) -> Result<Vec<Option<StoredDecision>>> {
        self.insert_labels(labels).await
    }

    async fn labels(&self, transaction_id: &str) -> Result<Vec<LabelEntry>> {
        self.labels_of(transaction_id).await
    }

    async fn audit(&self, subject: &str) -> Result<Vec<AuditEntry>> {
        self.audit_of(subject).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        Self::audit_in(&mut conn, entry).await
    }

    async fn register_model(&self, model: &NewModel) -> Result<()> {
        self.insert_model(model).await
    }

    async fn models(&self) -> Result<Vec<ModelEntry>> {
        self.all_models().await
    }

    async fn promote_model(&self, version: &str, at: Timestamp, actor: &str) -> Result<ModelEntry> {
        self.promote(version, at, actor).await
    }

    async fn model_changes(&self) -> Result<Option<ModelChanges>> {
        DB::model_changes(&self.pool).await
    }

    async fn flagged_outcomes(&self, after_seq: i64) -> Result<FlaggedOutcomes> {
        self.count_flagged_outcomes(after_seq).await
    }

    async fn set_shadow(&self, version: Option<&str>, at: Timestamp, actor: &str) -> Result<Option<String>> {
        self.change_shadow(version, at, actor).await
    }

    async fn put_shadow_scores(&self, scores: &[ShadowScore]) -> Result<()> {
        self.insert_shadow_scores(scores).await
    }

    async fn shadow_scores(&self, version: &str, from: Timestamp, to: Timestamp) -> Result<Vec<ShadowScore>> {
        self.shadow_scores_between(version, from, to).await
    }

    async fn put_comparison(&self, comparison: &NewComparison) -> Result<i64> {
        self.insert_comparison(comparison).await
    }

    async fn comparisons(&self, candidate: Option<&str>, limit: u32) -> Result<Vec<ComparisonEntry>> {
        self.latest_comparisons(candidate, limit).await
    }

    async fn create_key(&self, key: &ApiKeyEntry) -> Result<()> {
        self.insert_key(key).await
    }

    async fn key(&self, key_id: &str) -> Result<Option<ApiKeyEntry>> {
        self.key_by_id(key_id).await
    }

    async fn keys(&self) -> Result<Vec<ApiKeyEntry>> {
        self.all_keys().await
    }

    async fn revoke_key(&self, key_id: &str, at: Timestamp, actor: &str) -> Result<bool> {
        self.revoke(key_id, at, actor).await
    }

    async fn create_session(&self, session: &SessionEntry) -> Result<()> {
        self.insert_session(session).await
    }

    async fn session(&self, token_sha256: &str) -> Result<Option<SessionEntry>> {
        self.session_by_token(token_sha256).await
    }

    async fn end_session(&self, token_sha256: &str, at: Timestamp) -> Result<bool> {
        self.finish_session(token_sha256, at).await
    }

    async fn put_narrative(&self, narrative: &NewNarrative) -> Result<i64> {
        self.insert_narrative(narrative).await
    }

    async fn narratives(&self, transaction_id: &str, limit: u32) -> Result<Vec<StoredNarrative>> {
        self.narratives_of(transaction_id, limit).await
    }

    async fn flagged_before(&self, at: Timestamp, limit: u32) -> Result<Vec<StoredDecision>> {
        self.flagged_until(at, limit).await
    }

    async fn nearest_flagged(
        &self,
        at: Timestamp,
        reasons: &str,
        limit: u32,
        exact_up_to: u32,
    ) -> Result<Option<Vec<StoredDecision>>> {
        DB::nearest_flagged(self, at, reasons, limit, exact_up_to).await
    }

    async fn search(&self, query: &str, limit: u32) -> Result<Vec<SearchHit>> {
        self.search_all(query, limit).await
    }

    async fn queue_counts(&self, after_seq: i64) -> Result<QueueCounts> {
        self.count_queue(after_seq).await
    }

    async fn entity_history(
        &self,
        entity: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<StoredDecision>> {
        self.history_of(entity, from, to, limit).await
    }

    async fn decision_stats(&self, from: Timestamp, to: Timestamp, bucket_millis: i64) -> Result<DecisionStats> {
        self.stats_between(from, to, bucket_millis).await
    }

    async fn related_entities(
        &self,
        position: usize,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<RelatedEntity>> {
        self.sharing(position, key, from, to, limit).await
    }

    async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        self.insert_dead_letters(letters).await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>> {
        self.latest_dead_letters(limit).await
    }

    async fn close(&self) {
        self.shadow.close().await;
        self.pool.close().await;
    }
}
