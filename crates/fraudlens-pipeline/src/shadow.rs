//! Shadow scoring: a registered model scores every stored decision beside
//! the production model, off the decision path.
//!
//! ```text
//! write() ─► decisions committed ─► offer(): try_send ─► shadow thread (niced): score each row
//!                                      │ full: dropped, counted          │
//!                                      ▼                                ▼
//!                            the request is answered          writer task ─► shadow_scores (batched)
//! ```
//!
//! - **Never changes a decision.** The shadow reads the feature vector the
//!   production model decided on, after that decision was stored; its
//!   verdict goes to its own table (`shadow_scores`), never to the caller.
//! - **Never on the decision path.** [`Shadow::offer`] only tries to queue
//!   (a bounded queue of [`QUEUE_BATCHES`] batches and [`QUEUE_ROWS`] rows):
//!   when the shadow falls behind, its batches are dropped and counted
//!   (`fraudlens_shadow_dropped_total`), never waited for. Scoring runs on a
//!   thread of its own at a lower CPU priority (nice [`NICE`]), so on a busy
//!   machine the decision path gets the cores first.
//! - **A failing shadow fails nothing.** A panic or an error while scoring
//!   is caught and counted (`fraudlens_shadow_errors_total{kind}`); after
//!   [`TRIP_AFTER`] failures in a row the shadow is switched off for this
//!   process (logged; set it again to retry: every setting, of the same
//!   model too, is a new generation, and batches queued under an older one
//!   are dropped, so ending or replacing a shadow stops its work at once). Storing its scores is best
//!   effort too: a failed write is logged once per streak and counted
//!   (`fraudlens_shadow_write_failures_total`).
//! - **Same rows only.** A shadow must read exactly the rows the production
//!   model reads (the same inputs: [`ServingModel::reads_same_rows`]); when a
//!   promotion changes them, the shadow is skipped and counted
//!   (`fraudlens_shadow_skipped_total`) until the registry names another.
//!
//! Scores are written in batches of up to [`WRITE_ROWS`] rows, each at most
//! [`WRITE_EVERY`] after it was scored, by a task of their own: never by the
//! decisions' writer, and on SQLite into a database file of their own
//! (`fraudlens_store`), so that no decision commit waits for a shadow write
//! (measured with `bench/shadow_p99.sh`: as a second writer of one SQLite
//! file they made decision commits sleep in the busy handler; inside the
//! decisions' writer they lengthened every commit). At shutdown the shadow gets
//! 5 s (after the entity-state snapshot); what it has not written by then
//! is dropped. `fraudlens_shadow_agreement` is the share of the
//! last [`AGREEMENT_WINDOW`] shadowed decisions on which both models decided
//! the same.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use fraudlens_core::{Decision, Timestamp};
use fraudlens_store::{NewDecision, ShadowScore, Store};
use tokio::sync::{mpsc, oneshot};

use crate::{ServingModel, lock, now};

/// Batches waiting for the shadow thread (beyond: dropped).
pub const QUEUE_BATCHES: usize = 1024;

/// Rows waiting for the shadow thread (beyond: dropped), whatever the batches.
pub const QUEUE_ROWS: usize = 100_000;

/// Scores per write of the shadow's table.
pub const WRITE_ROWS: usize = 500;

/// Longest time scored rows wait to be written.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Failures in a row after which the shadow is switched off.
pub const TRIP_AFTER: u32 = 100;

/// Decisions over which the agreement gauge is computed.
pub const AGREEMENT_WINDOW: usize = 10_000;

/// The shadow thread's nice value (0 is the decision path's; 19 the lowest priority).
pub const NICE: i32 = 10;

/// One stored decision to score.
struct Row {
    transaction_id: String,
    event_time: Timestamp,
    features: Vec<f64>,
    /// Production's decision.
    decision: Decision,
}

enum Message {
    Score {
        model: Arc<ServingModel>,
        /// The setting it was queued under ([`Shared::generation`]).
        generation: u64,
        rows: Vec<Row>,
    },
    Flush(oneshot::Sender<()>),
}

