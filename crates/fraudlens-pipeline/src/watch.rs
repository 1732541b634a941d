//! Following the registry: a promotion or rollback made by any process on
//! the store (another replica's API, the CLI) reaches this pipeline's serving
//! model.
//!
//! One task per pipeline ([`ModelWatch::start`]) reads the registry's
//! production version when the store announces a promotion
//! ([`Store::model_changes`](fraudlens_store::Store::model_changes):
//! PostgreSQL `LISTEN/NOTIFY`, sent at commit) and, on every backend, every
//! `poll_interval` (the fallback for SQLite, and for announcements lost while
//! the listening connection was down; the listener is re-subscribed with a
//! backoff). When the production version is not the one serving, it is loaded
//! and swapped in by the same rule as a live promotion: the artifact loads,
//! its content digest is the registered one and it fits the running entity
//! state; otherwise the current model keeps serving, and the refusal is
//! logged and counted once per promotion
//! (`fraudlens_model_swap_refused_total`). Swaps are counted by what found
//! them: `fraudlens_model_swaps_total{source="notify|poll|api"}`.
//!
//! The check and the swap run under the pipeline's promotion lock, the one
//! [`Pipeline::promote`] holds across the store's promotion and its swap, so
//! the registry is re-read after any promotion in flight has finished: after
//! both, the serving model is the store's production model.

use std::sync::Arc;
use std::time::Duration;

use fraudlens_core::{Secret, Timestamp};
use fraudlens_store::{ModelChange, ModelChanges, ModelEntry, ModelStage};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::Pipeline;
use crate::registry::{self, RegistryError};

/// How a [`ModelWatch`] follows the registry.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// How often the registry's production version is read (the fallback of
    /// notifications, and the only way on SQLite).
    pub poll_interval: Duration,
    /// The key card numbers are hashed with (a model is loaded with it).
    pub card_hash_key: Option<Secret>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            card_hash_key: None,
        }
    }
}

/// What found a change of the production model (the `source` label of
/// `fraudlens_model_swaps_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapSource {
    /// A notification from the store.
    Notify,
    /// The periodic read of the registry.
    Poll,
    /// A promotion through this process's own API ([`Pipeline::promote`]).
    Api,
}

impl SwapSource {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Poll => "poll",
            Self::Api => "api",
        }
    }
}

/// Counts and logs a swap of the serving model.
pub(crate) fn swapped(source: SwapSource, version: &str) {
    metrics::counter!("fraudlens_model_swaps_total", "source" => source.as_str()).increment(1);
    tracing::info!(version, source = source.as_str(), "serving model swapped");
}

/// The running watcher task; stopped by [`ModelWatch::stop`] (or when dropped).
pub struct ModelWatch {
    /// Sent or dropped: the task returns at its next wait.
    stop: oneshot::Sender<()>,
    /// The task (`run`).
    task: tokio::task::JoinHandle<()>,
}

