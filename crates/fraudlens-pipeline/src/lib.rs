//! The one scoring path that the REST API and the stream consumer share:
//!
//! ```text
//! JSON record ─► Schema::parse_json ─► Transaction ─► FeatureEngine::observe ─► model ─► thresholds
//!      ─► NewDecision ─► group-commit writer (one database transaction per batch) ─► caller answers
//! ```
//!
//! - **Durable before acknowledged.** [`Pipeline::score`] returns only after the
//!   batch holding the decision has committed.
//! - **Group commit.** One writer task takes every decision queued while the
//!   previous commit ran and writes them in one transaction, so throughput grows
//!   with concurrency while each commit still waits for the disk.
//! - **Idempotent on the transaction id.** The same id with the same content
//!   returns the stored decision unchanged ([`Scored::replayed`]); the same id
//!   with other content is [`ScoreError::Conflict`]. A repeated id never
//!   reaches the entity state twice (`FeatureEngine::has_seen`, and for
//!   requests racing each other, the in-flight table).
//! - **Hot swap.** The model sits behind an `ArcSwap`: [`Pipeline::swap_model`]
//!   replaces it between two requests; a model that does not fit the running
//!   entity state is refused and the current one keeps serving.
//! - **Entity state survives restarts**: a snapshot at shutdown (and on
//!   demand), and on start the transactions stored after it are replayed.

mod contract;
mod model;
mod state;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use fraudlens_core::{Label, Transaction};
use fraudlens_features::FeatureEngine;
use fraudlens_model::shap::Reason;
use fraudlens_model::threshold::Decision;
use fraudlens_store::{NewDecision, NewLabel, Outcome, PutOutcome, ReviewStatus, Store, StoreError, StoredDecision};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use contract::{DecisionView, ReasonView};
pub use model::ServingModel;
pub use state::StateFile;

/// Why the pipeline cannot start or change.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The model cannot be loaded or does not fit.
    #[error("model: {0}")]
    Model(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The entity-state file cannot be read or written.
    #[error("entity state {path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why one record was not scored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScoreError {
    /// The record does not fit the schema (the caller's fault: 4xx, dead letter).
    #[error("{0}")]
    Invalid(String),
    /// The id was stored before with other content.
    #[error("transaction {0:?} was already scored with different content")]
    Conflict(String),
    /// The store failed; nothing was acknowledged (retry later).
    #[error("the decision could not be stored: {0}")]
    Unavailable(String),
    /// Too much queued, or shutting down (retry later).
    #[error("{0}")]
    Overloaded(String),
}

/// Which decisions get per-feature reasons (exact TreeSHAP: about a
/// millisecond per row on a 300-tree model, so by default only the rows an
/// analyst will look at).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainPolicy {
    /// Review and decline decisions.
    #[default]
    Flagged,
    /// Every decision.
    All,
    /// None.
    None,
}

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Reasons per explained decision.
    pub top_reasons: usize,
    /// Which decisions are explained.
    pub explain: ExplainPolicy,
    /// Most decisions per commit.
    pub max_commit_rows: usize,
    /// Most write requests waiting for the writer before new ones are refused.
    pub queue_capacity: usize,
    /// Where the entity state is snapshotted (none: rebuilt from the store on every start).
    pub state_file: Option<PathBuf>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            top_reasons: 5,
            explain: ExplainPolicy::Flagged,
            max_commit_rows: 2_000,
            queue_capacity: 16_384,
            state_file: None,
        }
    }
}

/// A scored (or found) decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// What is stored.
    pub record: NewDecision,
    /// `true` when the id was stored before with the same content: this is that decision.
    pub replayed: bool,
}

impl Scored {
    /// The reasons (parsed from the stored JSON).
    pub fn reasons(&self) -> Vec<Reason> {
        serde_json::from_str(&self.record.reasons).unwrap_or_default()
    }
}

type Shared = Result<Scored, ScoreError>;

/// Where the result of an in-flight transaction appears, for requests racing it.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Shared>>,
    ready: tokio::sync::Notify,
}

impl Slot {
    fn publish(&self, result: Shared) {
        *lock(&self.result) = Some(result);
        self.ready.notify_waiters();
    }

    async fn wait(&self) -> Shared {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // registered before the check, so a publish in between is not missed
            notified.as_mut().enable();
            if let Some(result) = lock(&self.result).clone() {
                return result;
            }
            notified.await;
        }
    }
}

