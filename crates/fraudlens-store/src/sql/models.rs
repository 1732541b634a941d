//! The model registry: versions registered as `staging` (with their content
//! digest), at most one `production` model, promotion with its audit entry
//! (and, on PostgreSQL, a notification on [`MODELS_CHANNEL`] sent at commit).

use sqlx::{ColumnIndex, Decode, Encode, Executor, Row, Type};

use super::{Backend, SqlStore};
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
    /// [`Store::register_model`].
    pub(super) async fn insert_model(&self, model: &NewModel) -> Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        sqlx::query(DB::LOCK_MODELS).execute(&mut *tx).await?;
        let existing: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT path, digest FROM models WHERE version = $1")
                .bind(&model.version)
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            Some((path, Some(digest))) if path == model.path && digest == model.digest => return Ok(()),
            // registered before digests were kept: this registration supplies it
            Some((path, None)) if path == model.path => {
                sqlx::query("UPDATE models SET digest = $1 WHERE version = $2")
                    .bind(&model.digest)
                    .bind(&model.version)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(());
            }
            Some((path, Some(_))) if path == model.path => {
                return Err(StoreError::Conflict(format!(
                    "model version {:?} is registered with other content: the files at {path:?} \
                     changed since its registration",
                    model.version
                )));
            }
            Some((path, _)) => {
                return Err(StoreError::Conflict(format!(
                    "model version {:?} is already registered with {path:?}",
                    model.version
                )));
            }
            None => {}
        }
        sqlx::query(
            "INSERT INTO models (version, path, stage, summary, feature_names, registered_at, digest) \
             VALUES ($1, $2, 'staging', $3, $4, $5, $6)",
        )
        .bind(&model.version)
        .bind(&model.path)
        .bind(&model.summary)
        .bind(serde_json::to_string(&model.feature_names).unwrap_or_else(|_| "[]".to_owned()))
        .bind(model.registered_at.as_millis())
        .bind(&model.digest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::models`].
    pub(super) async fn all_models(&self) -> Result<Vec<ModelEntry>> {
        let rows = sqlx::query(
            "SELECT m.version, m.path, m.stage, m.summary, m.feature_names, m.registered_at, m.promoted_at, \
             m.digest, s.version AS shadow, s.since AS shadow_since FROM models m \
             LEFT JOIN model_shadow s ON s.version = m.version \
             ORDER BY m.registered_at DESC, m.version DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::model_from_row).collect()
    }

    /// [`Store::promote_model`].
    pub(super) async fn promote(&self, version: &str, at: Timestamp, actor: &str) -> Result<ModelEntry> {
        let mut tx = DB::begin_write(&self.pool).await?;
        sqlx::query(DB::LOCK_MODELS).execute(&mut *tx).await?;
        let before: Option<String> = sqlx::query_scalar("SELECT version FROM models WHERE stage = 'production'")
            .fetch_optional(&mut *tx)
            .await?;
        // a shadow model promoted stops shadowing: it serves
        let unshadowed: Option<String> = sqlx::query_scalar("SELECT version FROM model_shadow WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        if unshadowed.is_some() {
            sqlx::query("DELETE FROM model_shadow WHERE version = $1")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            Self::audit_in(
                &mut tx,
                &AuditEntry {
                    at,
                    actor: actor.to_owned(),
                    action: "shadow".to_owned(),
                    subject: format!("model:{version}"),
                    before: Some(version.to_owned()),
                    after: None,
                    note: Some("promoted: it serves now".to_owned()),
                },
            )
            .await?;
        }
        sqlx::query("UPDATE models SET stage = 'archived' WHERE stage = 'production' AND version <> $1")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "UPDATE models SET stage = 'production', promoted_at = $1 WHERE version = $2 \
             RETURNING version, path, stage, summary, feature_names, registered_at, promoted_at, digest, \
             NULL AS shadow, CAST(NULL AS BIGINT) AS shadow_since",
        )
        .bind(at.as_millis())
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("model version {version:?}")));
        };
        let entry = Self::model_from_row(&row)?;
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at,
                actor: actor.to_owned(),
                action: "promote".to_owned(),
                subject: format!("model:{version}"),
                before,
                after: Some(version.to_owned()),
                note: None,
            },
        )
        .await?;
        if let Some(notify) = DB::NOTIFY_MODELS {
            sqlx::query(notify).bind(version).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(entry)
    }

    fn model_from_row(row: &DB::Row) -> Result<ModelEntry> {
        let stage: String = row.try_get("stage")?;
        let names: String = row.try_get("feature_names")?;
        Ok(ModelEntry {
            version: row.try_get("version")?,
            path: row.try_get("path")?,
            stage: parse(&stage)?,
            summary: row.try_get("summary")?,
            feature_names: serde_json::from_str(&names)
                .map_err(|error| StoreError::Corrupt(format!("feature names: {error}")))?,
            registered_at: Timestamp::from_millis(row.try_get("registered_at")?),
            promoted_at: row
                .try_get::<Option<i64>, _>("promoted_at")?
                .map(Timestamp::from_millis),
            digest: row.try_get("digest")?,
            shadow: row.try_get::<Option<String>, _>("shadow")?.is_some(),
            shadow_since: row
                .try_get::<Option<i64>, _>("shadow_since")?
                .map(Timestamp::from_millis),
        })
    }
}