/// What the decision path and the shadow thread share.
#[derive(Default)]
struct Shared {
    /// Incremented by every setting of the shadow model: batches queued
    /// under an older one are dropped, and a model switched off is tried
    /// again when set again.
    generation: AtomicU64,
    /// The current setting was switched off after failing ([`TRIP_AFTER`]).
    off: AtomicBool,
    /// Rows queued and not yet scored.
    queued: AtomicUsize,
}

enum Written {
    Scores(Vec<ShadowScore>),
    Flush(oneshot::Sender<()>),
}

/// A pipeline's shadow model and its scoring thread.
pub(crate) struct Shadow {
    model: ArcSwapOption<ServingModel>,
    /// The last (production, shadow) versions checked, and whether they read the same rows.
    checked: Mutex<Option<(String, String, bool)>>,
    shared: Arc<Shared>,
    sender: SyncSender<Message>,
}

impl Shadow {
    /// Starts the scoring thread and the task writing its scores to `store`
    /// (on the current runtime). Both end when this is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_BATCHES);
        let (written, scores) = mpsc::channel(4);
        tokio::spawn(write_scores(store, scores));
        let fault = Fault::from_env();
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("fraudlens-shadow".to_owned())
            .spawn(move || score_rows(&receiver, &written, &thread_shared, &fault));
        if let Err(error) = spawned {
            // the receiver is gone with the closure: offers fail and count as dropped
            tracing::error!(%error, "the shadow thread did not start: no shadow scores");
        }
        Self {
            model: ArcSwapOption::empty(),
            checked: Mutex::new(None),
            shared,
            sender,
        }
    }

    /// The shadow model, if any.
    pub(crate) fn model(&self) -> Option<Arc<ServingModel>> {
        self.model.load_full()
    }

    /// Sets (or, `None`, ends) the shadow model: a new setting, even of the
    /// same model (one switched off is tried again; what was queued before
    /// is dropped).
    pub(crate) fn set(&self, model: Option<ServingModel>) {
        let version = model.as_ref().map(|model| model.version().to_owned());
        self.model.store(model.map(Arc::new));
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.shared.off.store(false, Ordering::Release);
        *lock(&self.checked) = None;
        metrics::gauge!("fraudlens_shadow_agreement").set(f64::NAN);
        match version {
            Some(version) => tracing::info!(version, "shadow model set"),
            None => tracing::info!("shadow model ended"),
        }
    }

    /// Queues the decisions of `production` among `records` (stored ones)
    /// for the shadow model, if there is one that reads the same rows;
    /// never waits.
    pub(crate) fn offer<'a>(&self, production: &ServingModel, records: impl Iterator<Item = &'a NewDecision>) {
        let Some(model) = self.model.load_full() else { return };
        if self.shared.off.load(Ordering::Acquire) {
            return;
        }
        // the setting read before the model is read again: a batch never carries a newer model's generation
        let generation = self.shared.generation.load(Ordering::Acquire);
        // on the decision path: every check before a vector is copied
        let records: Vec<&NewDecision> = records
            .filter(|record| record.model_version == production.version())
            .collect();
        let n = records.len();
        if n == 0 {
            return;
        }
        if !self.reads_same_rows(production, &model) {
            metrics::counter!("fraudlens_shadow_skipped_total").increment(n as u64);
            return;
        }
        if self.shared.queued.fetch_add(n, Ordering::AcqRel) + n > QUEUE_ROWS {
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
            metrics::counter!("fraudlens_shadow_dropped_total").increment(n as u64);
            return;
        }
        let rows: Vec<Row> = records
            .into_iter()
            .map(|record| Row {
                transaction_id: record.transaction_id.clone(),
                event_time: record.event_time,
                features: record.features.clone(),
                decision: record.decision,
            })
            .collect();
        match self.sender.try_send(Message::Score {
            model,
            generation,
            rows,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(n, Ordering::AcqRel);
                metrics::counter!("fraudlens_shadow_dropped_total").increment(n as u64);
            }
        }
    }

    /// Whether `shadow` reads `production`'s rows (remembered per pair;
    /// a mismatch is logged once per pair).
    fn reads_same_rows(&self, production: &ServingModel, shadow: &ServingModel) -> bool {
        let mut checked = lock(&self.checked);
        if let Some((p, s, same)) = checked.as_ref()
            && p == production.version()
            && s == shadow.version()
        {
            return *same;
        }
        let same = production.reads_same_rows(shadow);
        if !same {
            tracing::warn!(
                shadow = shadow.version(),
                production = production.version(),
                "the shadow model reads other inputs than the production model: it is skipped"
            );
        }
        *checked = Some((production.version().to_owned(), shadow.version().to_owned(), same));
        same
    }

    /// Waits (at most `timeout`, the wait for room in a full queue
    /// included) until every row queued so far is scored and its score
    /// written (or failed to be).
    pub(crate) async fn flush(&self, timeout: Duration) {
        let (reply, done) = oneshot::channel();
        let sender = self.sender.clone();
        let flushed = async move {
            // the queue may be full: wait for room off the async threads
            let queued = tokio::task::spawn_blocking(move || sender.send(Message::Flush(reply)).is_ok()).await;
            if matches!(queued, Ok(true)) {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(timeout, flushed).await.is_err() {
            tracing::warn!(
                seconds = timeout.as_secs(),
                "shadow scores still queued were not written in time: they are dropped"
            );
        }
    }
}

/// The shadow thread: scores each queued batch of the current setting,
/// passes the scores to the writer.
fn score_rows(receiver: &Receiver<Message>, written: &mpsc::Sender<Written>, shared: &Shared, fault: &Fault) {
    lower_priority();
    let mut failures = 0u32;
    // the setting the failures and the agreement count
    let mut counted = u64::MAX;
    let mut agreement = Agreement::default();
    while let Ok(message) = receiver.recv() {
        let (model, generation, rows) = match message {
            Message::Flush(reply) => {
                if written.blocking_send(Written::Flush(reply)).is_err() {
                    return;
                }
                continue;
            }
            Message::Score {
                model,
                generation,
                rows,
            } => (model, generation, rows),
        };
        shared.queued.fetch_sub(rows.len(), Ordering::AcqRel);
        // queued under an older setting (ended, replaced, set again), or switched off: not scored
        if generation != shared.generation.load(Ordering::Acquire) || shared.off.load(Ordering::Acquire) {
            continue;
        }
        if generation != counted {
            counted = generation;
            failures = 0;
            agreement = Agreement::default();
        }
        let n = rows.len();
        let mut scores = Vec::with_capacity(n);
        for (idx, row) in rows.into_iter().enumerate() {
            let started = Instant::now();
            let scored = catch_unwind(AssertUnwindSafe(|| {
                fault.apply();
                model.artifact.score(&row.features)
            }));
            let failed = match scored {
                Ok(Ok(score)) if score.ranking().is_finite() => {
                    failures = 0;
                    agreement.push(score.decision == row.decision);
                    scores.push(ShadowScore {
                        model_version: model.version().to_owned(),
                        transaction_id: row.transaction_id,
                        event_time: row.event_time,
                        score: score.ranking(),
                        probability: score.probability,
                        decision: score.decision,
                        scored_at: now(),
                        latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
                    });
                    continue;
                }
                Ok(Ok(_)) => "not_finite",
                Ok(Err(error)) => {
                    if failures == 0 {
                        tracing::warn!(version = model.version(), %error, "the shadow model failed to score");
                    }
                    "error"
                }
                Err(_) => {
                    if failures == 0 {
                        tracing::warn!(version = model.version(), "the shadow model panicked while scoring");
                    }
                    "panic"
                }
            };
            metrics::counter!("fraudlens_shadow_errors_total", "kind" => failed).increment(1);
            failures += 1;
            if failures >= TRIP_AFTER {
                tracing::error!(
                    version = model.version(),
                    failures,
                    "the shadow model failed on every row: switched off in this process \
                     (`fraudlens models shadow VERSION` again to retry)"
                );
                metrics::counter!("fraudlens_shadow_switched_off_total").increment(1);
                metrics::counter!("fraudlens_shadow_dropped_total").increment((n - idx - 1) as u64);
                // unless set again meanwhile
                if generation == shared.generation.load(Ordering::Acquire) {
                    shared.off.store(true, Ordering::Release);
                }
                break;
            }
        }
        metrics::counter!("fraudlens_shadow_scored_total").increment(scores.len() as u64);
        if let Some(share) = agreement.share() {
            metrics::gauge!("fraudlens_shadow_agreement").set(share);
        }
        if !scores.is_empty() && written.blocking_send(Written::Scores(scores)).is_err() {
            return;
        }
    }
}

/// The writer task: stores the scores in batches of at most [`WRITE_ROWS`],
/// each score at most [`WRITE_EVERY`] after it arrived.
async fn write_scores(store: Arc<dyn Store>, mut scores: mpsc::Receiver<Written>) {
    let mut pending: Vec<ShadowScore> = Vec::new();
    // when the oldest pending score must be written
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut failing = false;
    loop {
        let next = match deadline {
            Some(at) => tokio::time::timeout_at(at, scores.recv()).await,
            None => Ok(scores.recv().await),
        };
        let mut reply = None;
        let last = match next {
            Ok(Some(Written::Scores(batch))) => {
                pending.extend(batch);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + WRITE_EVERY);
                if pending.len() < WRITE_ROWS {
                    continue;
                }
                false
            }
            Ok(Some(Written::Flush(flushed))) => {
                reply = Some(flushed);
                false
            }
            Ok(None) => true,
            Err(_elapsed) => false,
        };
        for chunk in pending.chunks(WRITE_ROWS) {
            match store.put_shadow_scores(chunk).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("shadow scores are stored again");
                    }
                    failing = false;
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, rows = chunk.len(), "storing shadow scores failed: they are dropped");
                    }
                    failing = true;
                    metrics::counter!("fraudlens_shadow_write_failures_total").increment(chunk.len() as u64);
                }
            }
        }
        pending.clear();
        deadline = None;
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
        if last {
            return;
        }
    }
}