/// The scoring path.
pub struct Pipeline {
    store: Arc<dyn Store>,
    model: ArcSwap<ServingModel>,
    engine: Mutex<FeatureEngine>,
    /// Ids observed whose write has not finished: a request racing one of
    /// them waits for its result instead of scoring the transaction again.
    in_flight: Mutex<FxHashMap<String, Arc<Slot>>>,
    writer: mpsc::Sender<writer::Message>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    /// The newest store row the engine has been caught up with ([`Pipeline::catch_up`]).
    caught_up: std::sync::atomic::AtomicI64,
    config: PipelineConfig,
}

/// Wall-clock time in milliseconds since the epoch: when a record was
/// received, reviewed, labelled (the store itself reads no clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding the lock leaves data that is still consistent
    // (every critical section is a single engine call or map update)
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stored form of a parsed transaction and its fingerprint (a hash of
/// that form: equal for the same content whatever the JSON's key order or
/// spacing).
fn stored_form(tx: &Transaction) -> (String, String) {
    let body = serde_json::to_string(tx).unwrap_or_default();
    let fingerprint = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(body.as_bytes()));
    (body, fingerprint)
}

fn outcome(decision: Decision) -> Outcome {
    match decision {
        Decision::Approve => Outcome::Approve,
        Decision::Review => Outcome::Review,
        Decision::Decline => Outcome::Decline,
    }
}

/// Prepared work for one transaction: observed, to be scored and written.
struct Observed {
    tx: Transaction,
    body: String,
    fingerprint: String,
    row: Vec<f64>,
    started: Instant,
    received_at: i64,
    slot: Arc<Slot>,
}

enum Admission {
    Fresh(Observed),
    /// The same id is being written right now: wait for it.
    Racing(Arc<Slot>),
    /// The engine has seen the id before: the store has its decision.
    Seen(Transaction, String),
}

impl Pipeline {
    /// Starts the pipeline: restores the entity state (snapshot, then the
    /// transactions stored after it) and starts the writer.
    pub async fn start(
        store: Arc<dyn Store>,
        model: ServingModel,
        config: PipelineConfig,
    ) -> Result<Arc<Self>, PipelineError> {
        let (engine, caught_up) = state::restore(store.as_ref(), model.spec(), config.state_file.as_deref()).await?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let writer_task = tokio::spawn(writer::run(store.clone(), receiver, config.max_commit_rows.max(1)));
        metrics::gauge!("fraudlens_entities").set(engine.n_entities() as f64);
        Ok(Arc::new(Self {
            store,
            model: ArcSwap::from_pointee(model),
            engine: Mutex::new(engine),
            in_flight: Mutex::new(FxHashMap::default()),
            writer: sender,
            writer_task: Mutex::new(Some(writer_task)),
            closed: AtomicBool::new(false),
            caught_up: std::sync::atomic::AtomicI64::new(caught_up),
            config,
        }))
    }

    /// The store behind the pipeline.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The serving model.
    pub fn model(&self) -> Arc<ServingModel> {
        self.model.load_full()
    }

    /// Replaces the serving model, if it fits the running entity state.
    pub fn swap_model(&self, model: ServingModel) -> Result<(), PipelineError> {
        self.model.load().check_replacement(&model)?;
        tracing::info!(version = model.version(), "serving model replaced");
        self.model.store(Arc::new(model));
        Ok(())
    }

    /// Parses, scores and durably stores one JSON record.
    pub async fn score(self: &Arc<Self>, record: &serde_json::Value) -> Result<Scored, ScoreError> {
        let model = self.model.load_full();
        let tx = model
            .inputs
            .schema
            .parse_json(record)
            .map_err(|error| ScoreError::Invalid(error.to_string()))?;
        self.score_transaction(&model, tx).await
    }

    /// Scores many records: each is parsed on its own (one bad record fails
    /// alone), all are observed under one lock, scored together and written
    /// in one commit.
    pub async fn score_many(self: &Arc<Self>, records: &[serde_json::Value]) -> Vec<Result<Scored, ScoreError>> {
        let model = self.model.load_full();
        let parsed = records
            .iter()
            .map(|record| {
                model
                    .inputs
                    .schema
                    .parse_json(record)
                    .map_err(|error| ScoreError::Invalid(error.to_string()))
            })
            .collect();
        self.score_parsed(&model, parsed).await
    }

