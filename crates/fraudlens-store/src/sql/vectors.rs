//! The similar-case index on PostgreSQL with pgvector: each flagged
//! decision's reasons as a sparse vector, in an HNSW index (cosine), so that
//! a case is compared with the past cases flagged for the most similar
//! reasons among all of them, not only the newest few thousand.
//!
//! - **The vector**: a decision's per-feature contributions, each feature at
//!   the dimension its name hashes to (the low 20 bits of the first 32 of its
//!   MD5: about a million dimensions; two of a model's 40 features share one
//!   in about one model in 1,300, and then count as one feature). One
//!   PL/pgSQL function computes it, on write and for a query alike, so both
//!   sides always hash the same way.
//! - **Kept by the database**: triggers on `transactions` write a flagged
//!   decision's vector in the transaction that stores it (a `COPY` fires
//!   them too), whichever process or path wrote the row, and again only when
//!   its reasons or time change (not on a review). Reasons that are not JSON
//!   leave the decision without a vector and a warning in the server's log;
//!   at most the 1,000 largest contributions are kept (HNSW's limit); the
//!   trigger runs with its owner's rights and its own `search_path`, so a
//!   writer of another role or path is not refused.
//! - **Derived data**: the table, its functions and triggers are not a
//!   migration. A long-running process (`serve`, `detect`:
//!   [`StoreOptions::maintain_similar_index`]) that opens the store and finds
//!   pgvector 0.8 or later creates the extension if it may, then in the
//!   background creates the objects (creating the triggers takes the
//!   table's lock: writes pause while it waits, at most 5 s a try), fills them from the flagged decisions stored before (by one
//!   process: an advisory lock) and builds the index without blocking
//!   writers (`CONCURRENTLY`), retrying with backoff. Until the index is
//!   valid, [`Store::nearest_flagged`] answers `None` and cases use the exact
//!   search. A restore leaves them out of the copy; the restored store's
//!   first long-running process makes them again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use sqlx::{Connection, Postgres};

use super::SqlStore;
use super::decisions::DECISION_COLUMNS;
use crate::*;

/// Whether a store keeps the similar-case vector index (`store.similar_index`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarIndex {
    /// On PostgreSQL when the server has the `vector` extension (creating it
    /// in the database when the user may); else the exact search. The default.
    #[default]
    Auto,
    /// Required: opening a PostgreSQL store fails when the server has no
    /// pgvector 0.8 or later, or (in `serve`, `detect`) the extension cannot
    /// be created. What fails later, in the background (making the objects,
    /// building the index), is logged and retried, and the exact search
    /// answers meanwhile.
    Pgvector,
    /// Never made nor used: cases use the exact search. (An index made
    /// before is still kept by its trigger: fraudlens.example.toml says how to drop it.)
    Off,
}

/// Key of the advisory lock held while one process fills and builds the index.
const BUILD_LOCK: i64 = 0x6672_6175_645f_7663; // "fraud_vc"
/// Key of the advisory lock held while one process creates the objects.
const CREATE_LOCK: i64 = 0x6672_6175_645f_6f62; // "fraud_ob"
/// How soon a process that could not make or build the index tries again
/// (doubling up to [`RETRY_MAX`]).
const RETRY: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);
/// The oldest pgvector with what the index needs (`sparsevec` and HNSW's iterative scan).
const MIN_VERSION: (u32, u32) = (0, 8);
/// Flagged decisions read per backfill statement.
const BACKFILL_BATCH: i64 = 50_000;

/// The vector of a decision's reasons (`[{"feature", "contribution"}, …]`);
/// NULL when none is a non-zero number. Contributions are summed per
/// dimension and clamped to the range of a 4-byte float (sparsevec's); the
/// 1,000 largest are kept (the most an HNSW index takes).
/// PL/pgSQL, not SQL: called once per row by the trigger, a SQL function's
/// query would be planned again on every call (measured: 180 µs a row, not 50).
const REASON_VECTOR: &str = r#"
CREATE OR REPLACE FUNCTION fraudlens_reason_vector(reasons TEXT) RETURNS sparsevec
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN (
    SELECT ('{' || string_agg(dim || ':' || greatest(least(total, 1e30), -1e30), ',' ORDER BY dim) || '}/1048576')::sparsevec
    FROM (SELECT (('x' || substr(md5(r ->> 'feature'), 1, 8))::bit(32)::int & 1048575) + 1 AS dim,
                 sum((r ->> 'contribution')::float8) AS total
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(reasons::jsonb) = 'array' THEN reasons::jsonb ELSE '[]'::jsonb END) AS r
          WHERE jsonb_typeof(r -> 'contribution') = 'number' AND r ->> 'feature' IS NOT NULL
          GROUP BY 1
          HAVING abs(sum((r ->> 'contribution')::float8)) >= 1e-30
          ORDER BY abs(sum((r ->> 'contribution')::float8)) DESC, 1
          LIMIT 1000) AS d);
