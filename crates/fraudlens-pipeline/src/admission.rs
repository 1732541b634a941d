//! Admission: which transactions are new and which repeat an id.
//!
//! Owns idempotency on the transaction id: the stored form of a transaction
//! and its fingerprint (same content, same fingerprint, whatever the JSON's
//! key order), the in-flight table that makes a request racing another for
//! the same id wait for its result ([`Slot`]), the answer to a repeat (the
//! stored decision as a replay, or a conflict for other content), and the
//! stash of decisions whose write failed ([`Unwritten`]), written again by
//! the retry instead of observing the transaction twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fraudlens_core::{Timestamp, Transaction};
use fraudlens_store::{NewDecision, StoredDecision};
use rustc_hash::FxHashMap;

use fraudlens_state::Write;

use crate::scoring::Scored;
use crate::shards::{self, ShardKey};
use crate::shared::{Loaded, applied_by};
use crate::{Pipeline, ScoreError, ServingModel, events, lock, now, now_ms};

type Shared = Result<Scored, ScoreError>;

/// Most decisions kept for the retry of a failed write (about 1 KB each).
const MAX_UNWRITTEN: usize = 50_000;

/// Decisions whose write failed, kept by transaction id until the retry
/// writes them (or the store turns out to hold the transaction); beyond
/// [`MAX_UNWRITTEN`] the oldest go first.
#[derive(Default)]
pub(crate) struct Unwritten {
    records: FxHashMap<String, (u64, NewDecision)>,
    next: u64,
}

