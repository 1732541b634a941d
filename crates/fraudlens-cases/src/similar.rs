//! Similar past cases: exact nearest neighbours of a decision among the
//! flagged decisions stored before it.
//!
//! Two vectors per decision:
//! - the **explanation**: its reasons, the per-feature contributions to the
//!   log-odds, by feature name (a decision is explained by its top reasons;
//!   the rest count as 0). Cosine similarity: "flagged for the same reasons",
//!   whatever the size of the contributions.
//! - the **inputs**: its model input row, each feature standardised by its
//!   spread over the candidates of the same model version (missing values
//!   are left out; another version's columns may mean other features). A
//!   distance: how alike the transactions are.
//!
//! The ranking is `0.75 × reason similarity + 0.25 / (1 + input distance)`;
//! a decision without reasons is ranked on its inputs alone. The search is
//! exact: every candidate is scored (one pass, O(candidates × features)).

use rustc_hash::FxHashMap;
use serde::Serialize;

use fraudlens_core::Reason;
use fraudlens_store::StoredDecision;

/// Weight of the reasons in the ranking (the inputs have the rest).
const REASON_WEIGHT: f64 = 0.75;

/// A decision's explanation: contributions by feature name.
pub fn explanation(decision: &StoredDecision) -> FxHashMap<String, f64> {
    serde_json::from_str::<Vec<Reason>>(&decision.decision.reasons)
        .unwrap_or_default()
        .into_iter()
        .filter(|reason| reason.contribution.is_finite())
        .map(|reason| (reason.feature, reason.contribution))
        .collect()
}

/// Cosine similarity of two sparse vectors (0 when either is empty).
fn cosine(a: &FxHashMap<String, f64>, b: &FxHashMap<String, f64>) -> f64 {
    let norm = |v: &FxHashMap<String, f64>| v.values().map(|x| x * x).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let dot: f64 = a.iter().filter_map(|(k, x)| b.get(k).map(|y| x * y)).sum();
    dot / (na * nb)
}

/// A past case like the analysed one.
#[derive(Clone, Debug, Serialize)]
pub struct Neighbour {
    /// Index of the candidate it is.
    #[serde(skip)]
    pub index: usize,
    /// Cosine similarity of the reasons (−1 to 1; 0 when either has none).
    pub reason_similarity: f64,
    /// Standardised distance of the inputs (root mean square of the
    /// differences in standard deviations; `None` when no input compares).
    pub input_distance: Option<f64>,
    /// The ranking score.
    pub similarity: f64,
    /// Features among both decisions' reasons, pushing the same way.
    pub shared_reasons: Vec<String>,
}

/// The `k` candidates most like `query`, best first (the query itself and
/// other decisions of its id are never among them).
pub fn nearest(query: &StoredDecision, candidates: &[StoredDecision], k: usize) -> Vec<Neighbour> {
    let width = query.decision.features.len();
    let query_reasons = explanation(query);
    // inputs compare only between decisions of one model version: another
    // version's columns may mean other features (reasons compare by name)
    let comparable = |candidate: &StoredDecision| {
        candidate.decision.model_version == query.decision.model_version && candidate.decision.features.len() == width
    };
    // the spread of each input over the comparable candidates (two passes: a
    // constant column has no spread, not a rounding error's)
    let mut count = vec![0u64; width];
    let mut mean = vec![0.0; width];
    for candidate in candidates.iter().filter(|c| comparable(c)) {
        for (idx, value) in candidate.decision.features.iter().enumerate() {
            if value.is_finite() {
                count[idx] += 1;
                mean[idx] += value;
            }
        }
    }
    for (total, n) in mean.iter_mut().zip(&count) {
        *total /= (*n).max(1) as f64;
    }
    let mut squares = vec![0.0; width];
    for candidate in candidates.iter().filter(|c| comparable(c)) {
        for (idx, value) in candidate.decision.features.iter().enumerate() {
            if value.is_finite() {
                squares[idx] += (value - mean[idx]) * (value - mean[idx]);
            }
        }
    }
    let spread: Vec<f64> = (0..width)
        .map(|idx| {
            if count[idx] < 2 {
                return 0.0;
            }
            let sd = (squares[idx] / count[idx] as f64).sqrt();
            // below a millionth of the mean's size: constant, up to rounding
            if sd <= 1e-9 * mean[idx].abs().max(1.0) { 0.0 } else { sd }
        })
        .collect();
    let mut scored: Vec<Neighbour> = candidates
        .iter()
        .enumerate()
        .filter(|(_, candidate)| candidate.decision.transaction_id != query.decision.transaction_id)
        .map(|(index, candidate)| {
            let reasons = explanation(candidate);
            let reason_similarity = cosine(&query_reasons, &reasons);
            let input_distance = if comparable(candidate) {
                distance(&query.decision.features, &candidate.decision.features, &spread)
            } else {
                None
            };
            let inputs = input_distance.map_or(0.0, |d| 1.0 / (1.0 + d));
            let similarity = if query_reasons.is_empty() {
                inputs
            } else {
                REASON_WEIGHT * reason_similarity + (1.0 - REASON_WEIGHT) * inputs
            };
            let mut shared_reasons: Vec<String> = query_reasons
                .iter()
                .filter(|(name, x)| reasons.get(*name).is_some_and(|y| x.signum() == y.signum()))
                .map(|(name, _)| name.clone())
                .collect();
            shared_reasons.sort();
            Neighbour {
                index,
                reason_similarity,
                input_distance,
                similarity,
                shared_reasons,
            }
        })
        .collect();
    // best first; ties: the newer case (candidates come newest first); a
    // similarity that is not a number ranks last
    let rank = |n: &Neighbour| {
        if n.similarity.is_nan() {
            f64::NEG_INFINITY
        } else {
            n.similarity
        }
    };
    let order = |a: &Neighbour, b: &Neighbour| rank(b).total_cmp(&rank(a)).then(a.index.cmp(&b.index));
    if k < scored.len() {
        // the k best without sorting them all
        scored.select_nth_unstable_by(k, order);
        scored.truncate(k);
    }
    scored.sort_by(order);
    scored
}

