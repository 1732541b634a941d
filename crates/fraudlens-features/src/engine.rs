//! The entity-state engine. One synchronous function updates an entity's state
//! with a transaction and writes its feature vector; the same function runs in
//! offline replay and online scoring, which is what makes train/serve parity a
//! plain test rather than a hope.
//!
//! Time comes only from events, and each entity keeps its own clock: the
//! latest time of its own events. A late event (earlier than an entity's
//! clock) is processed for that entity as if it happened at its clock, so
//! window state never runs backwards, and no event — however far in the future
//! it is dated — moves the clock of an entity it does not name: one poisoned
//! event cannot expire anybody else's windows. Calendar features still use the
//! event's own time.
//!
//! The engine clock (the latest event time over all entities) only decides
//! when idle entities are evicted and which events are too late
//! ([`EventTimePolicy`]): callers check every event with
//! [`FeatureEngine::check_time`] before observing it, on every path (API,
//! detector, offline replay), so the engine clock cannot run ahead of the
//! wall clock by more than the policy allows.
//!
//! Amounts are kept as integer micro-units and summed in `i128`, so aggregates
//! do not depend on the order of additions and removals.
//!
//! Layout: per feature block, a map from entity-key hash to `EntityState`: a
//! deque of recent 24-byte events (time, amount in micro-units, transaction
//! hash with the fraud flag in its top bit), running integer sums per window,
//! one decreasing deque whose first entry inside a window is that window's
//! max, per-window distinct-key counts, and two-pointer label-delayed risk
//! windows. `observe` first loads every window edge of every entity involved
//! (independent loads, so cache misses overlap), then updates and writes the
//! vector; `apply_label` is the feedback path; `has_seen` lets callers skip a
//! transaction observed before; idle entities are swept.

use std::collections::VecDeque;
use std::sync::Arc;

use fraudlens_core::{Label, Timestamp, Transaction};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::spec::{Aggregate, Block, FeatureSpec};

/// Hash of an entity key or transaction id, stable across processes and versions.
pub(crate) fn key_hash(text: &str) -> u64 {
    // 0 marks "no key" in the distinct-count columns
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()).max(1)
}

/// Computes entity features, online or in replay.
#[derive(Clone, Debug)]
pub struct FeatureEngine {
    pub(crate) spec: Arc<FeatureSpec>,
    /// Per spec block: entity key hash → state.
    pub(crate) states: Vec<FxHashMap<u64, EntityState>>,
    /// Latest event time seen (ms); `i64::MIN` before the first event.
    pub(crate) clock: i64,
    /// Event time at which idle entities are next evicted.
    next_sweep: i64,
    /// How often (in event time) idle entities are evicted.
    sweep_interval: i64,
    /// Which event times are accepted; also how long idle entities are kept.
    policy: EventTimePolicy,
    /// Scratch: the hash of each entity key of the current event, in schema order (0 = no key).
    key_hashes: Vec<u64>,
}

/// Which event times the engine accepts, checked by [`FeatureEngine::check_time`].
///
/// - `max_future`: how far an event may be dated ahead of the wall clock of
///   the process checking it (clients' clocks drift; nothing real happens in
///   the future). The same rule holds offline: a history file cannot contain
///   events after the time it is read.
/// - `max_lateness`: how far an event may be dated behind the latest event time
///   the engine has accepted. Later events would be processed at their
///   entities' clocks (their windows have moved on); beyond this they are
///   refused instead. It also bounds eviction: an entity is dropped only when
///   no acceptable event could still see its state.
///
/// `None` means no bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTimePolicy {
    /// Most milliseconds an event may be ahead of the wall clock.
    pub max_future_ms: Option<i64>,
    /// Most milliseconds an event may be behind the engine clock.
    pub max_lateness_ms: Option<i64>,
}

impl EventTimePolicy {
    /// Default `max_future`: 5 minutes.
    pub const DEFAULT_MAX_FUTURE_MS: i64 = 5 * 60_000;
    /// Default `max_lateness`: 7 days (card-present terminals that were
    /// offline upload their transactions days late; beyond a week an event is
    /// more likely a wrong date than a late one).
    pub const DEFAULT_MAX_LATENESS_MS: i64 = 7 * 86_400_000;
    /// No bound at all (tests of the engine's own arithmetic).
    pub const UNBOUNDED: Self = Self {
        max_future_ms: None,
        max_lateness_ms: None,
    };
}

