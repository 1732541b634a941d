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
//! - **Sharded state for detectors** ([`PipelineConfig::sharded`]): one state
//!   per assigned partition, rebuilt from the store when acquired
//!   ([`Pipeline::acquire_shard`]) and dropped when the partition is gone
//!   ([`Pipeline::release_shards`], [`Pipeline::retain_shards`]); see [`EntityState`].

mod contract;
mod model;
pub mod registry;
mod shards;
mod state;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use fraudlens_core::{Label, Transaction};
use fraudlens_features::{EventTimePolicy, FeatureEngine};
use fraudlens_model::shap::Reason;
use fraudlens_model::threshold::Decision;
use fraudlens_store::{NewDecision, NewLabel, Outcome, PutOutcome, ReviewStatus, Store, StoreError, StoredDecision};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use contract::{DecisionView, ReasonView};
pub use model::ServingModel;
pub use shards::{EntityState, ShardKey};
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
    /// The event time is outside the accepted range (too far ahead of the
    /// clock, or too late behind the events already accepted): the caller's
    /// fault, nothing changed (4xx, dead letter).
    #[error("{0}")]
    EventTime(String),
    /// The store failed; nothing was acknowledged (retry later).
    #[error("the decision could not be stored: {0}")]
    Unavailable(String),
    /// Too much queued, or shutting down (retry later).
    #[error("{0}")]
    Overloaded(String),
    /// The record belongs to a shard this process does not hold (a partition
    /// that moved to another detector): not scored here.
    #[error("the entity state of {0} is not held here")]
    NotOwned(String),
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
    /// One entity state per shard, acquired and released by the caller (a
    /// detector: one per assigned partition), instead of one state over the
    /// whole store restored at start. No snapshot file is used.
    pub sharded: bool,
    /// Which event times are accepted (and how long idle entities are kept).
    pub time_policy: EventTimePolicy,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            top_reasons: 5,
            explain: ExplainPolicy::Flagged,
            max_commit_rows: 2_000,
            queue_capacity: 16_384,
            state_file: None,
            sharded: false,
            time_policy: EventTimePolicy::default(),
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

/// Most decisions kept for the retry of a failed write (about 1 KB each).
const MAX_UNWRITTEN: usize = 50_000;

/// Decisions whose write failed, kept by transaction id until the retry
/// writes them (or the store turns out to hold the transaction); beyond
/// [`MAX_UNWRITTEN`] the oldest go first.
#[derive(Default)]
struct Unwritten {
    records: FxHashMap<String, (u64, NewDecision)>,
    next: u64,
}

impl Unwritten {
    fn keep(&mut self, records: &[NewDecision]) {
        for record in records {
            if self.records.len() >= MAX_UNWRITTEN {
                // rare (tens of thousands of failed writes not retried): a scan is fine
                let oldest = self
                    .records
                    .iter()
                    .min_by_key(|(_, (seq, _))| *seq)
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    self.records.remove(&oldest);
                    metrics::counter!("fraudlens_unwritten_dropped_total").increment(1);
                }
            }
            self.next += 1;
            self.records
                .insert(record.transaction_id.clone(), (self.next, record.clone()));
        }
    }

    /// The kept decision of `id`, if it is for the same content.
    fn take(&mut self, id: &str, fingerprint: &str) -> Option<NewDecision> {
        match self.records.get(id) {
            Some((_, record)) if record.fingerprint == fingerprint => self.records.remove(id).map(|(_, record)| record),
            _ => None,
        }
    }

    fn forget(&mut self, id: &str) {
        self.records.remove(id);
    }
}

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

/// What [`Pipeline::apply_labels`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelsApplied {
    /// Labels that reached the live entity state.
    pub applied: usize,
    /// Positions (in the request) of labels whose transaction is not stored.
    pub unmatched: Vec<usize>,
}

/// Admitted transactions whose scoring and write are under way
/// ([`Pipeline::submit`]).
pub struct Submitted {
    n: usize,
    task: Result<tokio::task::JoinHandle<Vec<Result<Scored, ScoreError>>>, ScoreError>,
}

