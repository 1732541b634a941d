//! Scored transactions with their decisions: the idempotent batch write
//! (group commit), reads by id and by sequence (to rebuild entity state), and
//! the stored form of a decision row (columns, feature vectors).

use std::collections::HashMap;

use sqlx::{ColumnIndex, Decode, Encode, Executor, QueryBuilder, Row, Type};

use super::feature_codec::decode_features;
use super::{Backend, SqlStore};
use crate::vocabulary::{parse, parse_label};
use crate::*;

/// The columns of a [`StoredDecision`], in `SELECT` order.
pub(super) const DECISION_COLUMNS: &str = decision_columns!();

/// The head of a multi-row decisions insert.
pub(super) const INSERT_COLUMNS: &str = insert_columns!();

/// Ids per `IN (…)` list and rows per multi-row statement.
pub(super) const INSERT_CHUNK: usize = 500;

impl<DB> SqlStore<DB>
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
    /// [`Store::put_decisions`].
    pub(super) async fn put_decisions_in(&self, batch: &[NewDecision]) -> Result<Vec<PutOutcome>> {
        // a batch that fits one statement is atomic on its own (no BEGIN/COMMIT
        // round trips); larger ones get a transaction
        let mut inserted = if batch.len() <= DB::ONE_STATEMENT {
            let mut conn = Finishing {
                conn: self.pool.acquire().await?,
                done: false,
            };
            let inserted = DB::insert_new(&mut conn.conn, batch).await?;
            conn.done = true;
            inserted
        } else {
            let mut tx = DB::begin_write(&self.pool).await?;
            let inserted = DB::insert_new(&mut tx, batch).await?;
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
        let by_id: HashMap<&str, &StoredDecision> =
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

    /// [`Store::transaction`].
    pub(super) async fn decision(&self, id: &str) -> Result<Option<StoredDecision>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            decision_columns!(),
            " FROM transactions WHERE transaction_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::decision_from_row).transpose()
    }

    /// [`Store::transactions_after`].
    pub(super) async fn decisions_after(
        &self,
        seq: i64,
        limit: u32,
        shard: Option<&str>,
    ) -> Result<Vec<StoredDecision>> {
        let rows = match shard {
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    decision_columns!(),
                    " FROM transactions WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            Some(shard) => {
                sqlx::query(concat!(
                    "SELECT ",
                    decision_columns!(),
                    " FROM transactions WHERE shard = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ))
                .bind(shard)
                .bind(seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(Self::decision_from_row).collect()
    }

    /// [`Store::last_seq`].
    pub(super) async fn max_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM transactions")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// [`Store::latest_event_time`].
    pub(super) async fn max_event_time(&self) -> Result<Option<Timestamp>> {
        let time: Option<i64> = sqlx::query_scalar("SELECT MAX(event_time) FROM transactions")
            .fetch_one(&self.pool)
            .await?;
        Ok(time.map(Timestamp::from_millis))
    }

    /// [`Store::first_seq_since`].
    pub(super) async fn min_seq_since(&self, event_time: Timestamp, shard: Option<&str>) -> Result<Option<i64>> {
        let seq: Option<i64> = match shard {
            None => {
                sqlx::query_scalar("SELECT MIN(seq) FROM transactions WHERE event_time >= $1")
                    .bind(event_time.as_millis())
                    .fetch_one(&self.pool)
                    .await?
            }
            Some(shard) => {
                sqlx::query_scalar("SELECT MIN(seq) FROM transactions WHERE event_time >= $1 AND shard = $2")
                    .bind(event_time.as_millis())
                    .bind(shard)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(seq)
    }

    /// [`Store::flagged_outcomes`].
    pub(super) async fn count_flagged_outcomes(&self, after_seq: i64) -> Result<FlaggedOutcomes> {
        let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT label, COUNT(*) FROM transactions WHERE seq > $1 AND decision <> 'approve' GROUP BY label",
        )
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        let mut outcomes = FlaggedOutcomes::default();
        for (label, count) in rows {
            let count = u64::try_from(count).unwrap_or(0);
            outcomes.flagged += count;
            match label.as_deref().map(crate::vocabulary::parse_label).transpose()? {
                Some(fraudlens_core::Label::Fraud) => outcomes.fraud += count,
                Some(fraudlens_core::Label::Legit) => outcomes.legit += count,
                None => {}
            }
        }
        Ok(outcomes)
    }

    /// [`Store::count_transactions`].
    pub(super) async fn count_decisions(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transactions")
            .fetch_one(&self.pool)
            .await?;
        Ok(count.try_into().unwrap_or(0))
    }

    /// The stored rows of `ids` (those that exist), in no particular order.
    pub(super) async fn fetch_decisions(conn: &mut DB::Connection, ids: &[&str]) -> Result<Vec<StoredDecision>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut query = QueryBuilder::<DB>::new(format!(
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

    /// A row of [`DECISION_COLUMNS`] read back.
    pub(super) fn decision_from_row(row: &DB::Row) -> Result<StoredDecision> {
        let status: Option<String> = row.try_get("review_status")?;
        let label: Option<String> = row.try_get("label")?;
        let decision: String = row.try_get("decision")?;
        Ok(StoredDecision {
            seq: row.try_get("seq")?,
            decision: NewDecision {
                transaction_id: row.try_get("transaction_id")?,
                fingerprint: row.try_get("fingerprint")?,
                event_time: Timestamp::from_millis(row.try_get("event_time")?),
                received_at: Timestamp::from_millis(row.try_get("received_at")?),
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
            review_updated_at: row
                .try_get::<Option<i64>, _>("review_updated_at")?
                .map(Timestamp::from_millis),
            label: label.as_deref().map(parse_label).transpose()?,
        })
    }
}

/// A pooled connection that goes back to the pool only if the write on it
/// finished; else it is closed. A write cancelled halfway (the writer aborted
/// at shutdown) or failed can leave the connection mid-protocol — a `COPY`
/// whose data was never sent waits for it and ignores the pool's ping — and
/// the next borrower would hang or read another statement's replies.
struct Finishing<DB: sqlx::Database> {
    conn: sqlx::pool::PoolConnection<DB>,
    done: bool,
}

impl<DB: sqlx::Database> Drop for Finishing<DB> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}