impl Default for EventTimePolicy {
    fn default() -> Self {
        Self {
            max_future_ms: Some(Self::DEFAULT_MAX_FUTURE_MS),
            max_lateness_ms: Some(Self::DEFAULT_MAX_LATENESS_MS),
        }
    }
}

/// Why an event's time is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventTimeError {
    /// Dated too far ahead of the wall clock.
    #[error("event time {event} is more than {max_future} ahead of the current time {now} (event_time.max_future)")]
    Future {
        /// The event's time.
        event: Timestamp,
        /// The wall clock when it was checked.
        now: Timestamp,
        /// The bound, as written in the config (`5m`).
        max_future: String,
    },
    /// Dated too far behind the events already accepted.
    #[error(
        "event time {event} is more than {max_lateness} before the latest accepted event time {latest} \
         (event_time.max_lateness; sort the input by time, or raise the bound)"
    )]
    TooLate {
        /// The event's time.
        event: Timestamp,
        /// The engine clock.
        latest: Timestamp,
        /// The bound, as written in the config (`1d`).
        max_lateness: String,
    },
}

/// Why [`FeatureEngine::admit`] keeps a transaction out of the state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Already part of the state (same id and time): observing it again would count it twice.
    #[error("already seen")]
    Seen,
    /// Its time is outside the event-time policy.
    #[error(transparent)]
    EventTime(#[from] EventTimeError),
}

impl EventTimeError {
    /// A short, stable name of the rule broken (a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Future { .. } => "future",
            Self::TooLate { .. } => "too_late",
        }
    }
}

fn duration_text(millis: i64) -> String {
    fraudlens_core::WindowDuration::from_millis(millis).map_or_else(|| format!("{millis}ms"), |d| d.to_string())
}

/// What [`FeatureEngine::apply_label`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelOutcome {
    /// Entity blocks whose state held the transaction.
    pub found: usize,
    /// Blocks whose stored label changed.
    pub changed: usize,
}

/// The part of a transaction a label needs to find its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelTarget {
    tx_hash: u64,
    timestamp: i64,
    /// Entity key hash per spec block (`0` when the key is missing).
    entity_hashes: Vec<u64>,
}

/// One transaction as an entity remembers it: 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Engine time of the event (ms).
    pub(crate) ts: i64,
    /// Amount in micro-units.
    pub(crate) amount: i64,
    /// Hash of the transaction id in the low 63 bits, fraud flag in the top bit.
    pub(crate) tagged: u64,
}

const FRAUD_BIT: u64 = 1 << 63;

impl Event {
    fn new(ts: i64, amount: i64, tx_hash: u64) -> Self {
        Self {
            ts,
            amount,
            tagged: tx_hash & !FRAUD_BIT,
        }
    }

    /// An event as stored (its fields, fraud flag included).
    pub(crate) fn from_parts(ts: i64, amount: i64, tagged: u64) -> Self {
        Self { ts, amount, tagged }
    }

    fn tx_hash(&self) -> u64 {
        self.tagged & !FRAUD_BIT
    }

    pub(crate) fn fraud(&self) -> bool {
        self.tagged & FRAUD_BIT != 0
    }