impl Submitted {
    /// The results, in the order submitted, once the decisions are stored.
    pub async fn results(self) -> Vec<Result<Scored, ScoreError>> {
        match self.task {
            Ok(task) => task
                .await
                .unwrap_or_else(|_| vec![Err(ScoreError::Unavailable("scoring task failed".to_owned())); self.n]),
            Err(error) => vec![Err(error); self.n],
        }
    }
}

/// The scoring path.
pub struct Pipeline {
    store: Arc<dyn Store>,
    model: ArcSwap<ServingModel>,
    states: Mutex<shards::States>,
    /// One shard acquisition at a time (two batches needing the same shard build it once).
    acquiring: tokio::sync::Mutex<()>,
    /// Ids observed whose write has not finished: a request racing one of
    /// them waits for its result instead of scoring the transaction again.
    in_flight: Mutex<FxHashMap<String, Arc<Slot>>>,
    /// Decisions whose write failed, by transaction id, for the retry.
    unwritten: Mutex<Unwritten>,
    writer: mpsc::Sender<writer::Message>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
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
    shard: ShardKey,
    body: String,
    fingerprint: String,
    row: Vec<f64>,
    started: Instant,
    received_at: i64,
    slot: Arc<Slot>,
    /// The decision made before, when this is the retry of a failed write.
    decided: Option<Box<NewDecision>>,
}

enum Admission {
    Fresh(Observed),
    /// The same id is being written right now: wait for it, then compare
    /// its content with this one's (fingerprint).
    Racing(Arc<Slot>, String),
    /// The engine has seen the id before: the store has its decision.
    Seen(Transaction, ShardKey, String),
    /// Refused by the event-time policy (nothing observed): unless the id is
    /// stored already (an idempotent retry of an old transaction), this error.
    Refused(String, String, ScoreError),
}