impl Unwritten {
    pub(crate) fn keep(&mut self, records: &[NewDecision]) {
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
    pub(crate) fn take(&mut self, id: &str, fingerprint: &str) -> Option<NewDecision> {
        match self.records.get(id) {
            Some((_, record)) if record.fingerprint == fingerprint => self.records.remove(id).map(|(_, record)| record),
            _ => None,
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.records.contains_key(id)
    }

    pub(crate) fn forget(&mut self, id: &str) {
        self.records.remove(id);
    }
}

/// Where the result of an in-flight transaction appears, for requests racing it.
#[derive(Default)]
pub(crate) struct Slot {
    result: Mutex<Option<Shared>>,
    ready: tokio::sync::Notify,
    /// Requests that found the id in flight and wait for this result (counted
    /// under the in-flight lock, so none joins after the id left the table).
    racers: AtomicUsize,
}

impl Slot {
    /// The slot of an id in flight, for a request racing it (call with the
    /// in-flight table locked).
    pub(crate) fn join(self: &Arc<Self>) -> Arc<Self> {
        self.racers.fetch_add(1, Ordering::Relaxed);
        self.clone()
    }

    pub(crate) fn publish(&self, result: Shared) {
        *lock(&self.result) = Some(result);
        self.ready.notify_waiters();
    }

    /// Publishes a result to the racers, if any: with none (the usual case),
    /// the result is not copied. Call after the id left the in-flight table.
    pub(crate) fn publish_to_racers(&self, result: &Shared) {
        if self.racers.load(Ordering::Relaxed) > 0 {
            self.publish(result.clone());
        }
    }

    pub(crate) async fn wait(&self) -> Shared {
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

/// The stored form of a parsed transaction and its fingerprint (a hash of
/// that form: equal for the same content whatever the JSON's key order or
/// spacing). A transaction that cannot be serialised is not scored (a bug:
/// logged and counted).
pub(crate) fn stored_form(tx: &Transaction) -> Result<(String, String), ScoreError> {
    let body = serde_json::to_string(tx).map_err(|error| {
        events::transaction_not_serialised(tx.id.as_str(), &error);
        ScoreError::Unavailable("the transaction could not be serialised".to_owned())
    })?;
    let fingerprint = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(body.as_bytes()));
    Ok((body, fingerprint))
}

/// Prepared work for one transaction: observed, to be scored and written.
pub(crate) struct Observed {
    pub(crate) tx: Transaction,
    pub(crate) shard: ShardKey,
    pub(crate) body: String,
    pub(crate) fingerprint: String,
    pub(crate) row: Vec<f64>,
    pub(crate) started: Instant,
    pub(crate) received_at: Timestamp,
    pub(crate) slot: Arc<Slot>,
    /// The decision made before, when this is the retry of a failed write.
    pub(crate) decided: Option<Box<NewDecision>>,
}

/// The admission of each transaction of a batch, in order.
pub(crate) type Admissions = Vec<Result<Admission, ScoreError>>;

pub(crate) enum Admission {
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

/// A parsed transaction with its stored form and fingerprint, ready for admission.
pub(crate) type Prepared = Result<(ShardKey, (String, String), Transaction), ScoreError>;

/// Serialises and hashes each transaction (before the engine lock is taken).
pub(crate) fn prepare(parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>) -> Vec<Prepared> {
    parsed
        .into_iter()
        .map(|(shard, parsed)| parsed.and_then(|tx| Ok((shard, stored_form(&tx)?, tx))))
        .collect()
}

impl Pipeline {
    /// Under the engine lock: decides for each transaction whether it is new
    /// (observed now, registered in flight) or a repeat.
    pub(crate) fn admit_all(
        &self,
        model: &ServingModel,
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Result<Admissions, ScoreError> {
        let prepared = prepare(parsed);
        let mut states = lock(&self.states);
        self.admit_prepared(model, prepared, &mut states, None)
            .map(|(admissions, _)| admissions)
    }

    /// [`Self::admit_all`] with the engine lock held. With a shared state,
    /// `loaded` holds the batch's entities, already in the scratch engine
    /// (as load number `.1`), and the writes of what the new transactions
    /// changed come back with the admissions.
    pub(crate) fn admit_prepared(
        &self,
        model: &ServingModel,
        prepared: Vec<Prepared>,
        states: &mut shards::States,
        loaded: Option<(&Loaded, u64)>,
    ) -> Result<(Admissions, Vec<Write>), ScoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ScoreError::Overloaded("the server is shutting down".to_owned()));
        }
        let received_at = now();
        let started = Instant::now();
        let mut in_flight = lock(&self.in_flight);
        let inputs = model.events()?;
        let n_features = inputs.spec.feature_names().len();
        let admissions: Vec<Result<Admission, ScoreError>> = prepared
            .into_iter()
            .map(|prepared| {
                let (shard, (body, fingerprint), tx) = prepared?;
                let shards::States { held, clocks, .. } = &mut *states;
                // a shared state is one state for every shard, with a clock per shard
                let held = if loaded.is_some() {
                    let mut held = held.get_mut(&None);
                    if let Some(held) = &mut held {
                        held.state.engine_mut().set_clock(clocks.get(&shard).copied().flatten());
                    }
                    held
                } else {
                    held.get_mut(&shard)
                };
                let Some(held) = held else {
                    return Err(ScoreError::NotOwned(shard.unwrap_or_default()));
                };
                let id = tx.id.as_str().to_owned();
                if let Some(slot) = in_flight.get(&id) {
                    return Ok(Admission::Racing(slot.join(), fingerprint));
                }
                // on the shared state, any entity that holds it (another process
                // wrote some of its entities and not yet the others) makes it seen
                let seen = if loaded.is_some() {
                    let engine = held.state.engine_mut();
                    engine.entity_refs(&tx).iter().any(|at| engine.entity_holds(*at, &tx))
                } else {
                    held.state.has_seen(&tx)
                };
                if seen {
                    return Ok(Admission::Seen(tx, shard, fingerprint));
                }
                if let Err(error) = held.state.check_time(tx.timestamp, Some(received_at.as_millis())) {
                    metrics::counter!("fraudlens_event_time_refused_total", "reason" => error.reason()).increment(1);
                    return Ok(Admission::Refused(
                        id,
                        fingerprint,
                        ScoreError::EventTime(error.to_string()),
                    ));
                }
                let mut row = Vec::with_capacity(n_features + tx.attributes.len());
                held.state.observe(&tx, &mut row);
                if loaded.is_some() {
                    clocks.insert(shard.clone(), held.state.engine_mut().clock());
                }
                inputs.push_attributes(&tx, &mut row);
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
        let shards::States { held, cache, .. } = &mut *states;
        let writes = match (loaded, held.get_mut(&None)) {
            (Some((loaded, load)), Some(held)) => {
                let engine = held.state.engine_mut();
                let fresh = admissions.iter().filter_map(|admission| match admission {
                    Ok(Admission::Fresh(observed)) => Some(&observed.tx),
                    _ => None,
                });
                let applied = applied_by(engine, fresh, loaded.record_order);
                loaded.writes(engine, cache, load, applied)
            }
            _ => Vec::new(),
        };
        states.publish_gauges();
        Ok((admissions, writes))
    }

    /// A repeated id: the stored (or in-flight) decision, if the content matches.
    pub(crate) async fn resolve(&self, admission: Admission) -> Result<Scored, ScoreError> {
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
                    // in the shared state, observed by another process (or by this
                    // one, whose write failed and kept no decision)
                    None if self.config.shared_state.is_some() && !lock(&self.unwritten).contains(tx.id.as_str()) => {
                        self.resolve_unstored(tx, shard, fingerprint).await
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
    pub(crate) async fn retry_unwritten(
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
                Some(slot) => Retry::Racing(slot.join()),
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
                        // with a shared state, another process observed it and has
                        // not stored it yet (or died between the two): observing it
                        // again here would count it twice
                        None if self.config.shared_state.is_some() => {
                            metrics::counter!("fraudlens_state_seen_not_stored_total").increment(1);
                            return Err(ScoreError::Unavailable(
                                "the transaction is in the shared entity state but its decision is not stored yet; retry"
                                    .to_owned(),
                            ));
                        }
                        None => {
                            let Some(held) = states.held.get_mut(&shard) else {
                                return Err(ScoreError::NotOwned(shard.unwrap_or_default()));
                            };
                            held.state
                                .check_time(tx.timestamp, Some(now_ms()))
                                .map_err(|error| ScoreError::EventTime(error.to_string()))?;
                            let (body, _) = stored_form(&tx)?;
                            metrics::counter!("fraudlens_reobserved_total").increment(1);
                            let mut row = Vec::new();
                            held.state.observe(&tx, &mut row);
                            model.events()?.push_attributes(&tx, &mut row);
                            Observed {
                                tx,
                                shard,
                                body,
                                fingerprint,
                                row,
                                started: Instant::now(),
                                received_at: now(),
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
}

pub(crate) fn compare(stored: &StoredDecision, fingerprint: &str) -> Result<Scored, ScoreError> {
    compare_record(stored.decision.clone(), fingerprint)
}

/// The decision of an id seen before, as a replay if the content is the same.
pub(crate) fn compare_record(record: NewDecision, fingerprint: &str) -> Result<Scored, ScoreError> {
    if record.fingerprint == fingerprint {
        Ok(Scored { record, replayed: true })
    } else {
        Err(ScoreError::Conflict(record.transaction_id))
    }
}
