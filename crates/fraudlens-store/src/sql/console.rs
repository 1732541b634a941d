//! What the console reads and writes beyond the API's queries: sessions
//! (signed-in browsers), the review queue's counts per status, and an
//! entity's recent transactions.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Row, Type};

use super::decisions::DECISION_COLUMNS;
use super::{Backend, SqlStore};
use crate::vocabulary::parse;
use crate::*;
use fraudlens_core::ReviewStatus;

/// Most transactions [`Store::related_entities`] reads: the latest of its window.
const RELATED_SCAN_ROWS: i64 = 50_000;

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

    /// [`Store::search`].
    pub(super) async fn search_all(&self, query: &str, limit: u32) -> Result<Vec<SearchHit>> {
        let query = query.trim();
        let mut hits = Vec::new();
        if query.is_empty() {
            return Ok(hits);
        }
        let limit = i64::from(limit.max(1));
        // a prefix as a range of the id indexes: every id from the query up to
        // the query followed by the last character there is
        let end = format!("{query}\u{10ffff}");
        let cases = sqlx::query(
            "SELECT transaction_id, entity, event_time, decision, score FROM transactions \
             WHERE transaction_id >= $1 AND transaction_id < $2 ORDER BY transaction_id LIMIT $3",
        )
        .bind(query)
        .bind(&end)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for row in cases {
            let entity: Option<String> = row.try_get("entity")?;
            let decision: String = row.try_get("decision")?;
            let score: f64 = row.try_get("score")?;
            hits.push(SearchHit {
                kind: SearchKind::Case,
                subject: row.try_get("transaction_id")?,
                at: Timestamp::from_millis(row.try_get("event_time")?),
                text: format!(
                    "{decision}, score {score:.3}{}",
                    entity.map(|entity| format!(", entity {entity}")).unwrap_or_default()
                ),
            });
        }
        let entities = sqlx::query(
            "SELECT entity, COUNT(*) AS n, MAX(event_time) AS latest FROM transactions \
             WHERE entity >= $1 AND entity < $2 GROUP BY entity ORDER BY entity LIMIT $3",
        )
        .bind(query)
        .bind(&end)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for row in entities {
            let n: i64 = row.try_get("n")?;
            hits.push(SearchHit {
                kind: SearchKind::Entity,
                subject: row.try_get("entity")?,
                at: Timestamp::from_millis(row.try_get("latest")?),
                text: format!("{n} decision{}", if n == 1 { "" } else { "s" }),
            });
        }
        let words = DB::words(query);
        for (kind, sql) in [
            (SearchKind::Note, DB::SEARCH_NOTES),
            (SearchKind::Narrative, DB::SEARCH_NARRATIVES),
        ] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&words)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                hits.push(SearchHit {
                    kind,
                    subject: row.try_get("subject")?,
                    at: Timestamp::from_millis(row.try_get("at")?),
                    text: row.try_get("text")?,
                });
            }
        }
        Ok(hits)
    }

    /// [`Store::put_narrative`].
    pub(super) async fn insert_narrative(&self, narrative: &NewNarrative) -> Result<i64> {
        let citations = serde_json::to_string(&narrative.citations).unwrap_or_else(|_| "[]".to_owned());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO case_narratives (transaction_id, created_at, source, model, recommendation, assessment, \
             citations, note, evidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&narrative.transaction_id)
        .bind(narrative.created_at.as_millis())
        .bind(&narrative.source)
        .bind(narrative.model.as_deref())
        .bind(&narrative.recommendation)
        .bind(&narrative.assessment)
        .bind(&citations)
        .bind(narrative.note.as_deref())
        .bind(&narrative.evidence)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// [`Store::narratives`].
    pub(super) async fn narratives_of(&self, transaction_id: &str, limit: u32) -> Result<Vec<StoredNarrative>> {
        let rows = sqlx::query(
            "SELECT id, transaction_id, created_at, source, model, recommendation, assessment, citations, note, \
             evidence FROM case_narratives WHERE transaction_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(transaction_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let citations: String = row.try_get("citations")?;
                Ok(StoredNarrative {
                    id: row.try_get("id")?,
                    narrative: NewNarrative {
                        transaction_id: row.try_get("transaction_id")?,
                        created_at: Timestamp::from_millis(row.try_get("created_at")?),
                        source: row.try_get("source")?,
                        model: row.try_get("model")?,
                        recommendation: row.try_get("recommendation")?,
                        assessment: row.try_get("assessment")?,
                        citations: serde_json::from_str(&citations).unwrap_or_default(),
                        note: row.try_get("note")?,
                        evidence: row.try_get("evidence")?,
                    },
                })
            })
            .collect()
    }

    /// [`Store::flagged_before`].
    pub(super) async fn flagged_until(&self, at: Timestamp, limit: u32) -> Result<Vec<StoredDecision>> {
        // `review_status IS NOT NULL` is the partial time index's own condition; the
        // bodies stay in the database (a case compares reasons and inputs, and tens of
        // thousands of bodies would be read for nothing)
        let columns = DECISION_COLUMNS.replacen("currency, body,", "currency, '' AS body,", 1);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM transactions WHERE review_status IS NOT NULL AND event_time <= $1 \
             ORDER BY event_time DESC, seq DESC LIMIT $2"
        )))
        .bind(at.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::decision_from_row).collect()
    }

    /// [`Store::decision_stats`]: one pass over the range (read from the
    /// index that holds event time, decision, label, score and decision
    /// time), grouped by bucket, decision and score bin.
    pub(super) async fn stats_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        bucket_millis: i64,
    ) -> Result<DecisionStats> {
        let bucket_millis = bucket_millis.max(1);
        // bins of 0.05: the score in millionths, divided (integer division on both backends)
        let per_bin = 1_000_000 / SCORE_BINS as i64;
        let rows = sqlx::query(
            "SELECT (event_time - $1) / $3 AS bucket, decision, CAST(score * 1000000 AS BIGINT) / $4 AS bin, \
             COUNT(*) AS n, SUM(CASE WHEN label = 'fraud' THEN 1 ELSE 0 END) AS fraud, \
             SUM(CASE WHEN label = 'legit' THEN 1 ELSE 0 END) AS legit, \
             CAST(SUM(latency_us) AS BIGINT) AS latency_sum, MAX(latency_us) AS latency_max \
             FROM transactions WHERE event_time >= $1 AND event_time < $2 \
             GROUP BY 1, 2, 3 ORDER BY 1",
        )
        .bind(from.as_millis())
        .bind(to.as_millis())
        .bind(bucket_millis)
        .bind(per_bin)
        .fetch_all(&self.pool)
        .await?;
        let mut buckets: Vec<DecisionBucket> = Vec::new();
        let mut score_bins = vec![0u64; SCORE_BINS];
        for row in rows {
            let index: i64 = row.try_get("bucket")?;
            let start = Timestamp::from_millis(from.as_millis() + index * bucket_millis);
            if buckets.last().is_none_or(|last| last.start != start) {
                buckets.push(DecisionBucket {
                    start,
                    ..DecisionBucket::default()
                });
            }
            let bucket = buckets
                .last_mut()
                .ok_or_else(|| StoreError::Corrupt("no bucket".to_owned()))?;
            let count = |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
            let n = count("n")?;
            let decision: String = row.try_get("decision")?;
            match parse::<fraudlens_core::Decision>(&decision)? {
                fraudlens_core::Decision::Approve => bucket.approve += n,
                fraudlens_core::Decision::Review => bucket.review += n,
                fraudlens_core::Decision::Decline => bucket.decline += n,
            }
            bucket.fraud += count("fraud")?;
            bucket.legit += count("legit")?;
            bucket.latency_sum_us += row.try_get::<i64, _>("latency_sum")?;
            bucket.latency_max_us = bucket.latency_max_us.max(row.try_get::<i64, _>("latency_max")?);
            let bin = usize::try_from(row.try_get::<i64, _>("bin")?.max(0))
                .unwrap_or(0)
                .min(SCORE_BINS - 1);
            score_bins[bin] += n;
        }
        Ok(DecisionStats { buckets, score_bins })
    }

    /// [`Store::related_entities`].
    pub(super) async fn sharing(
        &self,
        position: usize,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<RelatedEntity>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT entity, COUNT(*) AS n, SUM(CASE WHEN decision = 'approve' THEN 0 ELSE 1 END) AS flagged, \
             SUM(CASE WHEN label = 'fraud' THEN 1 ELSE 0 END) AS fraud, MAX(event_time) AS last_seen \
             FROM (SELECT entity, decision, label, event_time, body FROM transactions \
                   WHERE event_time >= $1 AND event_time < $2 ORDER BY event_time DESC LIMIT $5) AS recent \
             WHERE {} AND {} = $3 AND entity IS NOT NULL \
             GROUP BY entity ORDER BY n DESC, entity LIMIT $4",
            DB::contains("body", 6),
            DB::body_entity(position)
        )))
        .bind(from.as_millis())
        .bind(to.as_millis())
        .bind(key)
        .bind(i64::from(limit))
        .bind(RELATED_SCAN_ROWS)
        // a cheap substring test first (the key as the body spells it): the JSON
        // is parsed only in the rows that hold it
        .bind(serde_json::to_string(key).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let count =
                    |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
                Ok(RelatedEntity {
                    entity: row.try_get("entity")?,
                    transactions: count("n")?,
                    flagged: count("flagged")?,
                    fraud: count("fraud")?,
                    last_seen: Timestamp::from_millis(row.try_get("last_seen")?),
                })
            })
            .collect()
    }
}
