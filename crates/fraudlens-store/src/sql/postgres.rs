//! PostgreSQL: connecting, its migrations (`migrations/postgres`), row locks
//! for read-then-write transactions, and the bulk insert of decisions: a
//! binary `COPY` for large batches, else (or when some ids are stored
//! already) column arrays.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row};

use super::decisions::INSERT_CHUNK;
use super::feature_codec::encode_features;
use super::{Backend, SqlStore};
use crate::*;

impl SqlStore<Postgres> {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let vectors =
            super::vectors::prepare(&pool, url, options.similar_index, options.maintain_similar_index).await?;
        Ok(Self {
            shadow: pool.clone(),
            pool,
            vectors,
        })
    }
}

impl Backend for Postgres {
    const BACKEND: &'static str = "postgres";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const LOCK_MODELS: &'static str = "LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE";
    /// A batch of any size is one `COPY` (the fallback takes its own transaction).
    const ONE_STATEMENT: usize = usize::MAX;
    const NOTIFY_MODELS: Option<&'static str> = Some("SELECT pg_notify('fraudlens_models', $1)");

    fn body_entity(position: usize) -> String {
        format!("(body::jsonb -> 'entities' ->> {position})")
    }

    fn contains(column: &str, parameter: usize) -> String {
        format!("strpos({column}, ${parameter}) > 0")
    }

    const SEARCH_NOTES: &'static str = "SELECT subject, at, note AS text FROM audit_log \
        WHERE note IS NOT NULL AND action = 'review' AND to_tsvector('simple', note) @@ plainto_tsquery('simple', $1) \
        ORDER BY ts_rank(to_tsvector('simple', note), plainto_tsquery('simple', $1)) DESC, id DESC LIMIT $2";

    const SEARCH_NARRATIVES: &'static str = "SELECT transaction_id AS subject, created_at AS at, assessment AS text FROM case_narratives \
        WHERE to_tsvector('simple', assessment) @@ plainto_tsquery('simple', $1) \
        ORDER BY ts_rank(to_tsvector('simple', assessment), plainto_tsquery('simple', $1)) DESC, id DESC LIMIT $2";

    /// The words as typed: `plainto_tsquery` reads them as text, every word required.
    fn words(query: &str) -> String {
        query.to_owned()
    }

    /// A transaction (row locks and MVCC make an ordinary one enough).
    async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
        Ok(pool.begin().await?)
    }

    /// Inserts the new rows of a batch. A large batch (a backlog's) usually
    /// holds only new ids: one binary `COPY` stores it (a quarter less of the
    /// server's CPU per row than an `INSERT`, measured in bench/README.md);
    /// smaller ones take the `INSERT` ([`COPY_MIN_ROWS`]). `COPY` has no `ON CONFLICT`, so
    /// a batch with an id stored already (a redelivery, a retry, a race with
    /// another process) fails as a whole with a unique violation, and is then
    /// written again by the conflict-tolerant insert. Called on a pooled
    /// connection, never inside a transaction (a failed `COPY` would abort it).
    async fn insert_new(conn: &mut sqlx::PgConnection, batch: &[NewDecision]) -> Result<HashSet<String>> {
        if batch.len() < COPY_MIN_ROWS {
            return insert_unnest_whole(conn, batch).await;
        }
        match copy_in(conn, batch).await {
            Ok(()) => return Ok(batch.iter().map(|d| d.transaction_id.clone()).collect()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                tracing::debug!(
                    rows = batch.len(),
                    "a batch holds ids stored already: inserted without them"
                );
            }
            Err(error) => return Err(error.into()),
        }
        insert_unnest_whole(conn, batch).await
    }

    /// From the pgvector index, when the store has one (`vectors.rs`).
    async fn nearest_flagged(
        store: &SqlStore<Postgres>,
        at: Timestamp,
        reasons: &str,
        limit: u32,
        exact_up_to: u32,
    ) -> Result<Option<Vec<StoredDecision>>> {
        super::vectors::nearest(store, at, reasons, limit, exact_up_to).await
    }

    /// `LISTEN fraudlens_models` on a connection of the pool, forwarded by a
    /// task until the receiver is dropped, the pool closes or the connection
    /// cannot be re-established. A lost connection is reconnected by the
    /// listener and reported as [`ModelChange::Reconnected`] (notifications
    /// sent meanwhile are lost: the subscriber re-reads the registry).
    async fn model_changes(pool: &PgPool) -> Result<Option<ModelChanges>> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(MODELS_CHANNEL).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    () = sender.closed() => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => ModelChange::Promoted(notification.payload().to_owned()),
                        Ok(None) => ModelChange::Reconnected,
                        Err(error) => {
                            tracing::warn!(%error, "model notifications: listening stopped");
                            return;
                        }
                    },
                };
                if sender.send(change).await.is_err() {
                    return;
                }
            }
        });
        Ok(Some(ModelChanges::new(receiver)))
    }
}

/// The decisions insert of [`Backend::insert_new`]: one array parameter per column.
const INSERT_UNNEST: &str = concat!(
    insert_columns!(),
    "SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::int8[], \
     $7::text[], $8::text[], $9::float8[], $10::float8[], $11::float8[], $12::float8[], $13::text[], \
     $14::text[], $15::bytea[], $16::text[], $17::int8[], $18::text[], $19::text[]) \
     ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id"
);

/// The smallest batch written by `COPY`. sqlx sends a `COPY`'s data and its
/// end in two writes on a socket without `TCP_NODELAY`: Nagle's algorithm
/// holds the end until the server acknowledges the data, which it delays
/// (~40 ms on Linux). A commit of a few hundred rows would wait that long —
/// `serve` on PostgreSQL fell from ~27,000 to 730 requests/s — while a
/// backlog's batches of thousands of rows gain more CPU than the wait costs.
const COPY_MIN_ROWS: usize = 2_000;