/// The share of the last [`AGREEMENT_WINDOW`] decisions both models agreed on.
#[derive(Default)]
struct Agreement {
    window: VecDeque<bool>,
    agreed: usize,
}

impl Agreement {
    fn push(&mut self, agreed: bool) {
        self.window.push_back(agreed);
        self.agreed += usize::from(agreed);
        if self.window.len() > AGREEMENT_WINDOW
            && let Some(oldest) = self.window.pop_front()
        {
            self.agreed -= usize::from(oldest);
        }
    }

    fn share(&self) -> Option<f64> {
        (!self.window.is_empty()).then(|| self.agreed as f64 / self.window.len() as f64)
    }
}

/// Lowers this thread's CPU priority (Linux: threads have their own nice value).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::warn!(%error, "the shadow thread keeps the normal CPU priority");
    }
}

/// A failure on purpose, for the tests (`FRAUDLENS_TEST_SHADOW_FAULT=panic`
/// or `sleep:MILLISECONDS` per row; only with the `fault-injection` feature).
#[derive(Default)]
struct Fault {
    #[cfg(feature = "fault-injection")]
    kind: Option<String>,
}

impl Fault {
    fn from_env() -> Self {
        Self {
            #[cfg(feature = "fault-injection")]
            kind: std::env::var("FRAUDLENS_TEST_SHADOW_FAULT").ok(),
        }
    }

    #[allow(clippy::unused_self)]
    fn apply(&self) {
        #[cfg(feature = "fault-injection")]
        match self.kind.as_deref() {
            Some("panic") => panic!("fault injection: the shadow model panics"),
            Some(sleep) => {
                if let Some(ms) = sleep.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_the_share_of_the_last_window() {
        let mut agreement = Agreement::default();
        assert_eq!(agreement.share(), None);
        agreement.push(false);
        for _ in 0..AGREEMENT_WINDOW {
            agreement.push(true);
        }
        // the first disagreement left the window
        assert_eq!(agreement.share(), Some(1.0));
        for _ in 0..AGREEMENT_WINDOW / 4 {
            agreement.push(false);
        }
        assert_eq!(agreement.share(), Some(0.75));
    }
}
