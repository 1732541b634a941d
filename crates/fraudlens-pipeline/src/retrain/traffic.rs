//! A shadow model on the live traffic it scored: beside each stored
//! decision of the model compared against, the shadow's verdict on the same
//! feature vector (`fraudlens models shadow`): how often both decided the
//! same, how far their flagged sets overlap, and on the decisions with
//! matured labels both models' metrics, the served model's from its own
//! stored scores and decisions — what a promotion would have changed.
//! Decisions made by other models in the window are left out (counted), so
//! the served metrics are one model's.

use std::collections::HashMap;

use fraudlens_model::metrics::{average_precision, roc_auc};
use fraudlens_store::Store;
use serde::{Deserialize, Serialize};

use super::{RetrainError, RowCounts, Window, read_stored};
use fraudlens_core::{Decision, Timestamp};

/// One model's metrics on the shadowed traffic with matured labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficMetrics {
    /// Average precision of the scores (`None`: no fraud among the rows).
    pub average_precision: Option<f64>,
    /// ROC AUC (`None`: one class only).
    pub roc_auc: Option<f64>,
    /// Transactions flagged (review or decline).
    pub flagged: u64,
    /// Frauds among them.
    pub flagged_fraud: u64,
    /// Share of the frauds flagged (`None`: no fraud).
    pub recall: Option<f64>,
    /// Share of the flagged that are fraud (`None`: none flagged).
    pub precision: Option<f64>,
}

impl TrafficMetrics {
    fn of(scores: &[f64], flagged: &[bool], labels: &[bool]) -> Self {
        let frauds = labels.iter().filter(|fraud| **fraud).count() as u64;
        let n_flagged = flagged.iter().filter(|flagged| **flagged).count() as u64;
        let flagged_fraud = flagged
            .iter()
            .zip(labels)
            .filter(|(flagged, fraud)| **flagged && **fraud)
            .count() as u64;
        Self {
            average_precision: average_precision(scores, labels),
            roc_auc: roc_auc(scores, labels),
            flagged: n_flagged,
            flagged_fraud,
            recall: (frauds > 0).then(|| flagged_fraud as f64 / frauds as f64),
            precision: (n_flagged > 0).then(|| flagged_fraud as f64 / n_flagged as f64),
        }
    }
}

/// A shadow model against the served decisions of a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowTraffic {
    /// The served model: the decisions compared are its own.
    pub served_by: String,
    /// Its stored decisions in the window.
    pub decisions: u64,
    /// Of them, those the shadow scored (the rest: dropped while it fell behind, or before it was set).
    pub scored: u64,
    /// Decisions of other models in the window that the shadow scored: left out.
    pub other_served: u64,
    /// Share of them both models decided the same (approve, review, decline).
    pub agreement: f64,
    /// Flagged (review or decline) by the served model.
    pub flagged_served: u64,
    /// Flagged by the shadow.
    pub flagged_shadow: u64,
    /// Flagged by both.
    pub flagged_both: u64,
    /// Flagged by both over flagged by either (`None`: neither flagged any).
    pub flagged_overlap: Option<f64>,
    /// How the scored decisions were labelled (the label rule of [`super::stored_rows`]).
    pub counts: RowCounts,
    /// The served model's metrics on the labelled rows (its stored scores and decisions).
    pub served: TrafficMetrics,
    /// The shadow's on the same rows.
    pub shadow: TrafficMetrics,
}

/// `version`'s shadow scores of `window` beside the stored decisions of
/// `served_by` (`None`: it scored none of them).
pub async fn shadow_traffic(
    store: &dyn Store,
    version: &str,
    served_by: &str,
    window: Window,
    matured_before: Timestamp,
) -> Result<Option<ShadowTraffic>, RetrainError> {
    let scores = store.shadow_scores(version, window.from, window.to).await?;
    if scores.is_empty() {
        return Ok(None);
    }
    let mut shadow: HashMap<String, (f64, Decision)> = scores
        .into_iter()
        .map(|score| (score.transaction_id, (score.score, score.decision)))
        .collect();
    let mut traffic = ShadowTraffic {
        served_by: served_by.to_owned(),
        decisions: 0,
        scored: 0,
        other_served: 0,
        agreement: 0.0,
        flagged_served: 0,
        flagged_shadow: 0,
        flagged_both: 0,
        flagged_overlap: None,
        counts: RowCounts::default(),
        served: TrafficMetrics::default(),
        shadow: TrafficMetrics::default(),
    };
    let mut agreed = 0u64;
    // labelled rows: (served score, served flagged, shadow score, shadow flagged, fraud)
    let mut rows: Vec<(f64, bool, f64, bool, bool)> = Vec::new();
    read_stored(store, Some(window.from), |stored| {
        let decision = &stored.decision;
        if !window.contains(decision.event_time) {
            return Ok(());
        }
        let own = decision.model_version == served_by;
        traffic.decisions += u64::from(own);
        // each id once (a decision is stored once; the map's entry goes with it)
        let Some((shadow_score, shadow_decision)) = shadow.remove(&decision.transaction_id) else {
            return Ok(());
        };
        if !own {
            traffic.other_served += 1;
            return Ok(());
        }
        let (served_flagged, shadow_flagged) = (decision.decision.is_flagged(), shadow_decision.is_flagged());
        traffic.scored += 1;
        traffic.flagged_served += u64::from(served_flagged);
        traffic.flagged_shadow += u64::from(shadow_flagged);
        traffic.flagged_both += u64::from(served_flagged && shadow_flagged);
        agreed += u64::from(decision.decision == shadow_decision);
        if let Some(fraud) = traffic.counts.judge(stored, matured_before) {
            rows.push((decision.score, served_flagged, shadow_score, shadow_flagged, fraud));
        }
        Ok(())
    })
    .await?;
    if traffic.scored == 0 {
        return Ok(None);
    }
    traffic.agreement = agreed as f64 / traffic.scored as f64;
    let either = traffic.flagged_served + traffic.flagged_shadow - traffic.flagged_both;
    traffic.flagged_overlap = (either > 0).then(|| traffic.flagged_both as f64 / either as f64);
    let labels: Vec<bool> = rows.iter().map(|row| row.4).collect();
    let column = |pick: fn(&(f64, bool, f64, bool, bool)) -> f64| rows.iter().map(pick).collect::<Vec<f64>>();
    let flags = |pick: fn(&(f64, bool, f64, bool, bool)) -> bool| rows.iter().map(pick).collect::<Vec<bool>>();
    traffic.served = TrafficMetrics::of(&column(|row| row.0), &flags(|row| row.1), &labels);
    traffic.shadow = TrafficMetrics::of(&column(|row| row.2), &flags(|row| row.3), &labels);
    Ok(Some(traffic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_flags_against_labels() {
        let metrics = TrafficMetrics::of(
            &[0.9, 0.8, 0.2, 0.1],
            &[true, true, false, false],
            &[true, false, true, false],
        );
        assert_eq!((metrics.flagged, metrics.flagged_fraud), (2, 1));
        assert_eq!(metrics.recall, Some(0.5));
        assert_eq!(metrics.precision, Some(0.5));
        assert_eq!(metrics.roc_auc, Some(0.75));
        let none = TrafficMetrics::of(&[0.1], &[false], &[false]);
        assert_eq!(
            (none.recall, none.precision, none.average_precision),
            (None, None, None)
        );
    }
}
