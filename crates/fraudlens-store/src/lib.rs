//! Durable state of fraudlens: the [`Store`] trait and its two backends,
//! chosen by URL ([`connect`]): `sqlite://path` (the embedded default) and
//! `postgres://…`. Both run the same SQL (numbered `$n` parameters work on
//! both), each has its own migrations (`migrations/sqlite`,
//! `migrations/postgres`), and one conformance suite (`tests/conformance.rs`)
//! runs against both.
//!
//! What is kept: every scored transaction with its decision (idempotent on the
//! transaction id), review statuses, labels, the audit log, the model
//! registry, API keys (a SHA-256 of the secret only) and dead letters.
//!
//! Times are [`fraudlens_core::Timestamp`]s, taken by the caller (the store reads no clock,
//! which keeps it testable), and stored as integer milliseconds since the
//! epoch: the SQL modules convert at the edge.
//!
//! Layout: `sql/` is the one implementation, generic over the backend
//! (`sql/sqlite.rs` and `sql/postgres.rs` hold what differs), with a module
//! per concept (decisions, reviews and audit, labels, models, keys, dead
//! letters); `vocabulary.rs` holds the enums stored as text, `types.rs` the
//! rows.

pub mod backup;
mod sql;
mod types;
mod vocabulary;

use std::sync::Arc;

pub use sql::{PostgresStore, SimilarIndex, SqliteStore, SqliteSync};
pub use types::*;
pub use vocabulary::*;

use fraudlens_core::Timestamp;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported backend (it holds the URL with its password hidden).
    #[error("unsupported store URL {0:?}: use sqlite://PATH or postgres://…")]
    Url(String),
    /// A stored value cannot be read back (a column holds something this build does not know).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The operation names something that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is not valid (a cursor from another sort order, say).
    #[error("{0}")]
    Invalid(String),
    /// The operation conflicts with the stored state.
    #[error("{0}")]
    Conflict(String),
}

/// The PostgreSQL notification channel of promotions (its payload: the new
/// production version).
pub const MODELS_CHANNEL: &str = "fraudlens_models";

/// What [`Store::model_changes`] hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelChange {
    /// A promotion was committed: this version is the production model.
    Promoted(String),
    /// The listening connection was lost and re-established: announcements
    /// may have been missed.
    Reconnected,
}

/// The announcements of promotions ([`Store::model_changes`]); `None` from
/// [`ModelChanges::next`] when listening stopped (the pool closed, or the
/// connection could not be re-established): subscribe again later.
#[derive(Debug)]
pub struct ModelChanges {
    receiver: tokio::sync::mpsc::Receiver<ModelChange>,
}

impl ModelChanges {
    /// Wraps the receiving end of a listener task.
    pub fn new(receiver: tokio::sync::mpsc::Receiver<ModelChange>) -> Self {
        Self { receiver }
    }

    /// The next announcement, or `None` once listening stopped.
    pub async fn next(&mut self) -> Option<ModelChange> {
        self.receiver.recv().await
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most connections in the pool.
    pub max_connections: u32,
    /// SQLite only: how hard a commit waits for the disk.
    pub sqlite_sync: SqliteSync,
    /// PostgreSQL only: whether it keeps the similar-case vector index.
    pub similar_index: SimilarIndex,
    /// PostgreSQL only: this process makes the vector index (creating the
    /// extension, the objects, their backfill and the index in the
    /// background) rather than only using one made. For long-running
    /// processes (`serve`, `detect`); a short command would start work it
    /// stops before it is done.
    pub maintain_similar_index: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_sync: SqliteSync::Full,
            similar_index: SimilarIndex::Auto,
            maintain_similar_index: false,
        }
    }
}

/// Opens the store a URL names and brings its schema up to date.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, options).await?))
    } else {
        Err(StoreError::Url(redact_url(url)))
    }
}