END $$"#;

/// The same, NULL (and a warning in the server's log) for text that is not JSON.
const REASON_VECTOR_OR_NULL: &str = r#"
CREATE OR REPLACE FUNCTION fraudlens_reason_vector_or_null(seq BIGINT, reasons TEXT) RETURNS sparsevec
LANGUAGE plpgsql AS $$
BEGIN
  RETURN fraudlens_reason_vector(reasons);
EXCEPTION WHEN others THEN
  RAISE WARNING 'fraudlens: decision % has no similar-case vector: %', seq, SQLERRM;
  RETURN NULL;
END $$"#;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS case_vectors (\
    seq BIGINT PRIMARY KEY REFERENCES transactions (seq) ON DELETE CASCADE, \
    event_time BIGINT NOT NULL, \
    embedding sparsevec(1048576) NOT NULL)";

/// The trigger's function; `{path}` is replaced by the schemas of the table
/// and of the extension. It runs as its owner (who made the table), so any
/// role that may write `transactions` may fire it.
const TRIGGER_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION fraudlens_index_case() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = {path} AS $$
DECLARE v sparsevec;
BEGIN
  -- a table dropped by hand (the triggers left) must not refuse writes
  IF to_regclass('case_vectors') IS NULL THEN
    RETURN NULL;
  END IF;
  v := fraudlens_reason_vector_or_null(NEW.seq, NEW.reasons);
  IF v IS NULL THEN
    DELETE FROM case_vectors WHERE seq = NEW.seq;
  ELSE
    INSERT INTO case_vectors (seq, event_time, embedding) VALUES (NEW.seq, NEW.event_time, v)
      ON CONFLICT (seq) DO UPDATE SET event_time = EXCLUDED.event_time, embedding = EXCLUDED.embedding;
  END IF;
  RETURN NULL;
END $$"#;

/// A flagged decision stored.
const INSERT_TRIGGER: &str = "CREATE TRIGGER fraudlens_case_vectors \
    AFTER INSERT ON transactions \
    FOR EACH ROW WHEN (NEW.review_status IS NOT NULL) EXECUTE FUNCTION fraudlens_index_case()";

/// A decision that becomes flagged, or whose reasons or time change (a
/// review alone changes nothing of its vector).
const UPDATE_TRIGGER: &str = "CREATE TRIGGER fraudlens_case_vectors_update \
    AFTER UPDATE OF reasons, review_status, event_time ON transactions \
    FOR EACH ROW WHEN (NEW.review_status IS NOT NULL AND (OLD.review_status IS NULL \
    OR OLD.reasons IS DISTINCT FROM NEW.reasons OR OLD.event_time IS DISTINCT FROM NEW.event_time)) \
    EXECUTE FUNCTION fraudlens_index_case()";

const INDEX: &str = "CREATE INDEX CONCURRENTLY IF NOT EXISTS case_vectors_embedding \
    ON case_vectors USING hnsw (embedding sparsevec_cosine_ops) WITH (m = 8, ef_construction = 32)";

/// Marks the objects as made, all of them (one transaction makes them).
const MARK: &str = "COMMENT ON TABLE case_vectors IS 'fraudlens similar-case vectors 1'";

/// Whether the objects are there, marked, with both triggers.
const MADE: &str = "SELECT COALESCE(obj_description(to_regclass('case_vectors'), 'pg_class') = \
    'fraudlens similar-case vectors 1', false) AND (SELECT count(*) = 2 FROM pg_trigger \
    WHERE tgrelid = 'transactions'::regclass \
    AND tgname IN ('fraudlens_case_vectors', 'fraudlens_case_vectors_update'))";

/// Whether the index is there and valid (a `CONCURRENTLY` build that failed leaves an invalid one).
const INDEX_VALID: &str = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('case_vectors_embedding')";

/// The vector index of a store, as its process sees it.
#[derive(Debug, Default)]
pub(crate) struct VectorIndex {
    /// The store keeps one (PostgreSQL with the extension, not turned off).
    enabled: bool,
    /// Its HNSW index was seen valid.
    ready: AtomicBool,
}

