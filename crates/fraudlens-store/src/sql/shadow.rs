//! The shadow model (at most one, in `model_shadow`) and its scores: set and
//! cleared with an audit entry under the registry's lock, and scores stored
//! in multi-row inserts (the shadow worker writes them in batches, after the
//! decisions they score committed) through the shadow's own pool: on SQLite
//! a database file of their own.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Row, Type};

use super::{Backend, SqlStore};
use crate::vocabulary::parse;
use crate::*;

/// Rows per insert statement (8 parameters each: well under both backends' limits).
const ROWS_PER_INSERT: usize = 256;

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
    /// [`Store::set_shadow`].
    pub(super) async fn change_shadow(
        &self,
        version: Option<&str>,
        at: Timestamp,
        actor: &str,
    ) -> Result<Option<String>> {
        let mut tx = DB::begin_write(&self.pool).await?;
        sqlx::query(DB::LOCK_MODELS).execute(&mut *tx).await?;
        let before: Option<String> = sqlx::query_scalar("SELECT version FROM model_shadow WHERE slot = 1")
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(version) = version {
            let stage: Option<String> = sqlx::query_scalar("SELECT stage FROM models WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            match stage.as_deref().map(parse::<ModelStage>).transpose()? {
                None => return Err(StoreError::NotFound(format!("model version {version:?}"))),
                Some(ModelStage::Production) => {
                    return Err(StoreError::Conflict(format!(
                        "model version {version:?} is the production model: a shadow scores beside it"
                    )));
                }
                Some(_) => {}
            }
        }
        if before.is_none() && version.is_none() {
            return Ok(None);
        }
        // the same version again is a new setting (its `since`): processes that switched it off retry it
        sqlx::query("DELETE FROM model_shadow WHERE slot = 1")
            .execute(&mut *tx)
            .await?;
        if let Some(version) = version {
            sqlx::query("INSERT INTO model_shadow (slot, version, since, actor) VALUES (1, $1, $2, $3)")
                .bind(version)
                .bind(at.as_millis())
                .bind(actor)
                .execute(&mut *tx)
                .await?;
        }
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at,
                actor: actor.to_owned(),
                action: "shadow".to_owned(),
                // the model that starts shadowing, or the one that stops
                subject: format!("model:{}", version.or(before.as_deref()).unwrap_or_default()),
                before: before.clone(),
                after: version.map(str::to_owned),
                note: None,
            },
        )
        .await?;
        if let Some(notify) = DB::NOTIFY_MODELS {
            sqlx::query(notify)
                .bind(version.unwrap_or(""))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(before)
    }

    /// [`Store::put_shadow_scores`].
    pub(super) async fn insert_shadow_scores(&self, scores: &[ShadowScore]) -> Result<()> {
        if scores.is_empty() {
            return Ok(());
        }
        let mut tx = DB::begin_write(&self.shadow).await?;
        let mut rest = scores;
        while !rest.is_empty() {
            // chunks of ROWS_PER_INSERT, then powers of two: a handful of statement texts, each cached once
            let size = if rest.len() >= ROWS_PER_INSERT {
                ROWS_PER_INSERT
            } else {
                1 << rest.len().ilog2()
            };
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let mut sql = String::from(
                "INSERT INTO shadow_scores (model_version, transaction_id, event_time, score, probability, decision, \
                 scored_at, latency_us) VALUES ",
            );
            for row in 0..chunk.len() {
                let n = row * 8;
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7,
                    n + 8
                ));
            }
            sql.push_str(" ON CONFLICT (model_version, transaction_id) DO NOTHING");
            // numbered placeholders only, built here
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for score in chunk {
                query = query
                    .bind(score.model_version.as_str())
                    .bind(score.transaction_id.as_str())
                    .bind(score.event_time.as_millis())
                    .bind(score.score)
                    .bind(score.probability)
                    .bind(score.decision.as_str())
                    .bind(score.scored_at.as_millis())
                    .bind(score.latency_us);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::shadow_scores`].
    pub(super) async fn shadow_scores_between(
        &self,
        version: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ShadowScore>> {
        let rows = sqlx::query(
            "SELECT model_version, transaction_id, event_time, score, probability, decision, scored_at, latency_us \
             FROM shadow_scores WHERE model_version = $1 AND event_time >= $2 AND event_time < $3 \
             ORDER BY event_time, transaction_id",
        )
        .bind(version)
        .bind(from.as_millis())
        .bind(to.as_millis())
        .fetch_all(&self.shadow)
        .await?;
        rows.iter()
            .map(|row| {
                let decision: String = row.try_get("decision")?;
                Ok(ShadowScore {
                    model_version: row.try_get("model_version")?,
                    transaction_id: row.try_get("transaction_id")?,
                    event_time: Timestamp::from_millis(row.try_get("event_time")?),
                    score: row.try_get("score")?,
                    probability: row.try_get("probability")?,
                    decision: parse(&decision)?,
                    scored_at: Timestamp::from_millis(row.try_get("scored_at")?),
                    latency_us: row.try_get("latency_us")?,
                })
            })
            .collect()
    }
}
