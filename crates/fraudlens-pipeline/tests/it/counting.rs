//! A store that counts its decision writes (one per commit), to see group
//! commit, and can fail the next ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fraudlens_core::Timestamp;
use fraudlens_store::{
    AnomalyQuery, ApiKeyEntry, AuditEntry, ComparisonEntry, DeadLetter, DecisionStats, FlaggedOutcomes, LabelEntry,
    ModelChanges, ModelEntry, NewComparison, NewDecision, NewLabel, NewModel, NewNarrative, Page, PutOutcome,
    QueueCounts, RelatedEntity, Result, ReviewOutcome, ReviewRequest, SessionEntry, ShadowScore, Store,
    StoredDeadLetter, StoredDecision, StoredNarrative,
};

/// Delegates to a real store, counting `put_decisions` calls.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    commits: AtomicUsize,
    failures: AtomicUsize,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            commits: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        }
    }

    /// The next `n` decision writes fail (the database unreachable), storing nothing.
    pub fn fail_next_writes(&self, n: usize) {
        self.failures.store(n, Ordering::Release);
    }

    /// Decision writes (commits) so far.
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::Acquire)
    }
}

#[async_trait::async_trait]
impl Store for CountingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn put_decisions(&self, batch: &[NewDecision]) -> Result<Vec<PutOutcome>> {
        self.commits.fetch_add(1, Ordering::AcqRel);
        let failing = self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(fraudlens_store::StoreError::Corrupt(
                "the test failed this write".to_owned(),
            ));
        }
        self.inner.put_decisions(batch).await
    }
    async fn transaction(&self, id: &str) -> Result<Option<StoredDecision>> {
        self.inner.transaction(id).await
    }
    async fn transactions_after(&self, seq: i64, limit: u32, shard: Option<&str>) -> Result<Vec<StoredDecision>> {
        self.inner.transactions_after(seq, limit, shard).await
    }
    async fn last_seq(&self) -> Result<i64> {
        self.inner.last_seq().await
    }
    async fn latest_event_time(&self) -> Result<Option<Timestamp>> {
        self.inner.latest_event_time().await
    }
    async fn first_seq_since(&self, event_time: Timestamp, shard: Option<&str>) -> Result<Option<i64>> {
        self.inner.first_seq_since(event_time, shard).await
    }
    async fn count_transactions(&self) -> Result<u64> {
        self.inner.count_transactions().await
    }
    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Page> {
        self.inner.anomalies(query).await
    }
    async fn review(&self, change: &ReviewRequest) -> Result<ReviewOutcome> {
        self.inner.review(change).await
    }
    async fn put_labels(&self, labels: &[NewLabel]) -> Result<Vec<Option<StoredDecision>>> {
        self.inner.put_labels(labels).await
    }
    async fn labels(&self, transaction_id: &str) -> Result<Vec<LabelEntry>> {
        self.inner.labels(transaction_id).await
    }
    async fn audit(&self, subject: &str) -> Result<Vec<AuditEntry>> {
        self.inner.audit(subject).await
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        self.inner.append_audit(entry).await
    }
    async fn register_model(&self, model: &NewModel) -> Result<()> {
        self.inner.register_model(model).await
    }
    async fn models(&self) -> Result<Vec<ModelEntry>> {
        self.inner.models().await
    }
    async fn promote_model(&self, version: &str, at: Timestamp, actor: &str) -> Result<ModelEntry> {
        self.inner.promote_model(version, at, actor).await
    }
    async fn model_changes(&self) -> Result<Option<ModelChanges>> {
        self.inner.model_changes().await
    }
    async fn create_key(&self, key: &ApiKeyEntry) -> Result<()> {
        self.inner.create_key(key).await
    }
    async fn key(&self, key_id: &str) -> Result<Option<ApiKeyEntry>> {
        self.inner.key(key_id).await
    }
    async fn keys(&self) -> Result<Vec<ApiKeyEntry>> {
        self.inner.keys().await
    }
    async fn revoke_key(&self, key_id: &str, at: Timestamp, actor: &str) -> Result<bool> {
        self.inner.revoke_key(key_id, at, actor).await
    }
    async fn create_session(&self, session: &SessionEntry) -> Result<()> {
        self.inner.create_session(session).await
    }
    async fn session(&self, token_sha256: &str) -> Result<Option<SessionEntry>> {
        self.inner.session(token_sha256).await
    }
    async fn end_session(&self, token_sha256: &str, at: Timestamp) -> Result<bool> {
        self.inner.end_session(token_sha256, at).await
    }
    async fn search(&self, query: &str, limit: u32) -> Result<Vec<fraudlens_store::SearchHit>> {
        self.inner.search(query, limit).await
    }
    async fn put_narrative(&self, narrative: &NewNarrative) -> Result<i64> {
        self.inner.put_narrative(narrative).await
    }
    async fn narratives(&self, transaction_id: &str, limit: u32) -> Result<Vec<StoredNarrative>> {
        self.inner.narratives(transaction_id, limit).await
    }
    async fn flagged_before(&self, at: Timestamp, limit: u32) -> Result<Vec<StoredDecision>> {
        self.inner.flagged_before(at, limit).await
    }
    async fn nearest_flagged(
        &self,
        at: Timestamp,
        reasons: &str,
        limit: u32,
        exact_up_to: u32,
    ) -> Result<Option<Vec<StoredDecision>>> {
        self.inner.nearest_flagged(at, reasons, limit, exact_up_to).await
    }
    async fn queue_counts(&self, after_seq: i64) -> Result<QueueCounts> {
        self.inner.queue_counts(after_seq).await
    }
    async fn decision_stats(&self, from: Timestamp, to: Timestamp, bucket_millis: i64) -> Result<DecisionStats> {
        self.inner.decision_stats(from, to, bucket_millis).await
    }
    async fn related_entities(
        &self,
        position: usize,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<RelatedEntity>> {
        self.inner.related_entities(position, key, from, to, limit).await
    }
    async fn entity_history(
        &self,
        entity: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<StoredDecision>> {
        self.inner.entity_history(entity, from, to, limit).await
    }
    async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        self.inner.put_dead_letters(letters).await
    }
    async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>> {
        self.inner.dead_letters(limit).await
    }
    async fn put_comparison(&self, comparison: &NewComparison) -> Result<i64> {
        self.inner.put_comparison(comparison).await
    }
    async fn comparisons(&self, candidate: Option<&str>, limit: u32) -> Result<Vec<ComparisonEntry>> {
        self.inner.comparisons(candidate, limit).await
    }
    async fn flagged_outcomes(&self, after_seq: i64) -> Result<FlaggedOutcomes> {
        self.inner.flagged_outcomes(after_seq).await
    }
    async fn set_shadow(&self, version: Option<&str>, at: Timestamp, actor: &str) -> Result<Option<String>> {
        self.inner.set_shadow(version, at, actor).await
    }
    async fn put_shadow_scores(&self, scores: &[ShadowScore]) -> Result<()> {
        self.inner.put_shadow_scores(scores).await
    }
    async fn shadow_scores(&self, version: &str, from: Timestamp, to: Timestamp) -> Result<Vec<ShadowScore>> {
        self.inner.shadow_scores(version, from, to).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}