impl VectorIndex {
    /// No index (SQLite, or PostgreSQL without it).
    pub(crate) fn none() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// Prepares the index of a PostgreSQL store as `mode` says. With
/// `maintain` (a long-running process), creates the extension now if the
/// database lacks it and the user may, and the objects, their backfill and
/// the HNSW index in the background; without, only uses an index that
/// another process made.
pub(crate) async fn prepare(pool: &PgPool, url: &str, mode: SimilarIndex, maintain: bool) -> Result<Arc<VectorIndex>> {
    if mode == SimilarIndex::Off {
        return Ok(VectorIndex::none());
    }
    let refuse = |why: String| {
        if mode == SimilarIndex::Pgvector {
            return Err(StoreError::Invalid(format!(
                "store.similar_index = \"pgvector\" but {why}"
            )));
        }
        tracing::info!("similar cases: the exact search ({why})");
        Ok(VectorIndex::none())
    };
    // the version in the database, else the one the server would install
    let version: Option<String> = sqlx::query_scalar(
        "SELECT COALESCE((SELECT extversion FROM pg_extension WHERE extname = 'vector'), \
         (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'))",
    )
    .fetch_one(pool)
    .await?;
    let Some(version) = version else {
        return refuse("the PostgreSQL server has no vector extension (pgvector)".to_owned());
    };
    if !recent_enough(&version) {
        return refuse(format!(
            "pgvector {version} is too old: the index needs {}.{} or later \
             (install it, then ALTER EXTENSION vector UPDATE)",
            MIN_VERSION.0, MIN_VERSION.1
        ));
    }
    if maintain {
        let created = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CREATE_LOCK)
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS vector")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        };
        if let Err(error) = created.await {
            return refuse(format!("creating the vector extension failed ({error})"));
        }
    }
    let index = Arc::new(VectorIndex {
        enabled: true,
        ready: AtomicBool::new(false),
    });
    if is_valid(pool).await? {
        index.ready.store(true, Ordering::Relaxed);
    }
    // a maintaining process makes what is missing (a trigger dropped by
    // hand, say), even when the index is valid
    if maintain {
        let (pool, url) = (pool.clone(), url.to_owned());
        let building = Arc::clone(&index);
        tokio::spawn(async move {
            // until built, here or by another process (which may stop before it is done)
            let mut wait = RETRY;
            loop {
                match make(&pool, &url).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) if permanent(&error) => {
                        tracing::warn!(%error, "similar cases: the vector index cannot be made; the exact search answers");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_seconds = wait.as_secs(), "similar cases: making the vector index failed; the exact search answers meanwhile");
                    }
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
            building.ready.store(true, Ordering::Relaxed);
        });
    }
    Ok(index)
}

/// `0.8.0` and later (a version this build cannot read is taken as recent).
fn recent_enough(version: &str) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= MIN_VERSION,
        _ => true,
    }
}

/// An error that trying again will not mend: no right to create, a limit of
/// the server's.
fn permanent(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(error)) = error else {
        return false;
    };
    matches!(error.code().as_deref(), Some("42501" | "54000" | "0A000"))
}

/// The objects, then the backfill and the index; `false` when another
/// process is building it.
async fn make(pool: &PgPool, url: &str) -> Result<bool> {
    create_objects(pool).await?;
    build(url).await
}

/// The table, its functions and triggers, by one process at a time (an
/// advisory lock), waiting at most seconds for the lock on `transactions`
/// (creating a trigger waits for its writers, and they for it).
async fn create_objects(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_LOCK)
        .execute(&mut *tx)
        .await?;
    if sqlx::query_scalar::<_, bool>(MADE).fetch_one(&mut *tx).await? {
        return Ok(());
    }
    sqlx::raw_sql("SET LOCAL lock_timeout = '5s'").execute(&mut *tx).await?;
    // the trigger's own search path: the table's schema, the extension's
    let path: String = sqlx::query_scalar(
        "SELECT concat_ws(', ', quote_ident(current_schema()), \
         (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'), 'pg_temp')",
    )
    .fetch_one(&mut *tx)
    .await?;
    let trigger_function = TRIGGER_FUNCTION.replace("{path}", &path);
    for statement in [REASON_VECTOR, REASON_VECTOR_OR_NULL, TABLE, &trigger_function] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await?;
    }
    for (name, statement) in [
        ("fraudlens_case_vectors", INSERT_TRIGGER),
        ("fraudlens_case_vectors_update", UPDATE_TRIGGER),
    ] {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = 'transactions'::regclass)",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            sqlx::raw_sql(statement).execute(&mut *tx).await?;
        }
    }
    sqlx::raw_sql(MARK).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The HNSW index: `None` when there is none, else whether it is valid.
async fn index_state<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar::<_, bool>(INDEX_VALID)
        .fetch_optional(executor)
        .await?)
}

async fn is_valid(pool: &PgPool) -> Result<bool> {
    Ok(index_state(pool).await? == Some(true))
}