impl Pipeline {
    /// Starts the pipeline: restores the entity state (snapshot, then the
    /// transactions stored after it) and starts the writer.
    pub async fn start(
        store: Arc<dyn Store>,
        model: ServingModel,
        config: PipelineConfig,
    ) -> Result<Arc<Self>, PipelineError> {
        let mut states = shards::States::default();
        if !config.sharded {
            let held = state::restore(
                store.as_ref(),
                model.spec(),
                config.state_file.as_deref(),
                config.time_policy,
            )
            .await?;
            states.held.insert(None, held);
        }
        states.publish_gauges();
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let writer_task = tokio::spawn(writer::run(store.clone(), receiver, config.max_commit_rows.max(1)));
        Ok(Arc::new(Self {
            store,
            model: ArcSwap::from_pointee(model),
            states: Mutex::new(states),
            acquiring: tokio::sync::Mutex::new(()),
            in_flight: Mutex::new(FxHashMap::default()),
            unwritten: Mutex::new(Unwritten::default()),
            writer: sender,
            writer_task: Mutex::new(Some(writer_task)),
            closed: AtomicBool::new(false),
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

    /// Scores parsed transactions (or passes their parse errors through), in
    /// one commit, on the whole-store state.
    pub async fn score_parsed(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<Result<Transaction, ScoreError>>,
    ) -> Vec<Result<Scored, ScoreError>> {
        self.score_sharded(model, parsed.into_iter().map(|parsed| (None, parsed)).collect())
            .await
    }

    /// Scores parsed transactions, each on the state of its shard (a shard
    /// not held: [`ScoreError::NotOwned`]), in one commit.
    ///
    /// Admission (observing the new transactions) happens here; the rest —
    /// scoring, the write, answering racing requests — runs in its own task,
    /// so a caller that goes away (a client disconnecting) cannot leave an
    /// observed transaction unwritten or its racing duplicates waiting.
    pub async fn score_sharded(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Vec<Result<Scored, ScoreError>> {
        self.submit(model, parsed).results().await
    }

    /// [`Self::score_sharded`] in two steps: the transactions are observed
    /// (in order) before this returns; their scoring and write go on in a
    /// task of their own, whose results [`Submitted::results`] awaits. A
    /// caller with several batches in flight (the detector) submits them one
    /// after another, so a partition's records reach its entity state strictly
    /// in offset order whatever finishes first.
    pub fn submit(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Submitted {
        let n = parsed.len();
        let task = self.admit_all(model, parsed).map(|admissions| {
            let (this, model) = (self.clone(), model.clone());
            tokio::spawn(async move { this.complete(&model, admissions).await })
        });
        Submitted { n, task }
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
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Result<Vec<Result<Admission, ScoreError>>, ScoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ScoreError::Overloaded("the server is shutting down".to_owned()));
        }
        let received_at = now_ms();
        let started = Instant::now();
        // serialise and hash before taking the lock
        let prepared: Vec<_> = parsed
            .into_iter()
            .map(|(shard, parsed)| parsed.map(|tx| (shard, stored_form(&tx), tx)))
            .collect();
        let mut states = lock(&self.states);
        let mut in_flight = lock(&self.in_flight);
        let n_features = model.spec().feature_names().len();
        let admissions = prepared
            .into_iter()
            .map(|prepared| {
                let (shard, (body, fingerprint), tx) = prepared?;
                let Some(held) = states.held.get_mut(&shard) else {
                    return Err(ScoreError::NotOwned(shard.unwrap_or_default()));
                };
                let id = tx.id.as_str().to_owned();
                if let Some(slot) = in_flight.get(&id) {
                    return Ok(Admission::Racing(slot.clone(), fingerprint));
                }
                if held.state.has_seen(&tx) {
                    return Ok(Admission::Seen(tx, shard, fingerprint));
                }
                if let Err(error) = held.state.check_time(tx.timestamp, Some(received_at)) {
                    metrics::counter!("fraudlens_event_time_refused_total", "reason" => error.reason()).increment(1);
                    return Ok(Admission::Refused(
                        id,
                        fingerprint,
                        ScoreError::EventTime(error.to_string()),
                    ));
                }
                let mut row = Vec::with_capacity(n_features + tx.attributes.len());
                held.state.observe(&tx, &mut row);
                model.inputs.push_attributes(&tx, &mut row);
                let slot = Arc::new(Slot::default());
                in_flight.insert(id, slot.clone());
                Ok(Admission::Fresh(Observed {
                    tx,
                    shard,
                    body,
                    fingerprint,
                    row,
                    started,
                    received_at,
                    slot,
                    decided: None,
                }))
            })
            .collect();
        states.publish_gauges();
        Ok(admissions)
    }

    /// Scores observed transactions, writes them in one request to the
    /// writer, and publishes each result to requests racing it.
    async fn finish(&self, model: &ServingModel, mut observed: Vec<Observed>) -> Vec<Result<Scored, ScoreError>> {
        if observed.is_empty() {
            return Vec::new();
        }
        let records: Vec<NewDecision> = observed
            .iter_mut()
            .map(|item| {
                item.decided
                    .take()
                    .map_or_else(|| self.decide(model, item), |decided| *decided)
            })
            .collect();
        let (records, written) = self.write(records).await;
        if written.is_err() {
            // observed but not stored: a retry writes these same decisions instead of
            // observing the transactions a second time (which would count them twice)
            lock(&self.unwritten).keep(&records);
        }
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
            shard: std::mem::take(&mut item.shard),
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
            // the same id with other content in the same batch, or in a concurrent
            // request, is a conflict like a stored one — not a silent replay
            Admission::Racing(slot, fingerprint) => slot
                .wait()
                .await
                .and_then(|scored| compare_record(scored.record, &fingerprint)),
            Admission::Refused(id, fingerprint, error) => match self
                .store
                .transaction(&id)
                .await
                .map_err(|error| ScoreError::Unavailable(error.to_string()))?
            {
                Some(stored) => {
                    lock(&self.unwritten).forget(&id);
                    compare(&stored, &fingerprint)
                }
                None => Err(error),
            },
            Admission::Seen(tx, shard, fingerprint) => {
                match self
                    .store
                    .transaction(tx.id.as_str())
                    .await
                    .map_err(|error| ScoreError::Unavailable(error.to_string()))?
                {
                    Some(stored) => {
                        lock(&self.unwritten).forget(tx.id.as_str());
                        compare(&stored, &fingerprint)
                    }
                    // observed but never stored (its write failed)
                    None => self.retry_unwritten(tx, shard, fingerprint).await,
                }
            }
        }
    }

    /// A transaction the state observed but the store does not hold (its
    /// write failed): written again with the decision made the first time,
    /// or — if that decision is gone — observed and scored again (its events
    /// then count twice in the state: `fraudlens_reobserved_total`). One
    /// critical section decides, so two retries racing each other write once.
    async fn retry_unwritten(
        &self,
        tx: Transaction,
        shard: ShardKey,
        fingerprint: String,
    ) -> Result<Scored, ScoreError> {
        enum Retry {
            Racing(Arc<Slot>),
            Write(Box<Observed>),
        }
        let model = self.model.load_full();
        let expected = fingerprint.clone();
        let retry = {
            // the lock order of `admit_all`: states, then in flight
            let mut states = lock(&self.states);
            let mut in_flight = lock(&self.in_flight);
            match in_flight.get(tx.id.as_str()) {
                Some(slot) => Retry::Racing(slot.clone()),
                None => {
                    let kept = lock(&self.unwritten).take(tx.id.as_str(), &fingerprint);
                    let slot = Arc::new(Slot::default());
                    let observed = match kept {
                        Some(record) => Observed {
                            received_at: record.received_at,
                            decided: Some(Box::new(record)),
                            tx,
                            shard,
                            body: String::new(),
                            fingerprint,
                            row: Vec::new(),
                            started: Instant::now(),
                            slot: slot.clone(),
                        },
                        None => {
                            let Some(held) = states.held.get_mut(&shard) else {
                                return Err(ScoreError::NotOwned(shard.unwrap_or_default()));
                            };
                            held.state
                                .check_time(tx.timestamp, Some(now_ms()))
                                .map_err(|error| ScoreError::EventTime(error.to_string()))?;
                            metrics::counter!("fraudlens_reobserved_total").increment(1);
                            let mut row = Vec::new();
                            held.state.observe(&tx, &mut row);
                            model.inputs.push_attributes(&tx, &mut row);
                            let (body, _) = stored_form(&tx);
                            Observed {
                                tx,
                                shard,
                                body,
                                fingerprint,
                                row,
                                started: Instant::now(),
                                received_at: now_ms(),
                                slot: slot.clone(),
                                decided: None,
                            }
                        }
                    };
                    in_flight.insert(observed.tx.id.as_str().to_owned(), slot);
                    Retry::Write(Box::new(observed))
                }
            }
        };
        match retry {
            Retry::Racing(slot) => slot
                .wait()
                .await
                .and_then(|scored| compare_record(scored.record, &expected)),
            Retry::Write(observed) => self
                .finish(&model, vec![*observed])
                .await
                .pop()
                .unwrap_or_else(|| Err(ScoreError::Unavailable("no result".to_owned()))),
        }
    }

    /// Records labels and feeds those of stored transactions to the entity
    /// state that observed them (the label-delayed risk features). A label of
    /// a shard held elsewhere is stored only: its owner applies it when it
    /// next rebuilds that shard. A label whose transaction is not stored is
    /// recorded but can never reach a decision or the state: it is counted
    /// (`fraudlens_labels_unmatched_total`), logged and returned as unmatched.
    pub async fn apply_labels(&self, labels: &[NewLabel]) -> Result<LabelsApplied, StoreError> {
        let stored = self.store.put_labels(labels).await?;
        let mut result = LabelsApplied::default();
        for (idx, (label, stored)) in labels.iter().zip(stored).enumerate() {
            match stored {
                Some(stored) => result.applied += usize::from(self.apply_review_label(&stored, label.label)),
                None => result.unmatched.push(idx),
            }
        }
        if !result.unmatched.is_empty() {
            metrics::counter!("fraudlens_labels_unmatched_total").increment(result.unmatched.len() as u64);
            tracing::warn!(
                unmatched = result.unmatched.len(),
                first = labels[result.unmatched[0]].transaction_id,
                "labels for transactions that are not stored"
            );
        }
        Ok(result)
    }

    /// Feeds a review's label to the entity state that observed the transaction.
    pub fn apply_review_label(&self, stored: &StoredDecision, label: Label) -> bool {
        let shard = if self.config.sharded {
            match &stored.decision.shard {
                Some(shard) => Some(shard.clone()),
                None => return false,
            }
        } else {
            None
        };
        let mut states = lock(&self.states);
        let Some(held) = states.held.get_mut(&shard) else {
            metrics::counter!("labels_for_other_shards_total").increment(1);
            return false;
        };
        apply(held.state.as_mut(), stored, label)
    }

    /// Writes the entity-state snapshot now (if a state file is configured).
    pub async fn snapshot(&self) -> Result<(), PipelineError> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        if self.config.sharded {
            return Ok(());
        }
        let last_seq = self.store.last_seq().await?;
        let bytes = lock(&self.states)
            .held
            .get(&None)
            .and_then(|held| held.state.snapshot());
        match bytes {
            Some(bytes) => StateFile::write(path, last_seq, &bytes),
            None => Ok(()),
        }
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

    /// Whether this process holds the state of `shard`.
    pub fn holds(&self, shard: &str) -> bool {
        lock(&self.states).held.contains_key(&Some(shard.to_owned()))
    }

    /// Takes on the state of `shard` (a partition assigned to this detector):
    /// the state kept from an earlier release, or a new one, brought up to
    /// date with the store rows of that shard. Returns how many transactions
    /// were observed to get there.
    pub async fn acquire_shard(&self, shard: &str) -> Result<usize, PipelineError> {
        let _one_at_a_time = self.acquiring.lock().await;
        let key = Some(shard.to_owned());
        let parked = {
            let mut states = lock(&self.states);
            if states.held.contains_key(&key) {
                return Ok(0);
            }
            states.parked.remove(shard)
        };
        let reused = parked.is_some();
        let mut held = parked.unwrap_or_else(|| {
            let mut engine = FeatureEngine::new(self.model.load().spec().clone());
            engine.set_time_policy(self.config.time_policy);
            shards::Held {
                state: Box::new(engine),
                seq: 0,
            }
        });
        let started = Instant::now();
        let caught_up = state::catch_up(self.store.as_ref(), Some(shard), &mut held).await?;
        let observed = caught_up.observed;
        let mut states = lock(&self.states);
        states.held.insert(key, held);
        states.publish_gauges();
        tracing::info!(
            shard,
            reused,
            observed,
            refused = caught_up.refused,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "entity state acquired"
        );
        Ok(observed)
    }

    /// Stops using the state of these shards (partitions revoked); each is
    /// kept until the next [`Pipeline::retain_shards`], in case it comes back.
    pub fn release_shards(&self, shards: &[String]) {
        let mut states = lock(&self.states);
        for shard in shards {
            if let Some(held) = states.held.remove(&Some(shard.clone())) {
                states.parked.insert(shard.clone(), held);
            }
        }
        states.publish_gauges();
    }

    /// Drops the released states of shards other than `assigned` (the new
    /// assignment), and releases held shards not in it.
    pub fn retain_shards(&self, assigned: &[String]) {
        let mut states = lock(&self.states);
        let keep = |shard: &str| assigned.iter().any(|assigned| assigned == shard);
        states.held.retain(|shard, _| shard.as_deref().is_none_or(keep));
        states.parked.retain(|shard, _| keep(shard));
        states.publish_gauges();
    }

    /// Entities in the state (for readiness and metrics).
    pub fn n_entities(&self) -> usize {
        lock(&self.states).n_entities()
    }
}

fn compare(stored: &StoredDecision, fingerprint: &str) -> Result<Scored, ScoreError> {
    compare_record(stored.decision.clone(), fingerprint)
}

/// The decision of an id seen before, as a replay if the content is the same.
fn compare_record(record: NewDecision, fingerprint: &str) -> Result<Scored, ScoreError> {
    if record.fingerprint == fingerprint {
        Ok(Scored { record, replayed: true })
    } else {
        Err(ScoreError::Conflict(record.transaction_id))
    }
}

fn apply(state: &mut dyn EntityState, stored: &StoredDecision, label: Label) -> bool {
    match serde_json::from_str::<Transaction>(&stored.decision.body) {
        Ok(tx) => state.apply_label(&tx, label),
        Err(error) => {
            tracing::warn!(%error, id = stored.decision.transaction_id, "stored transaction unreadable");
            false
        }
    }
}
