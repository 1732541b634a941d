//! The review queue (transactions with a review status, filtered, sorted and
//! paged by a cursor), review status changes, and the audit log they write.

use sqlx::{ColumnIndex, Decode, Encode, Executor, QueryBuilder, Row, Type};

use super::decisions::DECISION_COLUMNS;
use super::{Backend, SqlStore};
use fraudlens_core::{Label, ReviewStatus};

use crate::vocabulary::parse;
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
    /// [`Store::anomalies`].
    pub(super) async fn queue(&self, q: &AnomalyQuery) -> Result<Page> {
        let limit = q.limit.max(1);
        let mut query = QueryBuilder::<DB>::new(format!(
            "SELECT {DECISION_COLUMNS} FROM transactions WHERE review_status IS NOT NULL"
        ));
        if let Some(status) = q.status {
            query.push(" AND review_status = ").push_bind(status.as_str());
        }
        if let Some(min) = q.min_score {
            query.push(" AND score >= ").push_bind(min);
        }
        if let Some(from) = q.from {
            query.push(" AND event_time >= ").push_bind(from.as_millis());
        }
        if let Some(to) = q.to {
            query.push(" AND event_time < ").push_bind(to.as_millis());
        }
        if let Some(entity) = &q.entity {
            query.push(" AND entity = ").push_bind(entity.clone());
        }
        match q.cursor.as_deref().map(|c| decode_cursor(q.order, c)).transpose()? {
            None => {}
            Some(CursorKey::Score(score, seq)) => {
                query
                    .push(" AND (score < ")
                    .push_bind(score)
                    .push(" OR (score = ")
                    .push_bind(score)
                    .push(" AND seq < ")
                    .push_bind(seq)
                    .push("))");
            }
            Some(CursorKey::Time(time, seq)) => {
                let cmp = if q.order == QueueOrder::TimeAsc { ">" } else { "<" };
                query
                    .push(format!(" AND (event_time {cmp} "))
                    .push_bind(time)
                    .push(" OR (event_time = ")
                    .push_bind(time)
                    .push(format!(" AND seq {cmp} "))
                    .push_bind(seq)
                    .push("))");
            }
        }
        query.push(match q.order {
            QueueOrder::ScoreDesc => " ORDER BY score DESC, seq DESC",
            QueueOrder::TimeDesc => " ORDER BY event_time DESC, seq DESC",
            QueueOrder::TimeAsc => " ORDER BY event_time, seq",
        });
        query.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut items = rows.iter().map(Self::decision_from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| encode_cursor(q.order, last))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// [`Store::review`].
    pub(super) async fn change_review(&self, change: &ReviewRequest) -> Result<ReviewOutcome> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let before: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT review_status FROM transactions WHERE transaction_id = $1{}",
            DB::FOR_UPDATE
        )))
        .bind(&change.transaction_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(before) = before else {
            return Err(StoreError::NotFound(format!("transaction {:?}", change.transaction_id)));
        };
        let before: Option<ReviewStatus> = before.as_deref().map(parse).transpose()?;
        let label = change.status.label();
        sqlx::query(
            "UPDATE transactions SET review_status = $1, review_updated_at = $2, \
             label = COALESCE($3, label) WHERE transaction_id = $4",
        )
        .bind(change.status.as_str())
        .bind(change.at.as_millis())
        .bind(label.map(Label::as_str))
        .bind(&change.transaction_id)
        .execute(&mut *tx)
        .await?;
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at: change.at,
                actor: change.actor.clone(),
                action: "review".to_owned(),
                subject: change.transaction_id.clone(),
                before: before.map(|s| s.as_str().to_owned()),
                after: Some(change.status.as_str().to_owned()),
                note: change.note.clone(),
            },
        )
        .await?;
        if let Some(label) = label {
            sqlx::query(
                "INSERT INTO labels (transaction_id, label, source, actor, at) VALUES ($1, $2, 'review', $3, $4)",
            )
            .bind(&change.transaction_id)
            .bind(label.as_str())
            .bind(&change.actor)
            .bind(change.at.as_millis())
            .execute(&mut *tx)
            .await?;
        }
        let transaction = Self::fetch_decisions(&mut tx, &[change.transaction_id.as_str()])
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("transaction {:?}", change.transaction_id)))?;
        tx.commit().await?;
        Ok(ReviewOutcome {
            before,
            transaction,
            label,
        })
    }

    /// [`Store::audit`].
    pub(super) async fn audit_of(&self, subject: &str) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, subject, before, after, note FROM audit_log \
             WHERE subject = $1 ORDER BY id",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at: Timestamp::from_millis(row.try_get("at")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    before: row.try_get("before")?,
                    after: row.try_get("after")?,
                    note: row.try_get("note")?,
                })
            })
            .collect()
    }

    /// Appends an audit entry inside the caller's transaction.
    pub(super) async fn audit_in(conn: &mut DB::Connection, entry: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, subject, before, after, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(entry.at.as_millis())
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.subject)
        .bind(entry.before.as_deref())
        .bind(entry.after.as_deref())
        .bind(entry.note.as_deref())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// A cursor into the review queue: the sort key and the row of the last item.
fn encode_cursor(order: QueueOrder, item: &StoredDecision) -> String {
    match order {
        QueueOrder::ScoreDesc => format!("s{:016x}.{}", item.decision.score.to_bits(), item.seq),
        QueueOrder::TimeDesc | QueueOrder::TimeAsc => format!("t{}.{}", item.decision.event_time.as_millis(), item.seq),
    }
}

enum CursorKey {
    Score(f64, i64),
    Time(i64, i64),
}

fn decode_cursor(order: QueueOrder, cursor: &str) -> Result<CursorKey> {
    let invalid = || StoreError::Invalid(format!("invalid cursor {cursor:?} for this sort order"));
    let (key, seq) = cursor
        .get(1..)
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(invalid)?;
    let seq: i64 = seq.parse().map_err(|_| invalid())?;
    match (order, cursor.as_bytes().first()) {
        (QueueOrder::ScoreDesc, Some(b's')) => {
            let bits = u64::from_str_radix(key, 16).map_err(|_| invalid())?;
            Ok(CursorKey::Score(f64::from_bits(bits), seq))
        }
        (QueueOrder::TimeDesc | QueueOrder::TimeAsc, Some(b't')) => {
            Ok(CursorKey::Time(key.parse().map_err(|_| invalid())?, seq))
        }
        _ => Err(invalid()),
    }
}
