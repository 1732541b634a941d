//! The online entity state, in shards.
//!
//! A shard is the state one scorer owns. The API has one shard over the whole
//! store (its key is `None`). A Kafka detector has one shard per assigned
//! partition (key `TOPIC/PARTITION`): records are keyed by the primary entity,
//! so a partition holds every transaction of its customers, and its state can
//! move to another detector — rebuilt there from the store rows that carry the
//! shard's name — when the partition does.
//!
//! [`EntityState`] is all the scoring path asks of a shard; its
//! implementation is [`FeatureEngine`]. With a shared state (`shared.rs`:
//! one state that every detector and API replica reads and updates, so that
//! features keyed on a second entity — a card, a terminal, a device used by
//! customers of several partitions — see all of its transactions) there is
//! one held state for every shard, a scratch engine into which each batch
//! loads its entities, and nothing is rebuilt when a partition moves.

use std::time::Instant;

use fraudlens_core::{Label, Timestamp, Transaction};
use fraudlens_features::{EventTimeError, FeatureEngine};
use rustc_hash::FxHashMap;

use crate::{Pipeline, PipelineError, lock, state};

/// What the scoring path asks of the entity state of one shard.
pub trait EntityState: Send {
    /// Whether this transaction (by id) was observed before.
    fn has_seen(&self, tx: &Transaction) -> bool;
    /// Whether an event at `event` may be observed now (wall clock `now_ms`,
    /// or `None` for the lateness rule alone): the event-time policy.
    fn check_time(&self, event: Timestamp, now_ms: Option<i64>) -> Result<(), EventTimeError>;
    /// Observes a new transaction and appends its features (as of just before it) to `row`.
    fn observe(&mut self, tx: &Transaction, row: &mut Vec<f64>);
    /// Feeds a label of an observed transaction to the risk features; `false` if it is not held.
    fn apply_label(&mut self, tx: &Transaction, label: Label) -> bool;
    /// Entities held.
    fn n_entities(&self) -> usize;
    /// A snapshot to restore from, if this state is held in-process.
    fn snapshot(&self) -> Option<Vec<u8>>;
    /// The in-process engine. With a shared state it is a scratch engine: a
    /// batch's entities are loaded into it, observed there and written back
    /// (`shared.rs`).
    fn engine_mut(&mut self) -> &mut FeatureEngine;
}

impl EntityState for FeatureEngine {
    fn has_seen(&self, tx: &Transaction) -> bool {
        FeatureEngine::has_seen(self, tx)
    }

    fn check_time(&self, event: Timestamp, now_ms: Option<i64>) -> Result<(), EventTimeError> {
        FeatureEngine::check_time(self, event, now_ms)
    }

    fn observe(&mut self, tx: &Transaction, row: &mut Vec<f64>) {
        FeatureEngine::observe(self, tx, row);
    }

    fn apply_label(&mut self, tx: &Transaction, label: Label) -> bool {
        FeatureEngine::apply_label(self, tx, label).found > 0
    }

    fn n_entities(&self) -> usize {
        FeatureEngine::n_entities(self)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(FeatureEngine::snapshot(self))
    }

    fn engine_mut(&mut self) -> &mut FeatureEngine {
        self
    }
}

/// Which shard observes a transaction: `None` for the whole store.
pub type ShardKey = Option<String>;

/// A shard's state and the newest store row it has seen.
pub(crate) struct Held {
    pub state: Box<dyn EntityState>,
    pub seq: i64,
}

/// The shards held, and those released but kept until the next assignment
/// (a rebalance that hands a partition straight back reuses its state after
/// catching up, instead of rebuilding it).
#[derive(Default)]
pub(crate) struct States {
    pub held: FxHashMap<ShardKey, Held>,
    pub parked: FxHashMap<String, Held>,
    /// With a shared state, the engine clock of each shard (the lateness
    /// rule is per partition, as with in-process shards: a partition whose
    /// backlog lags another's is not refused as late).
    pub clocks: FxHashMap<ShardKey, Option<i64>>,
    /// With a shared state, which entities the scratch engine keeps between
    /// batches and as of which version.
    pub cache: crate::shared::Cache,
}

impl States {
    pub fn n_entities(&self) -> usize {
        self.held.values().map(|held| held.state.n_entities()).sum()
    }

    pub fn publish_gauges(&self) {
        metrics::gauge!("fraudlens_entities").set(self.n_entities() as f64);
        metrics::gauge!("fraudlens_state_shards").set(self.held.len() as f64);
    }
}

/// What a catch-up did with a page of stored transactions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CaughtUp {
    /// Observed now.
    pub observed: usize,
    /// Refused by the event-time policy (stored before it existed, e.g. a
    /// transaction dated years ahead): kept in the store, never in the state.
    pub refused: usize,
}

/// Observes the transactions the state has not seen (with their known
/// labels), under the same event-time policy as new ones (wall clock `now_ms`).
pub(crate) fn observe_unseen(
    state: &mut dyn EntityState,
    page: &[(Transaction, Option<Label>)],
    now_ms: i64,
) -> CaughtUp {
    let mut row = Vec::new();
    let mut done = CaughtUp::default();
    for (tx, label) in page {
        if state.has_seen(tx) {
            continue;
        }
        if let Err(error) = state.check_time(tx.timestamp, Some(now_ms)) {
            tracing::warn!(%error, id = tx.id.as_str(), "stored transaction left out of the entity state");
            done.refused += 1;
            continue;
        }
        row.clear();
        state.observe(tx, &mut row);
        if let Some(label) = label {
            state.apply_label(tx, *label);
        }
        done.observed += 1;
    }
    done
}

/// Shard lifecycle: acquire (rebuild from the store), release, retain.
impl Pipeline {
    /// Whether this process holds the state of `shard`.
    pub fn holds(&self, shard: &str) -> bool {
        self.config.shared_state.is_some() || lock(&self.states).held.contains_key(&Some(shard.to_owned()))
    }

    /// Takes on the state of `shard` (a partition assigned to this detector):
    /// the state kept from an earlier release, or a new one, brought up to
    /// date with the store rows of that shard. Returns how many transactions
    /// were observed to get there.
    pub async fn acquire_shard(&self, shard: &str) -> Result<usize, PipelineError> {
        if self.config.shared_state.is_some() {
            // one state shared by every shard and process: nothing to rebuild
            return Ok(0);
        }
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
        let mut held = match parked {
            Some(held) => held,
            None => {
                let Some(spec) = self.model.load().spec().cloned() else {
                    // a model of feature rows keeps no entity state
                    return Ok(0);
                };
                let mut engine = FeatureEngine::new(spec);
                engine.set_time_policy(self.config.time_policy);
                Held {
                    state: Box::new(engine),
                    seq: 0,
                }
            }
        };
        let started = Instant::now();
        let caught_up = state::catch_up(self.store.as_ref(), Some(shard), &mut held, "memory").await?;
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