/// A store URL fit to print or log: the password of its user part and any
/// `password`/`sslpassword` query parameter become `***`
/// (`postgres://fraud:***@db:5432/fraud`). The user part ends at the *last*
/// `@`, so a password holding `@`, `/` or `?` is hidden whole; a `@` further
/// right (in a query value) hides more than needed, never less.
pub fn redact_url(url: &str) -> String {
    let mut redacted = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let user_part = &url[scheme_end + 3..at];
            match user_part.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    if let Some(query_start) = redacted.find('?') {
        let query: Vec<String> = redacted[query_start + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_parameter(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        redacted = format!("{}?{}", &redacted[..query_start], query.join("&"));
    }
    redacted
}

fn is_secret_parameter(key: &str) -> bool {
    ["password", "sslpassword"]
        .iter()
        .any(|secret| key.eq_ignore_ascii_case(secret))
}

/// The durable state behind the scoring path, the review queue and the admin API.
///
/// Every method is one database transaction: it happens entirely or not at all.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend (`sqlite` or `postgres`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// A cheap query that succeeds when the database answers.
    async fn ping(&self) -> Result<()>;

    /// Writes a batch of decisions in one transaction (group commit). For each
    /// input, in order: [`PutOutcome::Inserted`], or the stored row when the
    /// transaction id was already there (also when it appears twice in the
    /// batch: the first is inserted). The caller compares fingerprints.
    async fn put_decisions(&self, batch: &[NewDecision]) -> Result<Vec<PutOutcome>>;

    /// One transaction with its decision.
    async fn transaction(&self, id: &str) -> Result<Option<StoredDecision>>;

    /// Stored transactions after `seq`, oldest first (to rebuild entity
    /// state): all of them, or those of one entity-state shard.
    async fn transactions_after(&self, seq: i64, limit: u32, shard: Option<&str>) -> Result<Vec<StoredDecision>>;

    /// The sequence number of the newest stored transaction (0 when none).
    async fn last_seq(&self) -> Result<i64>;

    /// The latest event time of any stored transaction (`None` when none).
    async fn latest_event_time(&self) -> Result<Option<Timestamp>>;

    /// The smallest sequence number of a stored transaction (of `shard`, if
    /// given) dated at or after `event_time` (`None` when none): where a
    /// rebuild of the entity state may start when older rows cannot change
    /// any feature any more.
    async fn first_seq_since(&self, event_time: Timestamp, shard: Option<&str>) -> Result<Option<i64>>;

    /// How many transactions are stored.
    async fn count_transactions(&self) -> Result<u64>;

    /// The review queue: transactions with a review status, filtered, sorted, paged.
    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Page>;

    /// Sets a review status: the row, an audit entry and (for
    /// `confirmed_fraud` / `false_positive`) a label, in one transaction.
    async fn review(&self, change: &ReviewRequest) -> Result<ReviewOutcome>;

    /// Records labels (chargebacks, uploads); each also updates its
    /// transaction's label when the transaction is stored. Returns, per
    /// label, the stored transaction it applies to (if any).
    async fn put_labels(&self, labels: &[NewLabel]) -> Result<Vec<Option<StoredDecision>>>;

    /// The labels of one transaction, oldest first.
    async fn labels(&self, transaction_id: &str) -> Result<Vec<LabelEntry>>;

    /// Audit entries about one subject (a transaction id, `model:V`, `key:ID`), oldest first.
    async fn audit(&self, subject: &str) -> Result<Vec<AuditEntry>>;

    /// Appends an audit entry on its own (model and key changes).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// Registers a model version as `staging` (a no-op when that version and path are already there).
    async fn register_model(&self, model: &NewModel) -> Result<()>;

    /// Every registered model, newest registration first.
    async fn models(&self) -> Result<Vec<ModelEntry>>;

    /// Makes `version` the production model; the previous one becomes
    /// `archived`. On PostgreSQL the transaction also notifies
    /// [`MODELS_CHANNEL`] with the version, so the listeners of
    /// [`Store::model_changes`] hear of it once it is committed.
    async fn promote_model(&self, version: &str, at: Timestamp, actor: &str) -> Result<ModelEntry>;

    /// The promotions committed from now on, by any process on this store,
    /// as they are announced (PostgreSQL `LISTEN`); `None` when the backend
    /// cannot announce them (SQLite: poll [`Store::models`]). A subscriber
    /// must still poll now and then: a notification sent while the
    /// connection was being re-established is lost (it is told so, by
    /// [`ModelChange::Reconnected`]).
    async fn model_changes(&self) -> Result<Option<ModelChanges>>;

    /// The labels of the flagged decisions stored after sequence number
    /// `after_seq` (a range of the primary key: cheap on any size).
    async fn flagged_outcomes(&self, after_seq: i64) -> Result<FlaggedOutcomes>;

    /// Makes `version` the shadow model, replacing the one before (the same
    /// version again is a new setting, with a new `shadow_since`), or
    /// (`None`) ends shadowing; with an audit entry (`shadow`, subject
    /// `model:VERSION`, the one ending for `None`) and, on PostgreSQL, the
    /// same announcement as a promotion. A version not registered is
    /// [`StoreError::NotFound`], the production model
    /// [`StoreError::Conflict`]. Returns the shadow model before. Promoting
    /// the shadow model ends its shadowing.
    async fn set_shadow(&self, version: Option<&str>, at: Timestamp, actor: &str) -> Result<Option<String>>;

    /// Stores shadow scores; a score already stored (same model and
    /// transaction) is kept as it was. On SQLite they live in a database
    /// file of their own (`NAME-shadow.EXT` beside the store's file, synced
    /// at checkpoints only: the scores are best effort), so that their writes
    /// never take the decisions' write lock.
    async fn put_shadow_scores(&self, scores: &[ShadowScore]) -> Result<()>;

    /// The scores of shadow model `version` for event times in `from..to`.
    async fn shadow_scores(&self, version: &str, from: Timestamp, to: Timestamp) -> Result<Vec<ShadowScore>>;

    /// Records a comparison (with its audit entry: `compare`, subject
    /// `model:CANDIDATE`); returns its id.
    async fn put_comparison(&self, comparison: &NewComparison) -> Result<i64>;

    /// The latest `limit` comparisons, newest first; with `candidate`, only
    /// those of that candidate.
    async fn comparisons(&self, candidate: Option<&str>, limit: u32) -> Result<Vec<ComparisonEntry>>;

    /// Adds an API key.
    async fn create_key(&self, key: &ApiKeyEntry) -> Result<()>;

    /// One API key by id (also when revoked).
    async fn key(&self, key_id: &str) -> Result<Option<ApiKeyEntry>>;

    /// Every API key, oldest first.
    async fn keys(&self) -> Result<Vec<ApiKeyEntry>>;

    /// Revokes a key; `false` when it was already revoked.
    async fn revoke_key(&self, key_id: &str, at: Timestamp, actor: &str) -> Result<bool>;

    /// Starts a console session (and forgets sessions that ended long ago);
    /// audit-logged.
    async fn create_session(&self, session: &SessionEntry) -> Result<()>;

    /// A session by the SHA-256 of its token, ended and expired ones too.
    async fn session(&self, token_sha256: &str) -> Result<Option<SessionEntry>>;

    /// Ends a session (sign-out), audit-logged; `false` when it was not open.
    async fn end_session(&self, token_sha256: &str, at: Timestamp) -> Result<bool>;

    /// Cases and entities whose id starts with `query`, and review notes and
    /// narratives holding all its words; at most `limit` of each kind.
    async fn search(&self, query: &str, limit: u32) -> Result<Vec<SearchHit>>;

    /// Keeps a case's narrative; its id.
    async fn put_narrative(&self, narrative: &NewNarrative) -> Result<i64>;

    /// A case's narratives, newest first, at most `limit`.
    async fn narratives(&self, transaction_id: &str, limit: u32) -> Result<Vec<StoredNarrative>>;

    /// The flagged decisions (review or decline) with event time at or
    /// before `at`, newest first, at most `limit`: the past cases a case is
    /// compared with. Read from the flagged decisions' time index.
    async fn flagged_before(&self, at: Timestamp, limit: u32) -> Result<Vec<StoredDecision>>;

    /// The flagged decisions with event time at or before `at` whose reasons
    /// are nearest by cosine to `reasons` (a decision's reasons, as stored),
    /// at most `limit`, in no set order; read from the store's vector index
    /// over all its flagged decisions. `None` when it has none (SQLite;
    /// PostgreSQL without pgvector, or while the index is being built), when
    /// `reasons` hold no contribution, or when at most `exact_up_to` flagged
    /// decisions precede `at`: then [`Store::flagged_before`] and an exact
    /// search, which sees them all.
    async fn nearest_flagged(
        &self,
        at: Timestamp,
        reasons: &str,
        limit: u32,
        exact_up_to: u32,
    ) -> Result<Option<Vec<StoredDecision>>>;

    /// The review queue's size per status, counting rows stored after `after_seq` (0: all).
    async fn queue_counts(&self, after_seq: i64) -> Result<QueueCounts>;

    /// An entity's decisions with event time in `[from, to)`, newest first, at most `limit`.
    async fn entity_history(
        &self,
        entity: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<StoredDecision>>;

    /// The decisions with event time in `[from, to)`: counts per decision,
    /// labels and decision times per bucket of `bucket_millis`, and per score bin.
    async fn decision_stats(&self, from: Timestamp, to: Timestamp, bucket_millis: i64) -> Result<DecisionStats>;

    /// The primary entities whose transactions in `[from, to)` carry `key` as
    /// their `position`-th entity key (another customer on the same terminal,
    /// say), most transactions first, at most `limit`. Reads every stored
    /// transaction of the window, up to the latest 50,000 of it (the entity
    /// keys are read from each transaction's body).
    async fn related_entities(
        &self,
        position: usize,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<RelatedEntity>>;

    /// Appends dead letters (their payloads with card numbers redacted).
    async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<()>;

    /// The latest dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>>;

    /// Closes the pool (waits for connections to be returned).
    async fn close(&self);
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_every_password() {
        let check = |url: &str, expected: &str| assert_eq!(redact_url(url), expected, "{url}");
        check(
            "postgres://fraud:s3cret@db:5432/fraud",
            "postgres://fraud:***@db:5432/fraud",
        );
        check("postgresql://fraud@db/fraud", "postgresql://fraud@db/fraud");
        check("postgres://:s3cret@db/fraud", "postgres://:***@db/fraud");
        check("postgres://fraud:s3/c?r@t@db/fraud", "postgres://fraud:***@db/fraud");
        check(
            "postgres://db/fraud?user=fraud&password=s3cret&sslmode=require",
            "postgres://db/fraud?user=fraud&password=***&sslmode=require",
        );
        check(
            "postgres://u:s3cret@db/f?PassWord=x",
            "postgres://u:***@db/f?PassWord=***",
        );
        check(
            "sqlite://fraudlens-data/fraudlens.db",
            "sqlite://fraudlens-data/fraudlens.db",
        );
        check("sqlite:data.db?mode=rwc", "sqlite:data.db?mode=rwc");
        check("mysql://root:s3cret@db/x", "mysql://root:***@db/x");
    }
}