    /// Scores parsed transactions (or passes their parse errors through), in one commit.
    ///
    /// Admission (observing the new transactions) happens here; the rest —
    /// scoring, the write, answering racing requests — runs in its own task,
    /// so a caller that goes away (a client disconnecting) cannot leave an
    /// observed transaction unwritten or its racing duplicates waiting.
    pub async fn score_parsed(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<Result<Transaction, ScoreError>>,
    ) -> Vec<Result<Scored, ScoreError>> {
        let n = parsed.len();
        let admissions = match self.admit_all(model, parsed) {
            Ok(admissions) => admissions,
            Err(error) => return vec![Err(error); n],
        };
        let (this, model) = (self.clone(), model.clone());
        tokio::spawn(async move { this.complete(&model, admissions).await })
            .await
            .unwrap_or_else(|_| vec![Err(ScoreError::Unavailable("scoring task failed".to_owned())); n])
    }

    /// Scores and stores one parsed transaction.
    pub async fn score_transaction(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        tx: Transaction,
    ) -> Result<Scored, ScoreError> {
        self.score_parsed(model, vec![Ok(tx)])
            .await
            .pop()
            .unwrap_or_else(|| Err(ScoreError::Unavailable("no result".to_owned())))
    }

    async fn complete(
        &self,
        model: &ServingModel,
        admissions: Vec<Result<Admission, ScoreError>>,
    ) -> Vec<Result<Scored, ScoreError>> {
        let n = admissions.len();
        let mut results: Vec<Option<Result<Scored, ScoreError>>> = vec![None; n];
        let mut waits = Vec::new();
        let mut fresh = Vec::new();
        for (idx, admission) in admissions.into_iter().enumerate() {
            match admission {
                Err(error) => results[idx] = Some(Err(error)),
                Ok(Admission::Fresh(observed)) => fresh.push((idx, observed)),
                Ok(other) => waits.push((idx, other)),
            }
        }
        let (indices, observed): (Vec<usize>, Vec<Observed>) = fresh.into_iter().unzip();
        for (idx, result) in indices.into_iter().zip(self.finish(model, observed).await) {
            results[idx] = Some(result);
        }
        for (idx, admission) in waits {
            results[idx] = Some(self.resolve(admission).await);
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(ScoreError::Unavailable("not processed".to_owned()))))
            .collect()
    }

    /// Under the engine lock: decides for each transaction whether it is new
    /// (observed now, registered in flight) or a repeat.
    fn admit_all(
        &self,
        model: &ServingModel,
        parsed: Vec<Result<Transaction, ScoreError>>,
    ) -> Result<Vec<Result<Admission, ScoreError>>, ScoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ScoreError::Overloaded("the server is shutting down".to_owned()));
        }
        let received_at = now_ms();
        let started = Instant::now();
        // serialise and hash before taking the lock
        let prepared: Vec<_> = parsed
            .into_iter()
            .map(|parsed| parsed.map(|tx| (stored_form(&tx), tx)))
            .collect();
        let mut engine = lock(&self.engine);
        let mut in_flight = lock(&self.in_flight);
        let n_features = engine.spec().feature_names().len();
        let admissions = prepared
            .into_iter()
            .map(|prepared| {
                let ((body, fingerprint), tx) = prepared?;
                let id = tx.id.as_str().to_owned();
                if let Some(slot) = in_flight.get(&id) {
                    return Ok(Admission::Racing(slot.clone()));
                }
                if engine.has_seen(&tx) {
                    return Ok(Admission::Seen(tx, fingerprint));
                }
                let mut row = Vec::with_capacity(n_features + tx.attributes.len());
                engine.observe(&tx, &mut row);
                model.inputs.push_attributes(&tx, &mut row);
                let slot = Arc::new(Slot::default());
                in_flight.insert(id, slot.clone());
                Ok(Admission::Fresh(Observed {
                    tx,
                    body,
                    fingerprint,
                    row,
                    started,
                    received_at,
                    slot,
                }))
            })
            .collect();
        metrics::gauge!("fraudlens_entities").set(engine.n_entities() as f64);
        Ok(admissions)
    }

    /// Scores observed transactions, writes them in one request to the
    /// writer, and publishes each result to requests racing it.
    async fn finish(&self, model: &ServingModel, mut observed: Vec<Observed>) -> Vec<Result<Scored, ScoreError>> {
        if observed.is_empty() {
            return Vec::new();
        }
        let records: Vec<NewDecision> = observed.iter_mut().map(|item| self.decide(model, item)).collect();
        let (records, written) = self.write(records).await;
        let mut results = Vec::with_capacity(observed.len());
        {
            let mut in_flight = lock(&self.in_flight);
            let mut records = records.into_iter();
            // every observed item gets a result, published to its racers, whatever happened
            for (idx, item) in observed.iter().enumerate() {
                let result = match (&written, records.next()) {
                    (Err(error), _) => Err(error.clone()),
                    (Ok(outcomes), record) => match (outcomes.get(idx), record) {
                        (Some(PutOutcome::Inserted), Some(record)) => Ok(Scored {
                            record,
                            replayed: false,
                        }),
                        (Some(PutOutcome::Existing(stored)), _) => compare(stored, &item.fingerprint),
                        _ => Err(ScoreError::Unavailable("missing write outcome".to_owned())),
                    },
                };
                in_flight.remove(item.tx.id.as_str());
                item.slot.publish(result.clone());
                results.push(result);
            }
        }
        for scored in results.iter().flatten().filter(|scored| !scored.replayed) {
            let decision = scored.record.decision.as_str();
            metrics::counter!("fraud_predictions_total", "decision" => decision).increment(1);
            if scored.record.decision != Outcome::Approve {
                metrics::counter!("fraud_detected_total", "decision" => decision).increment(1);
            }
        }
        results
    }

    /// The decision record for one observed transaction; its row and stored form move into the record.
    fn decide(&self, model: &ServingModel, item: &mut Observed) -> NewDecision {
        let artifact = &model.artifact;
        let (score, probability, raw, anomaly, decision) = match artifact.score(&item.row) {
            Ok(score) => (
                score.ranking(),
                score.probability,
                score.raw,
                score.anomaly,
                score.decision,
            ),
            // the row is built by the model's own input spec, so this is a bug: decide for review
            Err(error) => {
                tracing::error!(%error, "scoring failed");
                (f64::NAN, None, None, None, Decision::Review)
            }
        };
        let explain = match self.config.explain {
            ExplainPolicy::All => true,
            ExplainPolicy::Flagged => decision != Decision::Approve,
            ExplainPolicy::None => false,
        };
        let reasons = if explain {
            artifact.reasons(&item.row, self.config.top_reasons).unwrap_or_default()
        } else {
            Vec::new()
        };
        let latency = item.started.elapsed();
        metrics::histogram!("prediction_duration_seconds").record(latency.as_secs_f64());
        let outcome = outcome(decision);
        NewDecision {
            transaction_id: item.tx.id.as_str().to_owned(),
            fingerprint: item.fingerprint.clone(),
            event_time: item.tx.timestamp.as_millis(),
            received_at: item.received_at,
            entity: item.tx.entity(0).map(|key| key.as_str().to_owned()),
            amount_minor: item.tx.amount.minor(),
            currency: item.tx.amount.currency().as_str().to_owned(),
            body: std::mem::take(&mut item.body),
            score: if score.is_finite() { score } else { 1.0 },
            probability,
            raw_score: raw,
            anomaly_score: anomaly,
            decision: outcome,
            reasons: serde_json::to_string(&reasons).unwrap_or_else(|_| "[]".to_owned()),
            features: std::mem::take(&mut item.row),
            model_version: model.version().to_owned(),
            latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
            review_status: (outcome != Outcome::Approve).then_some(ReviewStatus::PendingReview),
        }
    }

    /// Hands records to the writer; they come back with the outcome.
    async fn write(&self, records: Vec<NewDecision>) -> (Vec<NewDecision>, Result<Vec<PutOutcome>, ScoreError>) {
        let (reply, answer) = oneshot::channel();
        if let Err(error) = self
            .writer
            .try_send(writer::Message::Write(writer::Job { records, reply }))
        {
            let (message, returned) = match error {
                mpsc::error::TrySendError::Full(message) => ("too many decisions waiting to be stored", message),
                mpsc::error::TrySendError::Closed(message) => ("the writer has stopped", message),
            };
            let records = match returned {
                writer::Message::Write(job) => job.records,
                writer::Message::Flush(_) => Vec::new(),
            };
            return (records, Err(ScoreError::Overloaded(message.to_owned())));
        }
        match answer.await {
            Ok((records, result)) => (records, result.map_err(ScoreError::Unavailable)),
            Err(_) => (
                Vec::new(),
                Err(ScoreError::Unavailable("the writer stopped".to_owned())),
            ),
        }
    }

    /// A repeated id: the stored (or in-flight) decision, if the content matches.
    async fn resolve(&self, admission: Admission) -> Result<Scored, ScoreError> {
        match admission {
            Admission::Fresh(_) => Err(ScoreError::Unavailable("not a repeat".to_owned())),
            Admission::Racing(slot) => slot.wait().await.map(|scored| Scored {
                replayed: true,
                ..scored
            }),
            Admission::Seen(tx, fingerprint) => {
                match self
                    .store
                    .transaction(tx.id.as_str())
                    .await
                    .map_err(|error| ScoreError::Unavailable(error.to_string()))?
                {
                    Some(stored) => compare(&stored, &fingerprint),
                    // observed but never stored (its write failed): score it again
                    None => {
                        let model = self.model.load_full();
                        let observed = {
                            let mut engine = lock(&self.engine);
                            let mut row = Vec::new();
                            engine.observe(&tx, &mut row);
                            model.inputs.push_attributes(&tx, &mut row);
                            let slot = Arc::new(Slot::default());
                            lock(&self.in_flight).insert(tx.id.as_str().to_owned(), slot.clone());
                            let (body, _) = stored_form(&tx);
                            Observed {
                                tx,
                                body,
                                fingerprint,
                                row,
                                started: Instant::now(),
                                received_at: now_ms(),
                                slot,
                            }
                        };
                        self.finish(&model, vec![observed])
                            .await
                            .pop()
                            .unwrap_or_else(|| Err(ScoreError::Unavailable("no result".to_owned())))
                    }
                }
            }
        }
    }

    /// Records labels and feeds those of stored transactions to the entity
    /// state (the label-delayed risk features).
    pub async fn apply_labels(&self, labels: &[NewLabel]) -> Result<usize, StoreError> {
        let stored = self.store.put_labels(labels).await?;
        let mut applied = 0;
        let mut engine = lock(&self.engine);
        for (label, stored) in labels.iter().zip(stored) {
            if let Some(stored) = stored {
                applied += usize::from(apply(&mut engine, &stored, label.label));
            }
        }
        Ok(applied)
    }

    /// Feeds a review's label to the entity state.
    pub fn apply_review_label(&self, stored: &StoredDecision, label: Label) -> bool {
        apply(&mut lock(&self.engine), stored, label)
    }

    /// Writes the entity-state snapshot now (if a state file is configured).
    pub async fn snapshot(&self) -> Result<(), PipelineError> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        let last_seq = self.store.last_seq().await?;
        let bytes = lock(&self.engine).snapshot();
        StateFile::write(path, last_seq, &bytes)
    }

    /// Stops taking records, waits for every queued decision to commit, and
    /// snapshots the entity state.
    pub async fn shutdown(&self) -> Result<(), PipelineError> {
        self.closed.store(true, Ordering::Release);
        let (reply, flushed) = oneshot::channel();
        if self.writer.send(writer::Message::Flush(reply)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), flushed).await;
        }
        let task = lock(&self.writer_task).take();
        if let Some(task) = task {
            task.abort();
        }
        self.snapshot().await
    }

    /// Observes the transactions other processes stored since the last catch-up
    /// (those this engine has not seen): a detector calls it when it is assigned
    /// partitions, so the state of the entities it takes over is current.
    /// Returns how many were observed.
    pub async fn catch_up(&self) -> Result<usize, PipelineError> {
        let mut observed = 0;
        loop {
            let after = self.caught_up.load(Ordering::Acquire);
            let page = self.store.transactions_after(after, state::REPLAY_PAGE).await?;
            let Some(last) = page.last() else { break };
            let last = last.seq;
            let parsed = state::parse_page(&page)?;
            observed += state::observe_unseen(&mut lock(&self.engine), &parsed);
            self.caught_up.fetch_max(last, Ordering::AcqRel);
        }
        tracing::info!(observed, "entity state caught up with the store");
        Ok(observed)
    }

    /// Entities in the state (for readiness and metrics).
    pub fn n_entities(&self) -> usize {
        lock(&self.engine).n_entities()
    }
}

fn compare(stored: &StoredDecision, fingerprint: &str) -> Result<Scored, ScoreError> {
    if stored.decision.fingerprint == fingerprint {
        Ok(Scored {
            record: stored.decision.clone(),
            replayed: true,
        })
    } else {
        Err(ScoreError::Conflict(stored.decision.transaction_id.clone()))
    }
}

fn apply(engine: &mut FeatureEngine, stored: &StoredDecision, label: Label) -> bool {
    match serde_json::from_str::<Transaction>(&stored.decision.body) {
        Ok(tx) => engine.apply_label(&tx, label).found > 0,
        Err(error) => {
            tracing::warn!(%error, id = stored.decision.transaction_id, "stored transaction unreadable");
            false
        }
    }
}
