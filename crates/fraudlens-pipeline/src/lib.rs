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
//! - **Promotions reach every process.** [`ModelWatch`] follows the store's
//!   production model (notifications, and a poll), with the same checks as a
//!   live promotion ([`Pipeline::promote`]); both hold one promotion lock.
//! - **Entity state survives restarts**: a snapshot at shutdown (and on
//!   demand), and on start the transactions stored after it are replayed.
//! - **Sharded state for detectors** ([`PipelineConfig::sharded`]): one state
//!   per assigned partition, rebuilt from the store when acquired
//!   ([`Pipeline::acquire_shard`]) and dropped when the partition is gone
//!   ([`Pipeline::release_shards`], [`Pipeline::retain_shards`]); see [`EntityState`].
//!
//! Modules, each one concept of [`Pipeline`]: `admission` (new or repeated
//! id: idempotency, racing requests, fingerprints, the stash of unwritten
//! decisions), `scoring` (the decision records and their write), `writer`
//! (group commit), `drift` (the live drift of the last decisions), `shadow`
//! (the shadow model), [`outcomes`] (the rolling precision of flagged
//! decisions), [`artifacts`] (models on object storage), `shards`
//! (entity-state shards and their lifecycle),
//! `state` (restore and snapshot), `labels`, [`registry`] (register, promote,
//! roll back models), [`retrain`] (rows from the stored decisions, champion/challenger
//! comparisons on them), `watch` (following the registry's production model), `model` and `contract` (the decision as callers see it).

mod admission;
pub mod artifacts;
pub mod backup;
mod contract;
pub mod drift;
pub mod eth;
mod events;
mod labels;
mod model;
pub mod outcomes;
pub mod registry;
pub mod retrain;
mod rows;
mod scoring;
mod shadow;
mod shards;
mod shared;
mod state;
mod watch;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use fraudlens_core::Timestamp;
use fraudlens_features::EventTimePolicy;
use fraudlens_store::{Store, StoreError};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use contract::DecisionView;
pub use labels::LabelsApplied;
pub use model::{Reads, ServingModel, publish_model_info};
pub use rows::{FeatureRow, RowColumns, RowInputs, random_row_id};
pub use scoring::{Records, Scored, Submitted};
pub use shards::{EntityState, ShardKey};
pub use state::StateFile;
pub use watch::{ModelWatch, SwapSource, WatchConfig};

use admission::{Slot, Unwritten};

/// Why the pipeline cannot start or change.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The model cannot be loaded or does not fit.
    #[error("model: {0}")]
    Model(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shared entity state failed.
    #[error(transparent)]
    SharedState(#[from] fraudlens_state::StateError),
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
    /// The entity state shared with other processes (Redis), instead of one
    /// held in this process: no snapshot, no rebuild from the store at start.
    pub shared_state: Option<fraudlens_state::SharedState>,
    /// How the live drift of the inputs and the score is read.
    pub drift: fraudlens_model::drift::DriftSettings,
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
            shared_state: None,
            drift: fraudlens_model::drift::DriftSettings::default(),
        }
    }
}

/// Longest wait at shutdown for the queued decisions to commit.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait at shutdown for the shadow model's queued scores.
const SHADOW_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The scoring path.
pub struct Pipeline {
    store: Arc<dyn Store>,
    model: ArcSwap<ServingModel>,
    states: Mutex<shards::States>,
    /// One shard acquisition at a time (two batches needing the same shard build it once).
    acquiring: tokio::sync::Mutex<()>,
    /// Held across a promotion's store change and its swap, and by the
    /// registry watcher across its read and swap: the serving model ends as
    /// the store's production model whatever the interleaving.
    promoting: tokio::sync::Mutex<()>,
    /// Ids observed whose write has not finished: a request racing one of
    /// them waits for its result instead of scoring the transaction again.
    in_flight: Mutex<FxHashMap<String, Arc<Slot>>>,
    /// Decisions whose write failed, by transaction id, for the retry.
    unwritten: Mutex<Unwritten>,
    writer: mpsc::Sender<writer::Message>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    /// The shared state was found not built: a rebuild is to be started.
    shared_lost: AtomicBool,
    /// With a shared state, the queue of the process's one admission task
    /// (`shared.rs`): concurrent batches are admitted together, one at a time.
    admitter: std::sync::OnceLock<mpsc::Sender<shared::Job>>,
    /// The last decisions' inputs and scores against the serving model's reference.
    drift: drift::LiveDrift,
    /// The shadow model scoring the stored decisions beside production.
    shadow: shadow::Shadow,
    config: PipelineConfig,
}

/// Wall-clock time: when a record was received, reviewed, labelled (the
/// store itself reads no clock).
pub fn now() -> Timestamp {
    Timestamp::from_millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64),
    )
}