/// Fills the table with the flagged decisions stored before the triggers
/// and builds the HNSW index, holding the build lock on a connection of its
/// own; `false` when another process holds it (and has not finished).
async fn build(url: &str) -> Result<bool> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(BUILD_LOCK)
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        let built = index_state(&mut conn).await? == Some(true);
        if !built {
            tracing::info!("similar cases: another process builds the vector index");
        }
        conn.close().await?;
        return Ok(built);
    }
    let built = fill_and_index(&mut conn).await;
    // explicitly: behind a pooler the session may outlive this connection
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(BUILD_LOCK)
        .execute(&mut conn)
        .await;
    let closed = conn.close().await;
    let built = built?;
    unlocked?;
    closed?;
    Ok(built)
}

async fn fill_and_index(conn: &mut sqlx::PgConnection) -> Result<bool> {
    let started = Instant::now();
    match index_state(&mut *conn).await? {
        // built by another process meanwhile
        Some(true) => return Ok(true),
        // a build that stopped half-way leaves an invalid index: made again
        Some(false) => {
            sqlx::raw_sql("DROP INDEX CONCURRENTLY IF EXISTS case_vectors_embedding")
                .execute(&mut *conn)
                .await?;
        }
        None => {}
    }
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM transactions")
        .fetch_one(&mut *conn)
        .await?;
    let mut filled = 0u64;
    let mut from = 0i64;
    while from < last {
        let to = from.saturating_add(BACKFILL_BATCH);
        // rows a stopped build filled already are not computed again
        filled += sqlx::query(
            "INSERT INTO case_vectors (seq, event_time, embedding) \
             SELECT seq, event_time, v FROM (SELECT t.seq, t.event_time, fraudlens_reason_vector_or_null(t.seq, t.reasons) AS v \
             FROM transactions AS t WHERE t.review_status IS NOT NULL AND t.seq > $1 AND t.seq <= $2 \
             AND NOT EXISTS (SELECT 1 FROM case_vectors AS c WHERE c.seq = t.seq)) AS s \
             WHERE v IS NOT NULL ON CONFLICT (seq) DO NOTHING",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        from = to;
    }
    sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(INDEX).execute(&mut *conn).await?;
    let vectors: i64 = sqlx::query_scalar("SELECT count(*) FROM case_vectors")
        .fetch_one(&mut *conn)
        .await?;
    tracing::info!(
        vectors,
        filled,
        seconds = started.elapsed().as_secs_f64(),
        "similar cases: the vector index is built"
    );
    Ok(true)
}

/// [`Store::nearest_flagged`] on PostgreSQL.
pub(crate) async fn nearest(
    store: &SqlStore<Postgres>,
    at: Timestamp,
    reasons: &str,
    limit: u32,
    exact_up_to: u32,
) -> Result<Option<Vec<StoredDecision>>> {
    let index = &store.vectors;
    if !index.enabled {
        return Ok(None);
    }
    if !index.ready.load(Ordering::Relaxed) {
        if !is_valid(&store.pool).await? {
            return Ok(None);
        }
        index.ready.store(true, Ordering::Relaxed);
    }
    let columns = DECISION_COLUMNS.replacen("currency, body,", "currency, '' AS body,", 1);
    let mut tx = store.pool.begin().await?;
    // few enough for the exact search to see them all: it answers (counted
    // on the flagged decisions' partial time index, up to one past)
    let preceding: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM transactions WHERE review_status IS NOT NULL \
         AND event_time <= $1 LIMIT $2) AS f",
    )
    .bind(at.as_millis())
    .bind(i64::from(exact_up_to) + 1)
    .fetch_one(&mut *tx)
    .await?;
    if preceding <= i64::from(exact_up_to) {
        return Ok(None);
    }
    let Some(query) = sqlx::query_scalar::<_, Option<String>>("SELECT fraudlens_reason_vector($1)::text")
        .bind(reasons)
        .fetch_one(&mut *tx)
        .await?
    else {
        // no reason to compare by
        return Ok(None);
    };
    // the graph search keeps this many candidates (pgvector's cap is 1,000);
    // past the filter on time it goes on until `limit` rows pass (0.8's
    // iterative scan; in no exact order, which the caller ranks anyway)
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
    )
    .bind(limit.clamp(40, 1000).to_string())
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM transactions WHERE seq IN (SELECT seq FROM case_vectors WHERE event_time <= $1 \
         ORDER BY embedding <=> $2::sparsevec LIMIT $3)"
    )))
    .bind(at.as_millis())
    .bind(query)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(SqlStore::<Postgres>::decision_from_row)
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
