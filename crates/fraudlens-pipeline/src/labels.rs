//! Labels: recorded in the store and fed to the entity state that observed
//! their transaction (the label-delayed risk features).

use fraudlens_core::{Label, Transaction};
use fraudlens_store::{NewLabel, StoreError, StoredDecision};

use crate::shards::EntityState;
use crate::{Pipeline, lock};

/// What [`Pipeline::apply_labels`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelsApplied {
    /// Labels that reached the live entity state.
    pub applied: usize,
    /// Positions (in the request) of labels whose transaction is not stored.
    pub unmatched: Vec<usize>,
}

impl Pipeline {
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
                Some(stored) => result.applied += usize::from(self.apply_review_label(&stored, label.label).await),
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
    pub async fn apply_review_label(&self, stored: &StoredDecision, label: Label) -> bool {
        if self.model().rows().is_some() {
            // a model of feature rows keeps no entity state: the label is stored, that is all
            return false;
        }
        if let Some(shared) = &self.config.shared_state {
            return match serde_json::from_str::<Transaction>(&stored.decision.body) {
                Ok(tx) => self.apply_label_shared(shared, &tx, label).await,
                Err(error) => {
                    tracing::warn!(%error, id = stored.decision.transaction_id, "stored transaction unreadable");
                    false
                }
            };
        }
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
            metrics::counter!("fraudlens_labels_for_other_shards_total").increment(1);
            return false;
        };
        apply(held.state.as_mut(), stored, label)
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