/// [`now`] in milliseconds since the epoch, for the engine APIs that take
/// the wall clock as a number ([`fraudlens_features::FeatureEngine::check_time`]).
pub fn now_ms() -> i64 {
    now().as_millis()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding the lock leaves data that is still consistent
    // (every critical section is a single engine call or map update)
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let mut config = config;
        let spec = model.spec().cloned();
        if spec.is_none() && (config.shared_state.is_some() || config.sharded) {
            tracing::info!("the model reads feature rows: no entity state is kept");
            config.shared_state = None;
        }
        if let Some(spec) = spec.filter(|_| config.shared_state.is_some()) {
            // a scratch engine: each batch loads its entities from the shared state
            let mut engine = fraudlens_features::FeatureEngine::new(spec);
            engine.set_time_policy(config.time_policy);
            engine.set_sweep_interval(i64::MAX / 4);
            states.held.insert(
                None,
                shards::Held {
                    state: Box::new(engine),
                    seq: 0,
                },
            );
        } else if let Some(spec) = model.spec().filter(|_| !config.sharded) {
            let held = state::restore(store.as_ref(), spec, config.state_file.as_deref(), config.time_policy).await?;
            states.held.insert(None, held);
        }
        states.publish_gauges();
        scoring::export_counters(store.backend());
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let writer_task = tokio::spawn(writer::run(store.clone(), receiver, config.max_commit_rows.max(1)));
        let pipeline = Arc::new(Self {
            store: store.clone(),
            model: ArcSwap::from_pointee(model),
            states: Mutex::new(states),
            acquiring: tokio::sync::Mutex::new(()),
            promoting: tokio::sync::Mutex::new(()),
            in_flight: Mutex::new(FxHashMap::default()),
            unwritten: Mutex::new(Unwritten::default()),
            writer: sender,
            writer_task: Mutex::new(Some(writer_task)),
            closed: AtomicBool::new(false),
            shared_lost: AtomicBool::new(false),
            admitter: std::sync::OnceLock::new(),
            drift: drift::LiveDrift::new(config.drift.clone()),
            shadow: shadow::Shadow::start(store.clone()),
            config,
        });
        outcomes::start(&pipeline);
        if let Some(shared) = pipeline.config.shared_state.clone() {
            let _ = pipeline.admitter.set(shared::start_admitter(&pipeline, shared.clone()));
            pipeline.ensure_shared_built(&shared).await?;
            // a lost state is rebuilt even when no batch comes to notice it (a
            // load balancer sends nothing to replicas that are not ready)
            let watched = Arc::downgrade(&pipeline);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let Some(pipeline) = watched.upgrade() else { break };
                    if pipeline.closed.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(false) = shared.is_built().await {
                        pipeline.shared_lost.store(true, Ordering::Release);
                        pipeline.rebuild_if_lost();
                    }
                }
            });
        }
        Ok(pipeline)
    }

    /// Whether [`Self::shutdown`] has begun: no new records are taken.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The store behind the pipeline.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the shared entity state answers and is built (always, when
    /// the state is in process); else why not, in words fit for a caller.
    pub async fn ping_shared_state(&self) -> Result<(), &'static str> {
        let Some(shared) = &self.config.shared_state else {
            return Ok(());
        };
        match shared.is_built().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("being rebuilt from the store"),
            Err(error) => {
                tracing::warn!(%error, "readiness: shared entity state unreachable");
                Err("unreachable")
            }
        }
    }

    /// The serving model.
    pub fn model(&self) -> Arc<ServingModel> {
        self.model.load_full()
    }

    /// The drift of the last stored decisions (at most [`drift::WINDOW`])
    /// against the serving model's reference, with its version; `None` when
    /// the model keeps no reference.
    pub fn live_drift(&self) -> Option<(String, fraudlens_model::drift::DriftReport)> {
        self.drift.report(&self.model())
    }

    /// Replaces the serving model, if it fits the running entity state, and
    /// publishes it ([`publish_model_info`]).
    pub fn swap_model(&self, model: ServingModel) -> Result<(), PipelineError> {
        self.model.load().check_replacement(&model)?;
        tracing::info!(version = model.version(), "serving model replaced");
        let model = Arc::new(model);
        self.model.store(model.clone());
        publish_model_info(&model);
        // the shadow model promoted serves: it no longer shadows
        if self
            .shadow
            .model()
            .is_some_and(|shadow| shadow.version() == model.version())
        {
            self.shadow.set(None);
        }
        Ok(())
    }

    /// The shadow model, if one is set.
    pub fn shadow_model(&self) -> Option<Arc<ServingModel>> {
        self.shadow.model()
    }

    /// Sets the shadow model (`None`: ends shadowing). It must read exactly
    /// the serving model's rows ([`ServingModel::reads_same_rows`]): it
    /// scores the feature vectors the serving model decided on.
    pub fn set_shadow(&self, model: Option<ServingModel>) -> Result<(), PipelineError> {
        if let Some(model) = &model {
            let serving = self.model();
            if model.version() == serving.version() {
                return Err(PipelineError::Model(format!(
                    "model {} is the serving model: a shadow scores beside it",
                    model.version()
                )));
            }
            if !serving.reads_same_rows(model) {
                return Err(PipelineError::Model(format!(
                    "model {} reads other inputs than the serving model {}: a shadow scores the serving \
                     model's feature vectors (retrain it with the production model's features)",
                    model.version(),
                    serving.version()
                )));
            }
        }
        self.shadow.set(model);
        Ok(())
    }

    /// Waits (at most 30 s) until the shadow model has scored what was
    /// queued for it and its scores are written (or failed to be).
    pub async fn flush_shadow(&self) {
        self.shadow.flush(Duration::from_secs(30)).await;
    }

    /// Writes the entity-state snapshot now (if a state file is configured).
    pub async fn snapshot(&self) -> Result<(), PipelineError> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        if self.config.sharded || self.config.shared_state.is_some() {
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
            match tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, flushed).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::warn!("the writer stopped before the final flush"),
                Err(_) => tracing::error!(
                    seconds = SHUTDOWN_FLUSH_TIMEOUT.as_secs(),
                    "decisions still queued at shutdown were not flushed in time"
                ),
            }
        }
        let snapshot = self.snapshot().await;
        // a slow shadow does not hold up a shutdown long: what it has not scored is dropped
        self.shadow.flush(SHADOW_FLUSH_TIMEOUT).await;
        let task = lock(&self.writer_task).take();
        if let Some(task) = task {
            task.abort();
        }
        snapshot
    }
}
