//! Labels: recorded from chargebacks, uploads and reviews, each also set on
//! its transaction when that is stored.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Row, Type};

use super::{Backend, SqlStore};
use crate::vocabulary::parse_label;
use crate::*;

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
    /// [`Store::put_labels`].
    pub(super) async fn insert_labels(&self, labels: &[NewLabel]) -> Result<Vec<Option<StoredDecision>>> {
        let mut tx = DB::begin_write(&self.pool).await?;
        for label in labels {
            sqlx::query("INSERT INTO labels (transaction_id, label, source, actor, at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&label.transaction_id)
                .bind(label.label.as_str())
                .bind(&label.source)
                .bind(&label.actor)
                .bind(label.at.as_millis())
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE transactions SET label = $1 WHERE transaction_id = $2")
                .bind(label.label.as_str())
                .bind(&label.transaction_id)
                .execute(&mut *tx)
                .await?;
        }
        let ids: Vec<&str> = labels.iter().map(|l| l.transaction_id.as_str()).collect();
        let stored = Self::fetch_decisions(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(labels
            .iter()
            .map(|l| {
                stored
                    .iter()
                    .find(|s| s.decision.transaction_id == l.transaction_id)
                    .cloned()
            })
            .collect())
    }

    /// [`Store::labels`].
    pub(super) async fn labels_of(&self, transaction_id: &str) -> Result<Vec<LabelEntry>> {
        let rows = sqlx::query("SELECT label, source, actor, at FROM labels WHERE transaction_id = $1 ORDER BY id")
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
                    at: Timestamp::from_millis(row.try_get("at")?),
                })
            })
            .collect()
    }
}
