//! SQLite: connecting (WAL mode, the `synchronous` setting), its migrations
//! (`migrations/sqlite`), write transactions that take the write lock at
//! once, and the bulk insert of decisions as multi-row statements.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::decisions::INSERT_COLUMNS;
use super::feature_codec::encode_features;
use super::{Backend, SqlStore};
use fraudlens_core::ReviewStatus;

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

impl SqlStore<Sqlite> {
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
        let store_file = connect.get_filename().to_path_buf();
        let shadow_file = shadow_file(&store_file);
        let shadow_connect = connect
            .clone()
            .filename(&shadow_file)
            // best effort: the last scores may be lost on power failure, never a decision
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            // a ping per acquire is a round trip per commit; a broken connection fails its statement instead
            .test_before_acquire(false)
            .connect_with(connect)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let shadow = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(shadow_connect)
            .await?;
        sqlx::migrate!("./migrations/sqlite-shadow").run(&shadow).await?;
        move_shadow_scores(&pool, &shadow, &store_file).await?;
        Ok(Self {
            pool,
            shadow,
            vectors: super::vectors::VectorIndex::none(),
        })
    }
}

/// Shadow scores written into the store's own file (before they had a file
/// of their own, and migration 0007 still creates the table there) are
/// copied to the shadow file, a score already there kept, and the table is
/// dropped from the store's file. A crash in between copies again.
async fn move_shadow_scores(pool: &SqlitePool, shadow: &SqlitePool, store_file: &Path) -> Result<()> {
    let present: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'shadow_scores'")
            .fetch_one(pool)
            .await?;
    if present == 0 {
        return Ok(());
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM shadow_scores")
        .fetch_one(pool)
        .await?;
    if rows > 0 {
        let mut conn = shadow.acquire().await?;
        sqlx::query("ATTACH DATABASE $1 AS store")
            .bind(store_file.to_string_lossy().into_owned())
            .execute(&mut *conn)
            .await?;
        let copied = sqlx::query(
            "INSERT OR IGNORE INTO main.shadow_scores (model_version, transaction_id, event_time, score, \
             probability, decision, scored_at, latency_us) SELECT model_version, transaction_id, event_time, \
             score, probability, decision, scored_at, latency_us FROM store.shadow_scores",
        )
        .execute(&mut *conn)
        .await;
        sqlx::query("DETACH DATABASE store").execute(&mut *conn).await?;
        copied?;
        tracing::info!(rows, "shadow scores moved to their own file");
    }
    sqlx::query("DROP TABLE shadow_scores").execute(pool).await?;
    Ok(())
}

/// The shadow scores' own file beside the store's: `NAME-shadow.EXT`
/// (`fraudlens.db` → `fraudlens-shadow.db`); an in-memory store has its
/// scores in memory too.
pub(crate) fn shadow_file(store: &Path) -> PathBuf {
    if store.as_os_str() == ":memory:" || store.as_os_str().is_empty() {
        return store.to_path_buf();
    }
    let stem = store.file_stem().unwrap_or_default().to_string_lossy();
    let name = match store.extension() {
        Some(ext) => format!("{stem}-shadow.{}", ext.to_string_lossy()),
        None => format!("{stem}-shadow"),
    };
    store.with_file_name(name)
}

impl Backend for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const FOR_UPDATE: &'static str = "";
    // BEGIN IMMEDIATE already serialises every writer
    const LOCK_MODELS: &'static str = "SELECT 1";
    const ONE_STATEMENT: usize = 64;
    const NOTIFY_MODELS: Option<&'static str> = None;

    fn body_entity(position: usize) -> String {
        format!("json_extract(body, '$.entities[{position}]')")
    }

    fn contains(column: &str, parameter: usize) -> String {
        format!("instr({column}, ${parameter}) > 0")
    }

    const SEARCH_NOTES: &'static str = "SELECT a.subject, a.at, a.note AS text FROM search_notes \
        JOIN audit_log a ON a.id = search_notes.rowid WHERE search_notes MATCH $1 AND a.action = 'review' \
        ORDER BY search_notes.rank, a.id DESC LIMIT $2";

    const SEARCH_NARRATIVES: &'static str = "SELECT n.transaction_id AS subject, n.created_at AS at, n.assessment AS text \
        FROM search_narratives JOIN case_narratives n ON n.id = search_narratives.rowid \
        WHERE search_narratives MATCH $1 ORDER BY search_narratives.rank, n.id DESC LIMIT $2";

    /// Each word quoted (FTS5's own syntax — `AND`, `NEAR`, `*`, column
    /// filters — is never the user's), all of them required.
    fn words(query: &str) -> String {
        query
            .split_whitespace()
            .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A write transaction that takes SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred one that reads first and then writes fails with
    /// SQLITE_BUSY, without waiting, when another writer got there in between.
    async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Inserts the new rows of a batch with multi-row statements of up to 64
    /// rows: few statements per batch (each is a round trip to sqlx's SQLite
    /// thread), and at most 64 SQL texts, each prepared once and cached.
    async fn insert_new(conn: &mut sqlx::SqliteConnection, batch: &[NewDecision]) -> Result<HashSet<String>> {
        let mut inserted = HashSet::with_capacity(batch.len());
        let mut rest = batch;
        while !rest.is_empty() {
            let n = rest.len().min(Self::ONE_STATEMENT);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut query = QueryBuilder::<Sqlite>::new(INSERT_COLUMNS);
            query.push_values(chunk, |mut row, d| {
                row.push_bind(d.transaction_id.as_str())
                    .push_bind(d.fingerprint.as_str())
                    .push_bind(d.event_time.as_millis())
                    .push_bind(d.received_at.as_millis())
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

    /// No notification channel: the watchers poll the registry.
    async fn model_changes(_pool: &SqlitePool) -> Result<Option<ModelChanges>> {
        Ok(None)
    }

    /// The embedded store compares a case with the newest flagged decisions exactly.
    async fn nearest_flagged(
        _store: &SqlStore<Sqlite>,
        _at: Timestamp,
        _reasons: &str,
        _limit: u32,
        _exact_up_to: u32,
    ) -> Result<Option<Vec<StoredDecision>>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_file_sits_beside_the_store() {
        let named = |store: &str| shadow_file(Path::new(store)).to_string_lossy().into_owned();
        assert_eq!(
            named("fraudlens-data/fraudlens.db"),
            "fraudlens-data/fraudlens-shadow.db"
        );
        assert_eq!(named("/var/lib/x.y.sqlite"), "/var/lib/x.y-shadow.sqlite");
        assert_eq!(named("store"), "store-shadow");
        assert_eq!(named("./a/b"), "./a/b-shadow");
        assert_eq!(named(":memory:"), ":memory:");
    }
}
