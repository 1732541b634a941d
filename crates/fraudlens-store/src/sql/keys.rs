//! API keys: created and revoked with an audit entry each; only a SHA-256 of
//! the secret is stored.

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
    /// [`Store::create_key`].
    pub(super) async fn insert_key(&self, key: &ApiKeyEntry) -> Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO api_keys (key_id, name, role, secret_sha256, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.key_id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(&key.secret_sha256)
        .bind(key.created_at.as_millis())
        .bind(key.revoked_at.map(Timestamp::as_millis))
        .execute(&mut *tx)
        .await?;
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at: key.created_at,
                actor: "cli".to_owned(),
                action: "key_create".to_owned(),
                subject: format!("key:{}", key.key_id),
                before: None,
                after: Some(key.role.as_str().to_owned()),
                note: Some(key.name.clone()),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::key`].
    pub(super) async fn key_by_id(&self, key_id: &str) -> Result<Option<ApiKeyEntry>> {
        let row = sqlx::query(
            "SELECT key_id, name, role, secret_sha256, created_at, revoked_at FROM api_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::key_from_row).transpose()
    }

    /// [`Store::keys`].
    pub(super) async fn all_keys(&self) -> Result<Vec<ApiKeyEntry>> {
        let rows = sqlx::query(
            "SELECT key_id, name, role, secret_sha256, created_at, revoked_at FROM api_keys \
             ORDER BY created_at, key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::key_from_row).collect()
    }

    /// [`Store::revoke_key`].
    pub(super) async fn revoke(&self, key_id: &str, at: Timestamp, actor: &str) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let exists: Option<Option<i64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT revoked_at FROM api_keys WHERE key_id = $1{}",
            DB::FOR_UPDATE
        )))
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        match exists {
            None => return Err(StoreError::NotFound(format!("API key {key_id:?}"))),
            Some(Some(_)) => return Ok(false),
            Some(None) => {}
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2")
            .bind(at.as_millis())
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        Self::audit_in(
            &mut tx,
            &AuditEntry {
                at,
                actor: actor.to_owned(),
                action: "key_revoke".to_owned(),
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

    fn key_from_row(row: &DB::Row) -> Result<ApiKeyEntry> {
        let role: String = row.try_get("role")?;
        Ok(ApiKeyEntry {
            key_id: row.try_get("key_id")?,
            name: row.try_get("name")?,
            role: parse(&role)?,
            secret_sha256: row.try_get("secret_sha256")?,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp::from_millis),
        })
    }
}