    fn set_fraud(&mut self, fraud: bool) {
        self.tagged = if fraud {
            self.tagged | FRAUD_BIT
        } else {
            self.tagged & !FRAUD_BIT
        };
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WindowAgg {
    pub(crate) start: u64,
    pub(crate) count: u64,
    pub(crate) sum: i128,
    pub(crate) sum_sq: i128,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DistinctAgg {
    pub(crate) start: u64,
    pub(crate) counts: FxHashMap<u64, u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RiskAgg {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) count: u64,
    pub(crate) frauds: u64,
}

/// Everything the engine remembers about one entity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntityState {
    /// Events within the block's horizon, oldest first.
    pub(crate) events: VecDeque<Event>,
    /// Other-entity key hashes for distinct counts, `distinct_of.len()` per event.
    pub(crate) others: VecDeque<u64>,
    /// Sequence number of `events[0]`.
    pub(crate) first_seq: u64,
    pub(crate) windows: Vec<WindowAgg>,
    /// (sequence number, amount) of events in the longest window with strictly
    /// decreasing amounts: the maximum of any window is the first entry inside it.
    pub(crate) max: VecDeque<(u64, i64)>,
    pub(crate) distinct: Vec<DistinctAgg>,
    pub(crate) risk: Vec<RiskAgg>,
}

impl FeatureEngine {
    /// Default event-time interval between evictions of idle entities.
    pub const DEFAULT_SWEEP_INTERVAL_MS: i64 = 86_400_000;

    /// An engine with no state.
    pub fn new(spec: Arc<FeatureSpec>) -> Self {
        let states = spec.blocks.iter().map(|_| FxHashMap::default()).collect();
        Self {
            spec,
            states,
            clock: i64::MIN,
            next_sweep: i64::MIN,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL_MS,
            policy: EventTimePolicy::default(),
            key_hashes: Vec::new(),
        }
    }

    /// Sets which event times [`Self::check_time`] accepts (and so how long
    /// idle entities are kept: their horizon plus `max_lateness`).
    pub fn set_time_policy(&mut self, policy: EventTimePolicy) {
        self.policy = policy;
    }

    /// The event-time policy.
    pub fn time_policy(&self) -> EventTimePolicy {
        self.policy
    }

    /// How far behind the engine clock an event may be: `max_lateness`, but
    /// never as far as the shortest block horizon. An older event may no
    /// longer be in its entities' state, so `has_seen` could not tell a retry
    /// of it from a new one; refused, a retry still finds its stored decision.
    fn lateness_bound(&self) -> Option<i64> {
        let max_lateness = self.policy.max_lateness_ms?;
        let horizon = self.spec.blocks.iter().map(|block| block.horizon).min();
        Some(horizon.map_or(max_lateness, |horizon| max_lateness.min(horizon - 1)))
    }

    /// Whether an event dated `event` may be observed, with the wall clock at
    /// `now_ms` (`None`: no wall clock, only the lateness rule). Every caller
    /// checks before [`Self::observe`]; an event refused here changes nothing.
    pub fn check_time(&self, event: Timestamp, now_ms: Option<i64>) -> Result<(), EventTimeError> {
        let event_ms = event.as_millis();
        if let (Some(max_future), Some(now)) = (self.policy.max_future_ms, now_ms)
            && event_ms > now.saturating_add(max_future)
        {
            return Err(EventTimeError::Future {
                event,
                now: Timestamp::from_millis(now),
                max_future: duration_text(max_future),
            });
        }
        if let (Some(max_lateness), Some(latest)) = (self.lateness_bound(), self.clock())
            && event_ms < latest.saturating_sub(max_lateness)
        {
            return Err(EventTimeError::TooLate {
                event,
                latest: Timestamp::from_millis(latest),
                max_lateness: duration_text(max_lateness.max(1)),
            });
        }
        Ok(())
    }

    /// Sets how often (in event time, ms) idle entities are evicted. Eviction
    /// never changes a feature value; this only trades memory against sweep work.
    pub fn set_sweep_interval(&mut self, millis: i64) {
        self.sweep_interval = millis.max(1);
    }

    /// The spec this engine computes.
    pub fn spec(&self) -> &Arc<FeatureSpec> {
        &self.spec
    }

    /// Sets the engine clock (a shared state's scratch engine keeps one
    /// clock per shard and sets it before each shard's events). Entity
    /// clocks are untouched.
    pub fn set_clock(&mut self, clock: Option<i64>) {
        self.clock = clock.unwrap_or(i64::MIN);
    }

    /// Latest event time seen, in ms since the epoch (`None` before the first event).
    pub fn clock(&self) -> Option<i64> {
        (self.clock != i64::MIN).then_some(self.clock)
    }

    /// Number of entities with state, over all blocks.
    pub fn n_entities(&self) -> usize {
        self.states.iter().map(FxHashMap::len).sum()
    }

    /// Approximate heap bytes held by entity state.
    pub fn state_bytes(&self) -> usize {
        self.states
            .iter()
            .map(|map| {
                map.capacity() * (size_of::<u64>() + size_of::<EntityState>() + 1)
                    + map.values().map(EntityState::heap_bytes).sum::<usize>()
            })
            .sum()
    }

    /// Updates state with `tx` and writes its feature vector into `out`
    /// (cleared first; in [`FeatureSpec::feature_names`] order). Missing values are NaN.
    pub fn observe(&mut self, tx: &Transaction, out: &mut Vec<f64>) {
        let event_time = tx.timestamp.as_millis();
        let now = event_time.max(self.clock);
        self.clock = now;
        if now >= self.next_sweep {
            self.sweep();
            self.next_sweep = now.saturating_add(self.sweep_interval);
        }
        out.clear();
        out.push(tx.amount.major());
        let config = self.spec.config();
        if config.calendar {
            let civil = tx.timestamp.civil(config.utc_offset_minutes);
            let (start, end) = (config.night_start_hour, config.night_end_hour);
            let night = if start <= end {
                (start..end).contains(&civil.hour)
            } else {
                civil.hour >= start || civil.hour < end
            };
            out.extend([
                f64::from(civil.hour),
                f64::from(civil.weekday),
                f64::from(u8::from(night)),
                f64::from(u8::from(civil.weekday >= 5)),
            ]);
        }
        // the event's own time; each entity processes it at its own clock (see `EntityState::update`)
        let event = Event::new(event_time, tx.amount.micros(), key_hash(tx.id.as_str()));
        // every entity key of the transaction is hashed once: blocks and distinct counts share them
        self.key_hashes.clear();
        self.key_hashes.extend(
            tx.entities
                .iter()
                .map(|key| key.as_ref().map_or(0, |key| key_hash(key.as_str()))),
        );
        let hash_of = |idx: usize| self.key_hashes.get(idx).copied().unwrap_or(0);
        // Entity state is usually far from the CPU caches. Reading each place an
        // update will visit first, as independent loads, lets the memory system
        // fetch them in parallel instead of one miss after another.
        let mut touched = 0;
        for (block, states) in self.spec.blocks.iter().zip(&self.states) {
            if let Some(state) = states.get(&hash_of(block.entity_idx)) {
                touched ^= state.touch();
            }
        }
        std::hint::black_box(touched);
        for (block, states) in self.spec.blocks.iter().zip(&mut self.states) {
            let hash = hash_of(block.entity_idx);
            if hash == 0 {
                out.extend(std::iter::repeat_n(f64::NAN, block.n_features));
                continue;
            }
            let state = states.entry(hash).or_insert_with(|| EntityState::new(block));
            state.update(block, event, block.distinct_of.iter().map(|idx| hash_of(*idx)), out);
        }
    }

    /// Where block `block`'s features sit in the vector [`Self::observe`] writes.
    pub fn block_features(&self, block: usize) -> std::ops::Range<usize> {
        let start = 1
            + if self.spec.config().calendar { 4 } else { 0 }
            + self.spec.blocks[..block].iter().map(|b| b.n_features).sum::<usize>();
        start..start + self.spec.blocks[block].n_features
    }

    /// The part of [`Self::observe`] that belongs to one block: updates the
    /// state of `tx`'s entity in `block` and writes that block's features over
    /// `row[self.block_features(block)]`. A shared state redoes a block with
    /// this when another process updated the entity first. The engine clock
    /// and eviction are left alone (the whole observe already moved them).
    pub fn observe_block(&mut self, tx: &Transaction, block: usize, row: &mut [f64]) {
        let range = self.block_features(block);
        let spec = &self.spec.blocks[block];
        let hash_of = |idx: usize| tx.entity(idx).map_or(0, |key| key_hash(key.as_str()));
        let hash = hash_of(spec.entity_idx);
        let mut out = Vec::with_capacity(spec.n_features);
        if hash == 0 {
            out.resize(spec.n_features, f64::NAN);
        } else {
            let event = Event::new(tx.timestamp.as_millis(), tx.amount.micros(), key_hash(tx.id.as_str()));
            let state = self.states[block].entry(hash).or_insert_with(|| EntityState::new(spec));
            state.update(spec, event, spec.distinct_of.iter().map(|idx| hash_of(*idx)), &mut out);
        }
        row[range].copy_from_slice(&out);
    }

    /// Records the label of a transaction the engine has seen: the online
    /// feedback path (analyst review, chargeback). It affects label-delayed risk
    /// features of later transactions. Labels of unknown or evicted
    /// transactions are ignored (`found == 0`).
    pub fn apply_label(&mut self, tx: &Transaction, label: Label) -> LabelOutcome {
        self.apply_label_target(&self.label_target(tx), label)
    }

    /// What a label for `tx` needs, without keeping the transaction.
    pub fn label_target(&self, tx: &Transaction) -> LabelTarget {
        LabelTarget {
            tx_hash: key_hash(tx.id.as_str()) & !FRAUD_BIT,
            timestamp: tx.timestamp.as_millis(),
            entity_hashes: self
                .spec
                .blocks
                .iter()
                .map(|block| tx.entity(block.entity_idx).map_or(0, |key| key_hash(key.as_str())))
                .collect(),
        }
    }

    /// [`Self::apply_label`] for a stored target.
    pub fn apply_label_target(&mut self, target: &LabelTarget, label: Label) -> LabelOutcome {
        let mut outcome = LabelOutcome { found: 0, changed: 0 };
        for (states, hash) in self.states.iter_mut().zip(&target.entity_hashes) {
            let Some(state) = states.get_mut(hash) else {
                continue;
            };
            let Some(changed) = state.set_label(target.tx_hash, target.timestamp, label.is_fraud()) else {
                continue;
            };
            outcome.found += 1;
            outcome.changed += usize::from(changed);
        }
        outcome
    }

    /// Whether `tx` may be observed: not when the state has it already
    /// ([`Self::has_seen`]), then not when its time is outside the policy
    /// ([`Self::check_time`], wall clock `now_ms`). The admission rule of every
    /// caller that may see a transaction twice or dated out of range.
    pub fn admit(&self, tx: &Transaction, now_ms: Option<i64>) -> Result<(), Refusal> {
        if self.has_seen(tx) {
            return Err(Refusal::Seen);
        }
        self.check_time(tx.timestamp, now_ms)?;
        Ok(())
    }

    /// Whether `tx` (same id and time) is already part of the state. The engine
    /// counts every `observe` as a new transaction, so callers that may see a
    /// transaction twice (a file with repeated ids, a redelivered message) ask
    /// first. Transactions older than the state horizon are no longer known.
    pub fn has_seen(&self, tx: &Transaction) -> bool {
        // an observed transaction is in the state of every block whose key it has: checking one is enough
        let Some((block_states, key)) = self
            .spec
            .blocks
            .iter()
            .zip(&self.states)
            .find_map(|(block, states)| Some((states, tx.entity(block.entity_idx)?)))
        else {
            return false;
        };
        let tx_hash = key_hash(tx.id.as_str()) & !FRAUD_BIT;
        block_states
            .get(&key_hash(key.as_str()))
            .is_some_and(|state| state.find(tx_hash, tx.timestamp.as_millis()).is_some())
    }

    /// Whether the state of entity `at` holds the transaction `tx` (same id
    /// and time): a shared state's check that another process applied it.
    pub fn entity_holds(&self, at: crate::EntityRef, tx: &Transaction) -> bool {
        let tx_hash = key_hash(tx.id.as_str()) & !FRAUD_BIT;
        self.states
            .get(at.block)
            .and_then(|states| states.get(&at.key))
            .is_some_and(|state| state.find(tx_hash, tx.timestamp.as_millis()).is_some())
    }

    /// Drops entities whose newest event is older than their block's horizon:
    /// such state can no longer change any feature.
    ///
    /// Entities are kept `max_lateness` longer than their horizon: an accepted
    /// late event is at most that far behind the engine clock, so an entity
    /// dropped here could not have had state in any window that event sees.
    fn sweep(&mut self) {
        let now = self.clock;
        let lateness = self.lateness_bound().unwrap_or(i64::MAX).max(0);
        for (block, states) in self.spec.blocks.iter().zip(&mut self.states) {
            let cutoff = now.saturating_sub(block.horizon).saturating_sub(lateness);
            states.retain(|_, state| state.events.back().is_some_and(|event| event.ts > cutoff));
        }
    }
}

impl EntityState {
    fn new(block: &Block) -> Self {
        Self {
            events: VecDeque::new(),
            others: VecDeque::new(),
            first_seq: 0,
            windows: vec![WindowAgg::default(); block.windows.len()],
            max: VecDeque::new(),
            distinct: vec![DistinctAgg::default(); block.distinct.len()],
            risk: vec![RiskAgg::default(); block.risk_windows.len()],
        }
    }

    /// Reads the events at every window edge (see `FeatureEngine::observe`).
    fn touch(&self) -> i64 {
        let at = |seq: u64| {
            self.events
                .get(seq.wrapping_sub(self.first_seq) as usize)
                .map_or(0, |event| event.ts)
        };
        let mut sum = self.events.back().map_or(0, |event| event.ts);
        for window in &self.windows {
            sum ^= at(window.start);
        }
        for distinct in &self.distinct {
            sum ^= at(distinct.start);
        }
        for risk in &self.risk {
            sum ^= at(risk.start) ^ at(risk.end);
        }
        sum
    }

    fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }

    fn event(&self, seq: u64) -> &Event {
        &self.events[(seq - self.first_seq) as usize]
    }

    fn update(&mut self, block: &Block, mut event: Event, others: impl Iterator<Item = u64>, out: &mut Vec<f64>) {
        // this entity's clock: an event earlier than its newest is processed at the newest's time
        if let Some(newest) = self.events.back() {
            event.ts = event.ts.max(newest.ts);
        }
        let now = event.ts;
        // label-delayed risk windows move first: they never contain the current event
        for (idx, window) in block.risk_windows.iter().enumerate() {
            let (end_cutoff, start_cutoff) = (now - block.risk_delay, now - block.risk_delay - window);
            let mut risk = std::mem::take(&mut self.risk[idx]);
            while risk.end < self.next_seq() && self.event(risk.end).ts <= end_cutoff {
                risk.count += 1;
                risk.frauds += u64::from(self.event(risk.end).fraud());
                risk.end += 1;
            }
            while risk.start < risk.end && self.event(risk.start).ts <= start_cutoff {
                risk.count -= 1;
                risk.frauds -= u64::from(self.event(risk.start).fraud());
                risk.start += 1;
            }
            self.risk[idx] = risk;
        }
        let since_previous = self
            .events
            .back()
            .map(|previous| now - previous.ts)
            .filter(|dt| *dt < block.horizon);

        let seq = self.next_seq();
        self.events.push_back(event);
        self.others.extend(others);
        let n_of = block.distinct_of.len();

        let amount = i128::from(event.amount);
        for (agg, window) in self.windows.iter_mut().zip(&block.windows) {
            let cutoff = now - window;
            while self.events[(agg.start - self.first_seq) as usize].ts <= cutoff {
                let old = i128::from(self.events[(agg.start - self.first_seq) as usize].amount);
                agg.count -= 1;
                agg.sum -= old;
                agg.sum_sq -= old * old;
                agg.start += 1;
            }
            agg.count += 1;
            agg.sum += amount;
            agg.sum_sq += amount * amount;
        }
        if block.needs_max {
            // one decreasing deque serves every window: the max of a window is the
            // first entry at or after the window's start
            while self.max.back().is_some_and(|(_, back)| *back <= event.amount) {
                self.max.pop_back();
            }
            self.max.push_back((seq, event.amount));
            let oldest_start = self.windows.iter().map(|agg| agg.start).min().unwrap_or(seq);
            while self.max.front().is_some_and(|(front, _)| *front < oldest_start) {
                self.max.pop_front();
            }
        }
        for agg in &self.windows {
            let (prior_count, prior_sum) = (agg.count - 1, agg.sum - amount);
            for aggregate in &block.aggregates {
                out.push(match aggregate {
                    Aggregate::Count => agg.count as f64,
                    Aggregate::Sum => micros_to_major(agg.sum),
                    Aggregate::Mean => micros_to_major(agg.sum) / agg.count as f64,
                    Aggregate::Max => {
                        let first = self.max.partition_point(|(max_seq, _)| *max_seq < agg.start);
                        self.max.get(first).map_or(f64::NAN, |(_, max)| *max as f64 / 1e6)
                    }
                    Aggregate::Std => std_dev(agg.count, agg.sum, agg.sum_sq) / 1e6,
                    Aggregate::AmountRatio => {
                        if prior_count == 0 || prior_sum == 0 {
                            f64::NAN
                        } else {
                            (amount as f64) * (prior_count as f64) / (prior_sum as f64)
                        }
                    }
                });
            }
        }

        if block.time_since_previous {
            out.push(since_previous.map_or(f64::NAN, |ms| ms as f64 / 1000.0));
        }

        for (idx, (slot, window)) in block.distinct.iter().enumerate() {
            let cutoff = now - window;
            let mut agg = std::mem::take(&mut self.distinct[idx]);
            while self.event(agg.start).ts <= cutoff {
                let other = self.others[(agg.start - self.first_seq) as usize * n_of + slot];
                remove_one(&mut agg.counts, other);
                agg.start += 1;
            }
            let other = self.others[(seq - self.first_seq) as usize * n_of + slot];
            if other != 0 {
                *agg.counts.entry(other).or_insert(0) += 1;
            }
            out.push(agg.counts.len() as f64);
            self.distinct[idx] = agg;
        }

        for risk in &self.risk {
            out.push(if risk.count == 0 {
                f64::NAN
            } else {
                risk.frauds as f64 / risk.count as f64
            });
            out.push(risk.count as f64);
        }

        // forget what no feature can see any more
        let cutoff = now - block.horizon;
        while self.events.front().is_some_and(|front| front.ts <= cutoff) {
            self.events.pop_front();
            self.others.drain(..n_of);
            self.first_seq += 1;
        }
        if self.events.capacity() > 64 && self.events.len() < self.events.capacity() / 4 {
            self.events.shrink_to(self.events.len() * 2);
            self.others.shrink_to(self.events.len() * 2 * n_of);
        }
    }

    /// Offset in `events` of the event of `tx_hash` that happened at `timestamp`.
    fn find(&self, tx_hash: u64, timestamp: i64) -> Option<usize> {
        // events are ordered by (clamped) time, which is never before the transaction's own time;
        // the common case, a transaction newer than everything held, needs no search
        if self.events.back().is_none_or(|last| last.ts < timestamp) {
            return None;
        }
        let from = self.events.partition_point(|event| event.ts < timestamp);
        (from..self.events.len()).find(|idx| self.events[*idx].tx_hash() == tx_hash)
    }

    /// Sets the fraud flag of the event of `tx_hash`; `None` when not held,
    /// else whether the flag changed.
    fn set_label(&mut self, tx_hash: u64, timestamp: i64, fraud: bool) -> Option<bool> {
        let offset = self.find(tx_hash, timestamp)?;
        let event = &mut self.events[offset];
        if event.fraud() == fraud {
            return Some(false);
        }
        event.set_fraud(fraud);
        let seq = self.first_seq + offset as u64;
        for risk in &mut self.risk {
            if (risk.start..risk.end).contains(&seq) {
                if fraud {
                    risk.frauds += 1;
                } else {
                    risk.frauds -= 1;
                }
            }
        }
        Some(true)
    }

    fn heap_bytes(&self) -> usize {
        self.events.capacity() * size_of::<Event>()
            + self.others.capacity() * size_of::<u64>()
            + self.max.capacity() * size_of::<(u64, i64)>()
            + self.windows.capacity() * size_of::<WindowAgg>()
            + self.distinct.capacity() * size_of::<DistinctAgg>()
            + self
                .distinct
                .iter()
                .map(|d| d.counts.capacity() * (size_of::<(u64, u32)>() + 1))
                .sum::<usize>()
            + self.risk.capacity() * size_of::<RiskAgg>()
    }
}

fn remove_one(counts: &mut FxHashMap<u64, u32>, key: u64) {
    if key == 0 {
        return;
    }
    if let Some(count) = counts.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
        }
    }
}

fn micros_to_major(micros: i128) -> f64 {
    micros as f64 / 1e6
}

/// Population standard deviation (in micro-units) from exact integer moments.
fn std_dev(count: u64, sum: i128, sum_sq: i128) -> f64 {
    let n = i128::from(count);
    let exact = n
        .checked_mul(sum_sq)
        .and_then(|a| sum.checked_mul(sum).and_then(|b| a.checked_sub(b)));
    match exact {
        Some(scaled_var) => (scaled_var.max(0) as f64).sqrt() / count as f64,
        None => {
            let mean = sum as f64 / count as f64;
            (sum_sq as f64 / count as f64 - mean * mean).max(0.0).sqrt()
        }
    }
}