impl ModelWatch {
    /// Starts following the registry of `pipeline`'s store: at once (a
    /// promotion made while this process started is picked up), then on
    /// every announcement and every `config.poll_interval`.
    pub fn start(pipeline: Arc<Pipeline>, config: WatchConfig) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(pipeline, config, stopped));
        Self { stop, task }
    }

    /// Stops the task and waits for it. It is aborted rather than asked,
    /// so a store that hangs cannot hold up a shutdown; an abort lands on an
    /// await (reading the registry, loading an artifact), never inside a
    /// swap, which awaits nothing.
    pub async fn stop(self) {
        // the task may have ended already
        let _ = self.stop.send(());
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Longest wait between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The production model last refused: not loaded again until the registry
/// names another promotion (one log line and one count per refusal, not one
/// per poll).
type Refused = Option<(String, Option<Timestamp>)>;

/// What this process did with the registry's shadow: the setting
/// (version, `shadow_since`) last applied, and the one last refused with
/// the production model it was refused beside (a promotion may make it
/// fit, a new setting of the same version is tried again).
#[derive(Default)]
struct ShadowFollowed {
    applied: Option<(String, Option<Timestamp>)>,
    refused: Option<(String, Option<Timestamp>, String)>,
}

async fn run(pipeline: Arc<Pipeline>, config: WatchConfig, mut stopped: oneshot::Receiver<()>) {
    let mut listening = Listening::default();
    listening.subscribe(&pipeline).await;
    let mut poll = tokio::time::interval(config.poll_interval.max(Duration::from_millis(10)));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refused: Refused = None;
    let mut shadow = ShadowFollowed::default();
    let mut store_failing = false;
    loop {
        let woken = tokio::select! {
            _ = &mut stopped => return,
            _ = poll.tick() => Woken::Poll,
            woken = listening.next() => woken,
        };
        let source = match woken {
            Woken::Poll => SwapSource::Poll,
            Woken::Change(Some(ModelChange::Promoted(_))) => SwapSource::Notify,
            // announcements may have been missed: read the registry now
            Woken::Change(Some(ModelChange::Reconnected)) => SwapSource::Poll,
            Woken::Change(None) => {
                listening.lost();
                continue;
            }
            Woken::Retry => {
                listening.subscribe(&pipeline).await;
                if listening.changes.is_none() {
                    continue;
                }
                // listening again: read what was missed meanwhile
                SwapSource::Poll
            }
        };
        match follow(&pipeline, &config, source, &mut refused, &mut shadow).await {
            Ok(()) => store_failing = false,
            Err(error) => {
                if !store_failing {
                    tracing::warn!(%error, "model watch: reading the registry failed");
                }
                store_failing = true;
            }
        }
    }
}

/// Why the watcher woke up.
enum Woken {
    /// The poll interval passed.
    Poll,
    /// The store announced something (`None`: listening stopped).
    Change(Option<ModelChange>),
    /// Time to listen again after a loss.
    Retry,
}

/// The subscription to the store's announcements, and when to try again
/// after it was lost.
#[derive(Default)]
struct Listening {
    /// Listening (`None`: not, or the store cannot announce: SQLite).
    changes: Option<ModelChanges>,
    /// When to subscribe again (after a loss).
    retry_at: Option<Instant>,
    /// The wait before the last retry (doubled each time, up to [`MAX_BACKOFF`]).
    backoff: Duration,
}

impl Listening {
    async fn subscribe(&mut self, pipeline: &Pipeline) {
        match pipeline.store().model_changes().await {
            Ok(Some(changes)) => {
                if self.retry_at.is_some() {
                    tracing::info!("model watch: listening to promotions again");
                }
                self.changes = Some(changes);
                self.retry_at = None;
                self.backoff = Duration::ZERO;
            }
            // SQLite: the poll alone
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "model watch: cannot listen to promotions; polling the registry");
                self.schedule_retry();
            }
        }
    }

    /// The next announcement, or the time to listen again; pending forever
    /// when neither can come.
    async fn next(&mut self) -> Woken {
        match (&mut self.changes, self.retry_at) {
            (Some(changes), _) => Woken::Change(changes.next().await),
            (None, Some(at)) => {
                tokio::time::sleep_until(at).await;
                Woken::Retry
            }
            (None, None) => std::future::pending().await,
        }
    }

    fn lost(&mut self) {
        tracing::warn!("model watch: listening to promotions stopped; polling the registry");
        self.changes = None;
        self.schedule_retry();
    }

    fn schedule_retry(&mut self) {
        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        self.retry_at = Some(Instant::now() + self.backoff);
    }
}