/// Root mean square of standardised differences over the inputs both have.
fn distance(a: &[f64], b: &[f64], spread: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() != spread.len() {
        return None;
    }
    let (mut total, mut n) = (0.0, 0u32);
    for ((x, y), s) in a.iter().zip(b).zip(spread) {
        if x.is_finite() && y.is_finite() && *s > 0.0 {
            let z = (x - y) / s;
            total += z * z;
            n += 1;
        }
    }
    (n > 0).then(|| (total / f64::from(n)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudlens_core::{Decision, Timestamp};
    use fraudlens_store::NewDecision;

    fn decision(id: &str, reasons: &[(&str, f64)], features: &[f64]) -> StoredDecision {
        let reasons: Vec<Reason> = reasons
            .iter()
            .map(|(feature, contribution)| Reason {
                feature: (*feature).to_owned(),
                value: None,
                category: None,
                contribution: *contribution,
            })
            .collect();
        StoredDecision {
            seq: 0,
            decision: NewDecision {
                transaction_id: id.to_owned(),
                fingerprint: String::new(),
                event_time: Timestamp::from_millis(0),
                received_at: Timestamp::from_millis(0),
                entity: None,
                amount_minor: 0,
                currency: String::new(),
                body: String::new(),
                score: 0.9,
                probability: Some(0.9),
                raw_score: None,
                anomaly_score: None,
                decision: Decision::Review,
                reasons: serde_json::to_string(&reasons).unwrap_or_default(),
                features: features.to_vec(),
                model_version: "m".to_owned(),
                latency_us: 0,
                review_status: None,
                shard: None,
            },
            review_updated_at: None,
            label: None,
        }
    }

    #[test]
    fn the_same_reasons_rank_first_and_the_query_is_never_its_own_neighbour() {
        let query = decision("q", &[("amount", 2.0), ("terminal_risk", 1.0)], &[100.0, 1.0]);
        let candidates = vec![
            query.clone(),
            decision("velocity", &[("tx_count_1d", 3.0)], &[100.0, 1.0]),
            decision("same", &[("amount", 4.0), ("terminal_risk", 2.0)], &[300.0, 0.0]),
            decision("half", &[("amount", 2.0), ("tx_count_1d", 2.0)], &[100.0, 1.0]),
        ];
        let found = nearest(&query, &candidates, 10);
        let ids: Vec<&str> = found
            .iter()
            .map(|n| candidates[n.index].decision.transaction_id.as_str())
            .collect();
        assert_eq!(ids, ["same", "half", "velocity"]);
        assert!(
            (found[0].reason_similarity - 1.0).abs() < 1e-12,
            "same direction, twice the size"
        );
        assert_eq!(found[0].shared_reasons, ["amount", "terminal_risk"]);
        assert_eq!(found[2].reason_similarity, 0.0);
        assert_eq!(found[2].input_distance, Some(0.0));
        assert_eq!(nearest(&query, &candidates, 1).len(), 1);
    }

    #[test]
    fn without_reasons_the_inputs_decide() {
        let query = decision("q", &[], &[1.0, 10.0]);
        let candidates = vec![
            decision("far", &[("a", 1.0)], &[5.0, 50.0]),
            decision("near", &[("a", 1.0)], &[1.0, 12.0]),
            decision("other width", &[("a", 1.0)], &[1.0]),
        ];
        let found = nearest(&query, &candidates, 3);
        assert_eq!(candidates[found[0].index].decision.transaction_id, "near");
        assert_eq!(found[2].input_distance, None);
        assert!(found[0].similarity > found[1].similarity);
    }
}
