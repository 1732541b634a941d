//! Offline replay: history in, feature vectors out, through the same engine
//! that serves online. Historical labels are held back and fed to the engine's
//! feedback path `label_delay` after their transaction, as if a chargeback had
//! arrived then — so a training row never sees a label it could not have known.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use fraudlens_core::{Label, Transaction};

use crate::{FeatureEngine, LabelTarget};

/// Replays transactions in time order through a [`FeatureEngine`].
#[derive(Debug)]
pub struct Replay {
    engine: FeatureEngine,
    label_delay: i64,
    /// Fraud labels not yet known, ordered by when they become known (then by arrival).
    pending: BinaryHeap<Reverse<PendingLabel>>,
    n_pushed: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct PendingLabel {
    known_at: i64,
    seq: u64,
    target: LabelTarget,
}

impl Ord for PendingLabel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.known_at, self.seq).cmp(&(other.known_at, other.seq))
    }
}

impl PartialOrd for PendingLabel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Replay {
    /// Replays into `engine` (empty, or restored from a snapshot) with the
    /// spec's label delay.
    pub fn new(engine: FeatureEngine) -> Self {
        let label_delay = engine.spec().label_delay_ms();
        Self {
            engine,
            label_delay,
            pending: BinaryHeap::new(),
            n_pushed: 0,
        }
    }

    /// Applies the labels known by the transaction's time, then computes its
    /// features into `out`. A labeled transaction's fraud label is scheduled
    /// to become known `label_delay` later (legit labels change nothing: every
    /// transaction counts as legit until reported).
    pub fn push(&mut self, tx: &Transaction, out: &mut Vec<f64>) {
        let now = self
            .engine
            .clock()
            .map_or(tx.timestamp.as_millis(), |clock| clock.max(tx.timestamp.as_millis()));
        self.apply_known(now);
        self.engine.observe(tx, out);
        if tx.label == Some(Label::Fraud) {
            let known_at = tx.timestamp.as_millis().saturating_add(self.label_delay);
            let target = self.engine.label_target(tx);
            self.pending.push(Reverse(PendingLabel {
                known_at,
                seq: self.n_pushed,
                target,
            }));
        }
        self.n_pushed += 1;
    }

    /// The engine as of the last transaction pushed.
    pub fn engine(&self) -> &FeatureEngine {
        &self.engine
    }

    /// Ends the replay. Labels that become known by `labels_known_until` (ms
    /// since the epoch; `None` = all of them, i.e. every label in the history is
    /// known now) are applied, and the engine is handed over for online use.
    pub fn finish(mut self, labels_known_until: Option<i64>) -> FeatureEngine {
        self.apply_known(labels_known_until.unwrap_or(i64::MAX));
        self.engine
    }

    fn apply_known(&mut self, now: i64) {
        while self.pending.peek().is_some_and(|Reverse(label)| label.known_at <= now) {
            if let Some(Reverse(label)) = self.pending.pop() {
                self.engine.apply_label_target(&label.target, Label::Fraud);
            }
        }
    }
}
