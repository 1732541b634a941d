//! Champion/challenger comparisons: each recorded with its report (JSON)
//! and an audit entry in one transaction.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Row, Type};

use super::{Backend, SqlStore};
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
    /// [`Store::put_comparison`].
    pub(super) async fn insert_comparison(&self, comparison: &NewComparison) -> Result<i64> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO model_comparisons (candidate, against, at, actor, report) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&comparison.candidate)
        .bind(&comparison.against)
        .bind(comparison.at.as_millis())
        .bind(&comparison.actor)
        .bind(&comparison.report)
        .fetch_one(&mut *tx)
        .await?;
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at: comparison.at,
                actor: comparison.actor.clone(),
                action: "compare".to_owned(),
                subject: format!("model:{}", comparison.candidate),
                before: Some(comparison.against.clone()),
                after: Some(comparison.candidate.clone()),
                note: Some(format!("comparison {id}")),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// [`Store::comparisons`].
    pub(super) async fn latest_comparisons(&self, candidate: Option<&str>, limit: u32) -> Result<Vec<ComparisonEntry>> {
        let rows = match candidate {
            Some(candidate) => {
                sqlx::query(
                    "SELECT id, candidate, against, at, actor, report FROM model_comparisons \
                     WHERE candidate = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(candidate)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, candidate, against, at, actor, report FROM model_comparisons \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(ComparisonEntry {
                    id: row.try_get("id")?,
                    comparison: NewComparison {
                        candidate: row.try_get("candidate")?,
                        against: row.try_get("against")?,
                        at: Timestamp::from_millis(row.try_get("at")?),
                        actor: row.try_get("actor")?,
                        report: row.try_get("report")?,
                    },
                })
            })
            .collect()
    }
}
