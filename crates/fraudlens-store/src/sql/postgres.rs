//! PostgreSQL: connecting, its migrations (`migrations/postgres`), row locks
//! for read-then-write transactions, and the bulk insert of decisions as
//! column arrays.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row};

use super::decisions::{INSERT_CHUNK, encode_features};
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
        Ok(Self { pool })
    }
}

impl Backend for Postgres {
    const BACKEND: &'static str = "postgres";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const LOCK_MODELS: &'static str = "LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE";
    const ONE_STATEMENT: usize = INSERT_CHUNK;
    const NOTIFY_MODELS: Option<&'static str> = Some("SELECT pg_notify('fraudlens_models', $1)");

    /// A transaction (row locks and MVCC make an ordinary one enough).
    async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
        Ok(pool.begin().await?)
    }

    /// Inserts the new rows of a batch with one statement per 500 rows: every
    /// column as an array, `UNNEST`ed (a constant SQL text, so it is prepared
    /// once, and one round trip per chunk).
    async fn insert_new(conn: &mut sqlx::PgConnection, batch: &[NewDecision]) -> Result<HashSet<String>> {
        let mut inserted = HashSet::with_capacity(batch.len());
        for chunk in batch.chunks(Self::ONE_STATEMENT) {
            let column = |f: &dyn Fn(&NewDecision) -> String| chunk.iter().map(f).collect::<Vec<String>>();
            let rows = sqlx::query(INSERT_UNNEST)
                .bind(column(&|d| d.transaction_id.clone()))
                .bind(column(&|d| d.fingerprint.clone()))
                .bind(chunk.iter().map(|d| d.event_time.as_millis()).collect::<Vec<i64>>())
                .bind(chunk.iter().map(|d| d.received_at.as_millis()).collect::<Vec<i64>>())
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