/// The columns of [`copy_in`], in the order each row sends them.
const COPY_IN: &str = "COPY transactions (transaction_id, fingerprint, event_time, received_at, entity, \
     amount_minor, currency, body, score, probability, raw_score, anomaly_score, decision, reasons, features, \
     model_version, latency_us, review_status, shard) FROM STDIN (FORMAT binary)";

/// Stores `batch` with one binary `COPY` (one statement: all rows or none).
async fn copy_in(conn: &mut sqlx::PgConnection, batch: &[NewDecision]) -> std::result::Result<(), sqlx::Error> {
    let data = copy_data(batch);
    let mut copy = conn.copy_in_raw(COPY_IN).await?;
    copy.send(data).await?;
    copy.finish().await.map(|_| ())
}

/// The rows of `batch` in `COPY`'s binary format: a header, then per row the
/// field count and each field as a big-endian length (-1 for NULL) and its
/// bytes (text as UTF-8, int8 and float8 big-endian), then a trailer.
fn copy_data(batch: &[NewDecision]) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, value: &str) {
        bytes(out, value.as_bytes());
    }
    fn bytes(out: &mut Vec<u8>, value: &[u8]) {
        // a field's length is an i32: a value of 2 GiB cannot reach here (request
        // limits); were one to, PostgreSQL refuses the malformed stream
        out.extend_from_slice(&i32::try_from(value.len()).unwrap_or(i32::MAX).to_be_bytes());
        out.extend_from_slice(value);
    }
    fn int8(out: &mut Vec<u8>, value: i64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    fn float8(out: &mut Vec<u8>, value: f64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&value.to_bits().to_be_bytes());
    }
    fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }
    let mut out = Vec::with_capacity(19 + batch.len() * 900);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension
    for d in batch {
        out.extend_from_slice(&19i16.to_be_bytes());
        text(&mut out, &d.transaction_id);
        text(&mut out, &d.fingerprint);
        int8(&mut out, d.event_time.as_millis());
        int8(&mut out, d.received_at.as_millis());
        match &d.entity {
            Some(entity) => text(&mut out, entity),
            None => null(&mut out),
        }
        int8(&mut out, d.amount_minor);
        text(&mut out, &d.currency);
        text(&mut out, &d.body);
        float8(&mut out, d.score);
        for value in [d.probability, d.raw_score, d.anomaly_score] {
            match value {
                Some(value) => float8(&mut out, value),
                None => null(&mut out),
            }
        }
        text(&mut out, d.decision.as_str());
        text(&mut out, &d.reasons);
        bytes(&mut out, &encode_features(&d.features));
        text(&mut out, &d.model_version);
        int8(&mut out, d.latency_us);
        match d.review_status {
            Some(status) => text(&mut out, status.as_str()),
            None => null(&mut out),
        }
        match &d.shard {
            Some(shard) => text(&mut out, shard),
            None => null(&mut out),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// [`insert_unnest`] as one unit: one statement is atomic by itself (no
/// `BEGIN`/`COMMIT` round trips); more take a transaction.
async fn insert_unnest_whole(conn: &mut sqlx::PgConnection, batch: &[NewDecision]) -> Result<HashSet<String>> {
    if batch.len() <= INSERT_CHUNK {
        return insert_unnest(conn, batch).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let inserted = insert_unnest(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Inserts the new rows of a batch with one statement per 500 rows: every
/// column as an array, `UNNEST`ed (a constant SQL text, so it is prepared
/// once, and one round trip per chunk); ids stored already are skipped.
async fn insert_unnest(conn: &mut sqlx::PgConnection, batch: &[NewDecision]) -> Result<HashSet<String>> {
    let mut inserted = HashSet::with_capacity(batch.len());
    for chunk in batch.chunks(INSERT_CHUNK) {
        let column = |f: &dyn Fn(&NewDecision) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
        let rows = sqlx::query(INSERT_UNNEST)
            .bind(column(&|d| &d.transaction_id))
            .bind(column(&|d| &d.fingerprint))
            .bind(chunk.iter().map(|d| d.event_time.as_millis()).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|d| d.received_at.as_millis()).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|d| d.entity.as_deref()).collect::<Vec<Option<&str>>>())
            .bind(chunk.iter().map(|d| d.amount_minor).collect::<Vec<i64>>())
            .bind(column(&|d| &d.currency))
            .bind(column(&|d| &d.body))
            .bind(chunk.iter().map(|d| d.score).collect::<Vec<f64>>())
            .bind(chunk.iter().map(|d| d.probability).collect::<Vec<Option<f64>>>())
            .bind(chunk.iter().map(|d| d.raw_score).collect::<Vec<Option<f64>>>())
            .bind(chunk.iter().map(|d| d.anomaly_score).collect::<Vec<Option<f64>>>())
            .bind(column(&|d| d.decision.as_str()))
            .bind(column(&|d| &d.reasons))
            .bind(
                chunk
                    .iter()
                    .map(|d| encode_features(&d.features))
                    .collect::<Vec<Vec<u8>>>(),
            )
            .bind(column(&|d| &d.model_version))
            .bind(chunk.iter().map(|d| d.latency_us).collect::<Vec<i64>>())
            .bind(
                chunk
                    .iter()
                    .map(|d| d.review_status.map(|s| s.as_str()))
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(chunk.iter().map(|d| d.shard.as_deref()).collect::<Vec<Option<&str>>>())
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}