/// Serves the registry's production model if it is not the one serving,
/// then follows its shadow model: under the promotion lock, the registry
/// read, the checks and the swap. A refusal is logged, counted and
/// remembered in `refused` or `shadow` (it is `Ok`); an error is the
/// store's.
async fn follow(
    pipeline: &Pipeline,
    config: &WatchConfig,
    source: SwapSource,
    refused: &mut Refused,
    shadow: &mut ShadowFollowed,
) -> Result<(), RegistryError> {
    let _promoting = pipeline.promoting.lock().await;
    let models = pipeline.store().models().await?;
    follow_production(pipeline, config, source, refused, &models).await?;
    follow_shadow(pipeline, config, shadow, &models).await
}

/// Sets the registry's shadow model if this process has not applied that
/// setting (a new setting of the same version too: one switched off here is
/// tried again), or ends shadowing, by the same checks as a promotion plus
/// [`Pipeline::set_shadow`]'s.
async fn follow_shadow(
    pipeline: &Pipeline,
    config: &WatchConfig,
    followed: &mut ShadowFollowed,
    models: &[ModelEntry],
) -> Result<(), RegistryError> {
    let wanted = models.iter().find(|m| m.shadow);
    let current = pipeline.shadow_model().map(|model| model.version().to_owned());
    let Some(wanted) = wanted else {
        if current.is_some() {
            let _ = pipeline.set_shadow(None);
        }
        *followed = ShadowFollowed::default();
        return Ok(());
    };
    let key = (wanted.version.clone(), wanted.shadow_since);
    if current.as_deref() == Some(wanted.version.as_str()) {
        match &followed.applied {
            Some(applied) if *applied == key => return Ok(()),
            // set through this process's own API: adopted as it is
            None => {
                followed.applied = Some(key);
                return Ok(());
            }
            // set again since: applied again below
            Some(_) => {}
        }
    }
    let refusal = (key.0.clone(), key.1, pipeline.model().version().to_owned());
    if followed.refused.as_ref() == Some(&refusal) {
        return Ok(());
    }
    let set = match registry::load(wanted, config.card_hash_key.as_ref()).await {
        Ok(model) => pipeline.set_shadow(Some(model)).map_err(RegistryError::Replacement),
        Err(error) => Err(error),
    };
    match set {
        Ok(()) => {
            followed.applied = Some(key);
            followed.refused = None;
            Ok(())
        }
        Err(RegistryError::Store(error)) => Err(RegistryError::Store(error)),
        Err(error) => {
            metrics::counter!("fraudlens_shadow_refused_total").increment(1);
            tracing::warn!(version = wanted.version, %error, "shadow model refused");
            // a shadow refused is none: the one before stops too
            let _ = pipeline.set_shadow(None);
            followed.applied = None;
            followed.refused = Some(refusal);
            Ok(())
        }
    }
}

/// Serves the registry's production model if it is not the one serving.
async fn follow_production(
    pipeline: &Pipeline,
    config: &WatchConfig,
    source: SwapSource,
    refused: &mut Refused,
    models: &[ModelEntry],
) -> Result<(), RegistryError> {
    let Some(production) = models.iter().find(|m| m.stage == ModelStage::Production) else {
        return Ok(());
    };
    if production.version == pipeline.model().version() {
        *refused = None;
        return Ok(());
    }
    let key = (production.version.clone(), production.promoted_at);
    if refused.as_ref() == Some(&key) {
        return Ok(());
    }
    let checked = match registry::load(production, config.card_hash_key.as_ref()).await {
        Ok(model) => pipeline.swap_model(model).map_err(RegistryError::Replacement),
        Err(error) => Err(error),
    };
    match checked {
        Ok(()) => {
            *refused = None;
            swapped(source, pipeline.model().version());
            Ok(())
        }
        Err(RegistryError::Store(error)) => Err(RegistryError::Store(error)),
        Err(error) => {
            metrics::counter!("fraudlens_model_swap_refused_total").increment(1);
            tracing::warn!(
                version = production.version,
                serving = pipeline.model().version(),
                %error,
                "promoted model refused: the current model keeps serving"
            );
            *refused = Some(key);
            Ok(())
        }
    }
}
