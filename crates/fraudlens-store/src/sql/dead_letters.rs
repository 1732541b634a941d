//! Dead letters: records that could not be processed, stored with card
//! numbers redacted, once per Kafka record.

use fraudlens_core::redact_card_numbers;
use sqlx::{ColumnIndex, Decode, Encode, Executor, QueryBuilder, Row, Type};

use super::decisions::INSERT_CHUNK;
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
    /// [`Store::put_dead_letters`].
    pub(super) async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut tx = DB::begin_write(&self.pool).await?;
        for chunk in letters.chunks(INSERT_CHUNK) {
            let mut query = QueryBuilder::<DB>::new("INSERT INTO dead_letters (at, source, location, error, payload) ");
            query.push_values(chunk, |mut row, letter| {
                row.push_bind(letter.at.as_millis())
                    .push_bind(letter.source.clone())
                    .push_bind(letter.location.clone())
                    .push_bind(redact_card_numbers(&letter.error).into_owned())
                    .push_bind(redact_card_numbers(&letter.payload).into_owned());
            });
            // a Kafka record already dead-lettered (a retried batch) is not stored again
            query.push(" ON CONFLICT DO NOTHING");
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::dead_letters`].
    pub(super) async fn latest_dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>> {
        let rows =
            sqlx::query("SELECT id, at, source, location, error, payload FROM dead_letters ORDER BY id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredDeadLetter {
                    id: row.try_get("id")?,
                    letter: DeadLetter {
                        at: Timestamp::from_millis(row.try_get("at")?),
                        source: row.try_get("source")?,
                        location: row.try_get("location")?,
                        error: row.try_get("error")?,
                        payload: row.try_get("payload")?,
                    },
                })
            })
            .collect()
    }
}
