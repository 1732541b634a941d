//! What the console reads and writes beyond the API's queries: sessions
//! (signed-in browsers), the review queue's counts per status, and an
//! entity's recent transactions.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Row, Type};

use super::decisions::DECISION_COLUMNS;
use super::{Backend, SqlStore};
use crate::vocabulary::parse;
use crate::*;
use fraudlens_core::ReviewStatus;

/// Sessions ended or expired longer ago than this are deleted when a new one starts.
const KEEP_ENDED_MILLIS: i64 = 7 * 24 * 3_600_000;

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
    /// [`Store::create_session`].
    pub(super) async fn insert_session(&self, session: &SessionEntry) -> Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1 OR ended_at < $1")
            .bind(session.created_at.as_millis() - KEEP_ENDED_MILLIS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (token_sha256, key_id, created_at, expires_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.token_sha256)
        .bind(&session.key_id)
        .bind(session.created_at.as_millis())
        .bind(session.expires_at.as_millis())
        .bind(session.ended_at.map(Timestamp::as_millis))
        .execute(&mut *tx)
        .await?;
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at: session.created_at,
                actor: format!("key:{}", session.key_id),
                action: "console_sign_in".to_owned(),
                subject: format!("key:{}", session.key_id),
                before: None,
                after: None,
                note: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::session`].
    pub(super) async fn session_by_token(&self, token_sha256: &str) -> Result<Option<SessionEntry>> {
        let row = sqlx::query(
            "SELECT token_sha256, key_id, created_at, expires_at, ended_at FROM console_sessions \
             WHERE token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionEntry {
                token_sha256: row.try_get("token_sha256")?,
                key_id: row.try_get("key_id")?,
                created_at: Timestamp::from_millis(row.try_get("created_at")?),
                expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
                ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Timestamp::from_millis),
            })
        })
        .transpose()
    }

    /// [`Store::end_session`].
    pub(super) async fn finish_session(&self, token_sha256: &str, at: Timestamp) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let key_id: Option<String> = sqlx::query_scalar(
            "UPDATE console_sessions SET ended_at = $1 WHERE token_sha256 = $2 AND ended_at IS NULL \
             RETURNING key_id",
        )
        .bind(at.as_millis())
        .bind(token_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key_id) = key_id else {
            return Ok(false);
        };
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at,
                actor: format!("key:{key_id}"),
                action: "console_sign_out".to_owned(),
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

    /// [`Store::queue_counts`].
    pub(super) async fn count_queue(&self, after_seq: i64) -> Result<QueueCounts> {
        let rows = sqlx::query(
            "SELECT review_status, COUNT(*) AS n, MAX(seq) AS last FROM transactions \
             WHERE review_status IS NOT NULL AND seq > $1 GROUP BY review_status",
        )
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = QueueCounts {
            last_seq: after_seq,
            ..QueueCounts::default()
        };
        for row in rows {
            let status: String = row.try_get("review_status")?;
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            let last: i64 = row.try_get("last")?;
            counts.last_seq = counts.last_seq.max(last);
            match parse::<ReviewStatus>(&status)? {
                ReviewStatus::PendingReview => counts.pending_review = n,
                ReviewStatus::ConfirmedFraud => counts.confirmed_fraud = n,
                ReviewStatus::FalsePositive => counts.false_positive = n,
                ReviewStatus::Escalated => counts.escalated = n,
            }
        }
        Ok(counts)
    }

    /// [`Store::entity_history`].
    pub(super) async fn history_of(
        &self,
        entity: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<StoredDecision>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM transactions WHERE entity = $1 AND event_time >= $2 \
             AND event_time < $3 ORDER BY event_time DESC, seq DESC LIMIT $4"
        )))
        .bind(entity)
        .bind(from.as_millis())
        .bind(to.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::decision_from_row).collect()
    }
}
