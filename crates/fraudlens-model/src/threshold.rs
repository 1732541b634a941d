//! Decision thresholds: when a fraud probability sends a transaction to manual
//! review, and when it is declined outright.
//!
//! [`choose_thresholds`] sorts the validation set once and sweeps every
//! distinct probability as a candidate threshold (O(n log n)):
//!
//! - the `review` threshold optimises a [`ThresholdObjective`] (max F1, min
//!   expected cost, a target precision or a target recall);
//! - the `decline` threshold is the lowest threshold at or above `review`
//!   whose precision reaches `decline_precision`, or none at all;
//! - or, planned by analyst capacity ([`ThresholdObjective::ReviewCapacity`]),
//!   the `decline` threshold is the lowest whose precision reaches
//!   `decline_precision`, and `review` opens the band below it to as many
//!   transactions per day as the analysts can check.
//!
//! A probability `p` is reviewed when `p >= review` and declined when
//! `p >= decline` ([`Thresholds::decide`]).

use fraudlens_core::Decision;
use serde::{Deserialize, Serialize};

use crate::metrics::Confusion;

/// What the review threshold optimises.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ThresholdObjective {
    /// Maximise F1. Among equal F1, the highest threshold (fewest reviews).
    MaxF1,
    /// Minimise the expected cost: the amounts of the frauds let through plus
    /// `review_cost` per reviewed transaction. Among equal costs, the highest
    /// threshold.
    MinCost {
        /// Cost of reviewing one transaction, in the unit of the amounts.
        review_cost: f64,
    },
    /// The lowest threshold (so the highest recall) whose precision is at
    /// least `precision`, in (0, 1].
    TargetPrecision {
        /// Required precision.
        precision: f64,
    },
    /// The highest threshold (so the fewest reviews) whose recall is at least
    /// `recall`, in (0, 1].
    TargetRecall {
        /// Required recall.
        recall: f64,
    },
    /// Fill the analysts' queue. The decline threshold is chosen first and on
    /// its own: the lowest whose precision reaches the decline precision.
    /// The review threshold is then the lowest whose review band (reviewed,
    /// not declined) holds at most `per_day` transactions per day of the
    /// validation rows. When even the next group of equal probabilities
    /// would not fit, the band stays empty — unless nothing is declined:
    /// the top group is then reviewed whatever its size, as with every
    /// objective (the report warns when that exceeds the capacity).
    ReviewCapacity {
        /// Reviews the analysts can do per day, > 0.
        per_day: f64,
    },
}

/// Review and decline thresholds, `review <= decline`.
///
/// The invariant is checked by [`Thresholds::new`] and on deserialisation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThresholdsRaw")]
pub struct Thresholds {
    review: f64,
    /// `None`: never decline automatically (serialised as `null`). An
    /// explicit "none" rather than a threshold above 1, which a probability
    /// could reach by rounding and JSON could not hold as infinity.
    decline: Option<f64>,
}

impl Thresholds {
    /// Checked thresholds: both finite, and `review <= decline`.
    pub fn new(review: f64, decline: Option<f64>) -> Result<Self, ThresholdError> {
        let valid = review.is_finite() && decline.is_none_or(|decline| decline.is_finite() && review <= decline);
        if !valid {
            return Err(ThresholdError::InvalidThresholds { review, decline });
        }
        Ok(Self { review, decline })
    }

    /// Probabilities at or above this go to review (or decline).
    pub fn review(&self) -> f64 {
        self.review
    }

    /// Probabilities at or above this are declined; `None` = never.
    pub fn decline(&self) -> Option<f64> {
        self.decline
    }

    /// The decision for `probability` (NaN is approved: it compares below
    /// every threshold).
    pub fn decide(&self, probability: f64) -> Decision {
        if self.decline.is_some_and(|decline| probability >= decline) {
            Decision::Decline
        } else if probability >= self.review {
            Decision::Review
        } else {
            Decision::Approve
        }
    }
}

/// Quality of the decision "flag when `probability >= threshold`" on the
/// validation set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The threshold.
    pub threshold: f64,
    /// Counts of the decision.
    pub confusion: Confusion,
    /// Transactions flagged, `tp + fp`.
    pub flagged: u64,
    /// [`Confusion::precision`].
    pub precision: f64,
    /// [`Confusion::recall`].
    pub recall: f64,
    /// [`Confusion::f1`].
    pub f1: f64,
}

/// The thresholds chosen by [`choose_thresholds`] and how they perform on the
/// set they were chosen on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The objective the review threshold optimises.
    pub objective: ThresholdObjective,
    /// The precision asked of the decline threshold.
    pub decline_precision_target: f64,
    /// Everything at or above the review threshold.
    pub at_review: OperatingPoint,
    /// Everything at or above the decline threshold; `None` when nothing is
    /// declined. Its `precision` is the decline precision achieved.
    pub at_decline: Option<OperatingPoint>,
    /// Sum of the amounts of the frauds below the review threshold.
    pub missed_fraud_amount: f64,
    /// For [`ThresholdObjective::MinCost`] only: `missed_fraud_amount +
    /// review_cost × at_review.flagged`.
    pub expected_cost: Option<f64>,
    /// Days the validation rows span (first to last transaction); `None`
    /// without transaction times (tabular data) and in artifacts written
    /// before it was recorded.
    #[serde(default)]
    pub valid_days: Option<f64>,
}

/// The review band: transactions reviewed and not declined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReviewBand {
    /// Validation transactions in the band.
    pub flagged: u64,
    /// Frauds among them.
    pub frauds: u64,
    /// `flagged` per day of the validation rows, when their span is known.
    pub per_day: Option<f64>,
}

impl ThresholdChoice {
    /// What the analysts would have received on the validation rows.
    pub fn review_band(&self) -> ReviewBand {
        let (declined, declined_frauds) = self
            .at_decline
            .map_or((0, 0), |point| (point.flagged, point.confusion.tp));
        // saturating: a hand-edited artifact must not panic a report
        let flagged = self.at_review.flagged.saturating_sub(declined);
        ReviewBand {
            flagged,
            frauds: self.at_review.confusion.tp.saturating_sub(declined_frauds),
            per_day: self.valid_days.map(|days| flagged as f64 / days),
        }
    }
}

/// Why no thresholds could be chosen.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// Empty validation set.
    #[error("cannot choose thresholds without rows")]
    NoRows,
    /// The validation set has no fraud, so precision and recall mean nothing.
    #[error("cannot choose thresholds without a fraud among the {n_rows} rows")]
    NoPositives {
        /// Rows given.
        n_rows: usize,
    },
    /// The input slices differ in length.
    #[error("probabilities, labels and amounts differ in length ({probabilities}, {labels}, {amounts})")]
    LengthMismatch {
        /// Length of the probabilities.
        probabilities: usize,
        /// Length of the labels.
        labels: usize,
        /// Length of the amounts.
        amounts: usize,
    },
    /// A probability is NaN or infinite.
    #[error("probability of row {row} is not finite ({value})")]
    NonFiniteProbability {
        /// Row index.
        row: usize,
        /// The value.
        value: f64,
    },
    /// An amount is negative, NaN or infinite.
    #[error("amount of row {row} is not a finite non-negative number ({value})")]
    InvalidAmount {
        /// Row index.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A target precision or recall (or the decline precision) outside (0, 1].
    #[error("{what} must be in (0, 1] (got {value})")]
    InvalidTarget {
        /// Which target.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A negative or non-finite review cost.
    #[error("review cost must be a finite non-negative number (got {0})")]
    InvalidReviewCost(f64),
    /// A review capacity that is not a finite positive number.
    #[error("review capacity per day must be a finite positive number (got {0})")]
    InvalidCapacity(f64),
    /// A review capacity per day, but no span of days to plan over.
    #[error(
        "a review capacity per day needs the validation rows' transaction times (event mode) spanning more than an instant"
    )]
    CapacityNeedsDays,
    /// No candidate threshold reaches the target precision.
    #[error("no threshold reaches precision {target} (best is {best})")]
    TargetUnreachable {
        /// The target.
        target: f64,
        /// The best precision any threshold reaches.
        best: f64,
    },
    /// Thresholds that are not finite or where `review > decline`.
    #[error("invalid thresholds: review {review} must be finite and at most decline {decline:?}")]
    InvalidThresholds {
        /// The review threshold.
        review: f64,
        /// The decline threshold.
        decline: Option<f64>,
    },
}

/// Chooses review and decline thresholds on a labelled validation set.
///
/// Candidates are the distinct values of `probabilities`, so the top-scored
/// group is always flagged for review. `amounts` (one per transaction, only
/// frauds' amounts matter) give the cost of a missed fraud. The decline
/// threshold is the lowest candidate at or above `review` whose precision
/// reaches `decline_precision` (in (0, 1]); when none does, nothing is
/// declined automatically ([`Thresholds::decline`] is `None`).
/// [`ThresholdObjective::ReviewCapacity`] chooses the decline threshold
/// first and needs `valid_days`, the days the rows span.
///
/// O(n log n): one sort, then linear sweeps.
pub fn choose_thresholds(
    probabilities: &[f64],
    labels: &[bool],
    amounts: &[f64],
    objective: ThresholdObjective,
    decline_precision: f64,
    valid_days: Option<f64>,
) -> Result<ThresholdChoice, ThresholdError> {
    validate(probabilities, labels, amounts, objective, decline_precision)?;
    let valid_days = valid_days.filter(|days| days.is_finite() && *days > 0.0);
    if matches!(objective, ThresholdObjective::ReviewCapacity { .. }) && valid_days.is_none() {
        return Err(ThresholdError::CapacityNeedsDays);
    }
    let sweep = Sweep::new(probabilities, labels, amounts);
    if sweep.n_pos == 0 {
        return Err(ThresholdError::NoPositives {
            n_rows: probabilities.len(),
        });
    }
    let review_idx = match objective {
        ThresholdObjective::ReviewCapacity { per_day } => {
            let budget = (per_day * valid_days.unwrap_or(0.0)).floor();
            let decline_idx = sweep.lowest_reaching_precision(sweep.groups.len(), decline_precision);
            let first = decline_idx.unwrap_or(0);
            let declined = decline_idx.map_or(0, |group_idx| sweep.flagged(group_idx));
            // flagged only grows downwards: the last candidate whose band fits
            let review_idx = (first..sweep.groups.len())
                .rev()
                .find(|&group_idx| (sweep.flagged(group_idx) - declined) as f64 <= budget)
                .unwrap_or(first);
            return sweep.choice(review_idx, decline_idx, objective, decline_precision, valid_days);
        }
        ThresholdObjective::MaxF1 => sweep.argmax_highest(|group_idx| sweep.confusion(group_idx).f1()),
        ThresholdObjective::MinCost { review_cost } => {
            sweep.argmax_highest(|group_idx| -sweep.expected_cost(group_idx, review_cost))
        }
        ThresholdObjective::TargetPrecision { precision } => sweep
            .lowest_reaching_precision(sweep.groups.len(), precision)
            .ok_or_else(|| ThresholdError::TargetUnreachable {
                target: precision,
                best: sweep.best_precision(),
            })?,
        // Recall only grows as the threshold goes down and reaches 1 at the
        // lowest candidate, so a valid target is always met.
        ThresholdObjective::TargetRecall { recall } => (0..sweep.groups.len())
            .find(|&group_idx| sweep.confusion(group_idx).recall() >= recall)
            .unwrap_or(sweep.groups.len() - 1),
    };
    let decline_idx = sweep.lowest_reaching_precision(review_idx + 1, decline_precision);
    sweep.choice(review_idx, decline_idx, objective, decline_precision, valid_days)
}

fn validate(
    probabilities: &[f64],
    labels: &[bool],
    amounts: &[f64],
    objective: ThresholdObjective,
    decline_precision: f64,
) -> Result<(), ThresholdError> {
    if probabilities.len() != labels.len() || labels.len() != amounts.len() {
        return Err(ThresholdError::LengthMismatch {
            probabilities: probabilities.len(),
            labels: labels.len(),
            amounts: amounts.len(),
        });
    }
    if probabilities.is_empty() {
        return Err(ThresholdError::NoRows);
    }
    if let Some(row) = probabilities.iter().position(|value| !value.is_finite()) {
        return Err(ThresholdError::NonFiniteProbability {
            row,
            value: probabilities[row],
        });
    }
    if let Some(row) = amounts.iter().position(|value| !(value.is_finite() && *value >= 0.0)) {
        return Err(ThresholdError::InvalidAmount {
            row,
            value: amounts[row],
        });
    }
    let check_target = |what: &'static str, value: f64| {
        if value > 0.0 && value <= 1.0 {
            Ok(())
        } else {
            Err(ThresholdError::InvalidTarget { what, value })
        }
    };
    match objective {
        ThresholdObjective::MaxF1 => {}
        ThresholdObjective::MinCost { review_cost } => {
            if !(review_cost.is_finite() && review_cost >= 0.0) {
                return Err(ThresholdError::InvalidReviewCost(review_cost));
            }
        }
        ThresholdObjective::TargetPrecision { precision } => check_target("target precision", precision)?,
        ThresholdObjective::TargetRecall { recall } => check_target("target recall", recall)?,
        ThresholdObjective::ReviewCapacity { per_day } => {
            if !(per_day.is_finite() && per_day > 0.0) {
                return Err(ThresholdError::InvalidCapacity(per_day));
            }
        }
    }
    check_target("decline precision", decline_precision)
}

#[derive(Clone, Debug, Deserialize)]
struct ThresholdsRaw {
    review: f64,
    decline: Option<f64>,
}

impl TryFrom<ThresholdsRaw> for Thresholds {
    type Error = ThresholdError;

    fn try_from(raw: ThresholdsRaw) -> Result<Self, Self::Error> {
        Self::new(raw.review, raw.decline)
    }
}

/// Cumulative counts at every candidate threshold, highest first: candidate
/// `group_idx` flags groups `0..=group_idx`.
struct Sweep {
    groups: Vec<Group>,
    /// Frauds flagged at each candidate.
    tp: Vec<u64>,
    /// Legitimate transactions flagged at each candidate.
    fp: Vec<u64>,
    /// Sum of the fraud amounts below each candidate, summed from the bottom
    /// so there is no cancellation.
    missed_amount: Vec<f64>,
    n_pos: u64,
    n_neg: u64,
}

struct Group {
    score: f64,
    n_pos: u64,
    n_neg: u64,
    fraud_amount: f64,
}

impl Sweep {
    fn new(probabilities: &[f64], labels: &[bool], amounts: &[f64]) -> Self {
        let mut rows: Vec<(f64, bool, f64)> = probabilities
            .iter()
            .zip(labels)
            .zip(amounts)
            .map(|((&probability, &label), &amount)| (probability, label, amount))
            .collect();
        rows.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut groups: Vec<Group> = Vec::new();
        for (score, label, amount) in rows {
            let fraud_amount = if label { amount } else { 0.0 };
            match groups.last_mut() {
                Some(group) if group.score == score => {
                    group.n_pos += u64::from(label);
                    group.n_neg += u64::from(!label);
                    group.fraud_amount += fraud_amount;
                }
                _ => groups.push(Group {
                    score,
                    n_pos: u64::from(label),
                    n_neg: u64::from(!label),
                    fraud_amount,
                }),
            }
        }
        let mut tp = Vec::with_capacity(groups.len());
        let mut fp = Vec::with_capacity(groups.len());
        let (mut n_pos, mut n_neg) = (0, 0);
        for group in &groups {
            n_pos += group.n_pos;
            n_neg += group.n_neg;
            tp.push(n_pos);
            fp.push(n_neg);
        }
        let mut missed_amount = vec![0.0; groups.len()];
        for group_idx in (0..groups.len().saturating_sub(1)).rev() {
            missed_amount[group_idx] = missed_amount[group_idx + 1] + groups[group_idx + 1].fraud_amount;
        }
        Self {
            groups,
            tp,
            fp,
            missed_amount,
            n_pos,
            n_neg,
        }
    }

    fn confusion(&self, group_idx: usize) -> Confusion {
        Confusion {
            tp: self.tp[group_idx],
            fp: self.fp[group_idx],
            tn: self.n_neg - self.fp[group_idx],
            fn_: self.n_pos - self.tp[group_idx],
        }
    }

    fn expected_cost(&self, group_idx: usize, review_cost: f64) -> f64 {
        self.missed_amount[group_idx] + review_cost * self.flagged(group_idx) as f64
    }

    /// Transactions flagged at candidate `group_idx`.
    fn flagged(&self, group_idx: usize) -> u64 {
        self.tp[group_idx] + self.fp[group_idx]
    }

    fn choice(
        &self,
        review_idx: usize,
        decline_idx: Option<usize>,
        objective: ThresholdObjective,
        decline_precision: f64,
        valid_days: Option<f64>,
    ) -> Result<ThresholdChoice, ThresholdError> {
        let thresholds = Thresholds::new(
            self.groups[review_idx].score,
            decline_idx.map(|group_idx| self.groups[group_idx].score),
        )?;
        Ok(ThresholdChoice {
            thresholds,
            objective,
            decline_precision_target: decline_precision,
            at_review: self.operating_point(review_idx),
            at_decline: decline_idx.map(|group_idx| self.operating_point(group_idx)),
            missed_fraud_amount: self.missed_amount[review_idx],
            expected_cost: match objective {
                ThresholdObjective::MinCost { review_cost } => Some(self.expected_cost(review_idx, review_cost)),
                _ => None,
            },
            valid_days,
        })
    }

    fn operating_point(&self, group_idx: usize) -> OperatingPoint {
        let confusion = self.confusion(group_idx);
        OperatingPoint {
            threshold: self.groups[group_idx].score,
            confusion,
            flagged: confusion.flagged(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
        }
    }

    /// The candidate with the largest `value`, the highest threshold among
    /// equals.
    fn argmax_highest(&self, value: impl Fn(usize) -> f64) -> usize {
        let mut best_idx = 0;
        let mut best = value(0);
        for group_idx in 1..self.groups.len() {
            let candidate = value(group_idx);
            if candidate > best {
                best = candidate;
                best_idx = group_idx;
            }
        }
        best_idx
    }

    /// The lowest threshold among the first `n_candidates` whose precision
    /// reaches `target`.
    fn lowest_reaching_precision(&self, n_candidates: usize, target: f64) -> Option<usize> {
        (0..n_candidates)
            .rev()
            .find(|&group_idx| self.confusion(group_idx).precision() >= target)
    }

    fn best_precision(&self) -> f64 {
        (0..self.groups.len())
            .map(|group_idx| self.confusion(group_idx).precision())
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::metrics::confusion_at;

    /// Probability, fraud, amount; the frauds' amounts sum to 780.
    const ROWS: [(f64, bool, f64); 10] = [
        (0.5, false, 5.0),
        (0.95, true, 100.0),
        (0.8, false, 10.0),
        (0.1, false, 5.0),
        (0.9, true, 50.0),
        (0.7, true, 200.0),
        (0.6, true, 30.0),
        (0.4, false, 5.0),
        (0.3, true, 400.0),
        (0.2, false, 5.0),
    ];

    fn columns(rows: &[(f64, bool, f64)]) -> (Vec<f64>, Vec<bool>, Vec<f64>) {
        (
            rows.iter().map(|row| row.0).collect(),
            rows.iter().map(|row| row.1).collect(),
            rows.iter().map(|row| row.2).collect(),
        )
    }

    fn choose(rows: &[(f64, bool, f64)], objective: ThresholdObjective, decline_precision: f64) -> ThresholdChoice {
        let (probabilities, labels, amounts) = columns(rows);
        choose_thresholds(&probabilities, &labels, &amounts, objective, decline_precision, None).unwrap()
    }

    /// Thresholds chosen on [`ROWS`] against the expected review and decline.
    fn check(objective: ThresholdObjective, decline_precision: f64, review: f64, decline: Option<f64>) {
        let choice = choose(&ROWS, objective, decline_precision);
        assert_eq!(
            (choice.thresholds.review(), choice.thresholds.decline()),
            (review, decline),
            "{objective:?}, decline precision {decline_precision}"
        );
        assert_eq!(choice.at_review.threshold, review);
        assert_eq!(choice.at_decline.map(|point| point.threshold), decline);
        assert_eq!(choice.objective, objective);
    }

    // Cumulative from the top of ROWS (probability: tp, fp, precision, recall, f1):
    // 0.95: 1 0 1 .2 .33 | 0.9: 2 0 1 .4 .57 | 0.8: 2 1 .67 .4 .5 | 0.7: 3 1 .75 .6 .67
    // 0.6: 4 1 .8 .8 .8  | 0.5: 4 2 .67 .8 .73 | 0.4: 4 3 .57 .8 .67 | 0.3: 5 3 .625 1 .77
    // 0.2: 5 4 .56 1 .71 | 0.1: 5 5 .5 1 .67

    #[test]
    fn max_f1_takes_the_best_f1() {
        check(ThresholdObjective::MaxF1, 0.9, 0.6, Some(0.9));
        let choice = choose(&ROWS, ThresholdObjective::MaxF1, 0.9);
        assert_eq!(choice.at_review.flagged, 5);
        assert_eq!(
            (choice.at_review.precision, choice.at_review.recall, choice.at_review.f1),
            (0.8, 0.8, 0.8)
        );
        // Frauds below 0.6: only the 400 at 0.3.
        assert_eq!((choice.missed_fraud_amount, choice.expected_cost), (400.0, None));
    }

    #[test]
    fn decline_is_the_lowest_threshold_reaching_its_precision() {
        // At or above review 0.6, precision 0.75 is first reached going down at 0.6 itself.
        check(ThresholdObjective::MaxF1, 0.75, 0.6, Some(0.6));
        let choice = choose(&ROWS, ThresholdObjective::MaxF1, 0.9);
        let at_decline = choice.at_decline.unwrap();
        assert_eq!((at_decline.precision, at_decline.flagged), (1.0, 2));
        assert_eq!(choice.decline_precision_target, 0.9);
    }

    #[test]
    fn min_cost_weighs_missed_amounts_against_reviews() {
        // Cost = missed fraud amount + review_cost × flagged.
        // review_cost 20: 0.3 costs 0 + 8·20 = 160, the minimum.
        check(ThresholdObjective::MinCost { review_cost: 20.0 }, 0.9, 0.3, Some(0.9));
        let choice = choose(&ROWS, ThresholdObjective::MinCost { review_cost: 20.0 }, 0.9);
        assert_eq!((choice.expected_cost, choice.missed_fraud_amount), (Some(160.0), 0.0));
        // review_cost 100: reviewing is dear, 0.95 costs 680 + 100 = 780.
        check(
            ThresholdObjective::MinCost { review_cost: 100.0 },
            0.9,
            0.95,
            Some(0.95),
        );
        // review_cost 0: 0.3, 0.2 and 0.1 all cost 0; the highest wins.
        check(ThresholdObjective::MinCost { review_cost: 0.0 }, 0.9, 0.3, Some(0.9));
    }

    #[test]
    fn target_precision_takes_the_lowest_threshold_reaching_it() {
        // Precision is not monotone: 0.8 misses 0.75 but 0.6 reaches it again.
        check(
            ThresholdObjective::TargetPrecision { precision: 0.75 },
            0.9,
            0.6,
            Some(0.9),
        );
        check(
            ThresholdObjective::TargetPrecision { precision: 0.85 },
            0.9,
            0.9,
            Some(0.9),
        );
        check(
            ThresholdObjective::TargetPrecision { precision: 1.0 },
            1.0,
            0.9,
            Some(0.9),
        );
        check(
            ThresholdObjective::TargetPrecision { precision: 0.5 },
            0.9,
            0.1,
            Some(0.9),
        );
    }

    #[test]
    fn target_recall_takes_the_highest_threshold_reaching_it() {
        check(ThresholdObjective::TargetRecall { recall: 0.6 }, 0.9, 0.7, Some(0.9));
        check(ThresholdObjective::TargetRecall { recall: 0.8 }, 0.9, 0.6, Some(0.9));
        check(ThresholdObjective::TargetRecall { recall: 1.0 }, 0.9, 0.3, Some(0.9));
        check(ThresholdObjective::TargetRecall { recall: 0.01 }, 0.9, 0.95, Some(0.95));
    }

    /// The most suspicious transaction is legitimate: precision never passes ½.
    const POOR_ROWS: [(f64, bool, f64); 4] = [(0.9, false, 1.0), (0.8, true, 1.0), (0.7, false, 1.0), (0.6, true, 1.0)];

    #[test]
    fn nothing_is_declined_when_no_threshold_is_precise_enough() {
        let choice = choose(&POOR_ROWS, ThresholdObjective::MaxF1, 0.9);
        assert_eq!(choice.thresholds.decline(), None);
        assert_eq!(choice.at_decline, None);
        assert_eq!(choice.thresholds.review(), 0.6);
    }

    #[test]
    fn tied_probabilities_are_one_candidate() {
        let rows = [(0.5, true, 1.0), (0.5, false, 1.0), (0.5, false, 1.0), (0.2, true, 1.0)];
        let choice = choose(&rows, ThresholdObjective::TargetRecall { recall: 0.5 }, 0.3);
        assert_eq!(choice.at_review.flagged, 3);
        assert_eq!(choice.at_review.confusion.tp, 1);
        assert_eq!(choice.thresholds.decline(), Some(0.5));
    }

    fn check_error(
        rows: &[(f64, bool, f64)],
        objective: ThresholdObjective,
        decline_precision: f64,
        expected: ThresholdError,
    ) {
        let (probabilities, labels, amounts) = columns(rows);
        let error =
            choose_thresholds(&probabilities, &labels, &amounts, objective, decline_precision, None).unwrap_err();
        assert_eq!(error, expected);
    }

    #[test]
    fn bad_inputs_are_refused() {
        use ThresholdObjective::*;
        check_error(&[], MaxF1, 0.9, ThresholdError::NoRows);
        check_error(
            &[(0.3, false, 1.0)],
            MaxF1,
            0.9,
            ThresholdError::NoPositives { n_rows: 1 },
        );
        check_error(
            &POOR_ROWS,
            TargetPrecision { precision: 0.9 },
            0.9,
            ThresholdError::TargetUnreachable { target: 0.9, best: 0.5 },
        );
        let invalid_target = |what, value| ThresholdError::InvalidTarget { what, value };
        check_error(
            &ROWS,
            TargetPrecision { precision: 0.0 },
            0.9,
            invalid_target("target precision", 0.0),
        );
        check_error(
            &ROWS,
            TargetRecall { recall: 1.5 },
            0.9,
            invalid_target("target recall", 1.5),
        );
        check_error(&ROWS, MaxF1, 0.0, invalid_target("decline precision", 0.0));
        check_error(
            &ROWS,
            MinCost { review_cost: -1.0 },
            0.9,
            ThresholdError::InvalidReviewCost(-1.0),
        );
        check_error(
            &ROWS,
            ReviewCapacity { per_day: 0.0 },
            0.9,
            ThresholdError::InvalidCapacity(0.0),
        );
        // a capacity per day needs days: none given (tabular rows), or an instant
        check_error(
            &ROWS,
            ReviewCapacity { per_day: 5.0 },
            0.9,
            ThresholdError::CapacityNeedsDays,
        );
        let (probabilities, labels, amounts) = columns(&ROWS);
        let instant = choose_thresholds(
            &probabilities,
            &labels,
            &amounts,
            ReviewCapacity { per_day: 5.0 },
            0.9,
            Some(0.0),
        );
        assert_eq!(instant, Err(ThresholdError::CapacityNeedsDays));
        check_error(
            &[(0.3, true, 1.0), (f64::INFINITY, false, 1.0)],
            MaxF1,
            0.9,
            ThresholdError::NonFiniteProbability {
                row: 1,
                value: f64::INFINITY,
            },
        );
        check_error(
            &[(0.3, true, -2.0)],
            MaxF1,
            0.9,
            ThresholdError::InvalidAmount { row: 0, value: -2.0 },
        );
        let error = choose_thresholds(&[0.5], &[true, false], &[1.0], MaxF1, 0.9, None).unwrap_err();
        assert_eq!(
            error,
            ThresholdError::LengthMismatch {
                probabilities: 1,
                labels: 2,
                amounts: 1
            }
        );
        // NaN is outside (0, 1] too (and unequal to itself, so match the variant).
        let (probabilities, labels, amounts) = columns(&ROWS);
        let nan_target = choose_thresholds(
            &probabilities,
            &labels,
            &amounts,
            TargetRecall { recall: f64::NAN },
            0.9,
            None,
        );
        assert!(matches!(
            nan_target,
            Err(ThresholdError::InvalidTarget {
                what: "target recall",
                ..
            })
        ));
        assert_eq!(
            ThresholdError::InvalidReviewCost(-1.0).to_string(),
            "review cost must be a finite non-negative number (got -1)"
        );
    }

    fn with_capacity(per_day: f64, days: f64, decline_precision: f64) -> ThresholdChoice {
        let (probabilities, labels, amounts) = columns(&ROWS);
        let objective = ThresholdObjective::ReviewCapacity { per_day };
        choose_thresholds(
            &probabilities,
            &labels,
            &amounts,
            objective,
            decline_precision,
            Some(days),
        )
        .unwrap()
    }

    #[test]
    fn capacity_declines_the_precise_top_and_fills_the_band_below_it() {
        // decline precision 1: the lowest threshold at precision 1 is 0.9 (2 flagged, both frauds)
        let max_f1 = choose(&ROWS, ThresholdObjective::MaxF1, 1.0);
        assert_eq!(
            (max_f1.thresholds.review(), max_f1.thresholds.decline()),
            (0.6, Some(0.9))
        );
        // 2 reviews per day over 2 days: 4 below the decline threshold (0.8, 0.7, 0.6, 0.5)
        let choice = with_capacity(2.0, 2.0, 1.0);
        assert_eq!(
            (choice.thresholds.review(), choice.thresholds.decline()),
            (0.5, Some(0.9))
        );
        let band = choice.review_band();
        assert_eq!((band.flagged, band.frauds, band.per_day), (4, 2, Some(2.0)));
        assert_eq!(choice.valid_days, Some(2.0));
        // a budget that is not whole rounds down: 2.9 over 1 day = 2 (0.8, 0.7)
        let choice = with_capacity(2.9, 1.0, 1.0);
        assert_eq!(
            (choice.thresholds.review(), choice.thresholds.decline()),
            (0.7, Some(0.9))
        );
        assert_eq!(choice.review_band().flagged, 2);
        // no capacity left below the decline threshold: the band stays empty
        let choice = with_capacity(0.4, 1.0, 1.0);
        assert_eq!(
            (choice.thresholds.review(), choice.thresholds.decline()),
            (0.9, Some(0.9))
        );
        assert_eq!(choice.review_band().flagged, 0);
        // more capacity than rows: everything is reviewed
        let choice = with_capacity(100.0, 1.0, 1.0);
        assert_eq!(choice.thresholds.review(), 0.1);
        assert_eq!(choice.review_band().flagged, 8);
    }

    #[test]
    fn capacity_opens_the_band_that_max_f1_leaves_empty() {
        // decline precision 0.75: max F1 reviews from 0.6, where precision is already 0.8, so
        // everything flagged is declined and the analysts get nothing
        let max_f1 = choose(&ROWS, ThresholdObjective::MaxF1, 0.75);
        assert_eq!(
            (max_f1.thresholds.review(), max_f1.thresholds.decline()),
            (0.6, Some(0.6))
        );
        assert_eq!(max_f1.review_band().flagged, 0);
        // with a capacity, the same decline threshold and one review a day below it
        let choice = with_capacity(1.0, 1.0, 0.75);
        assert_eq!(
            (choice.thresholds.review(), choice.thresholds.decline()),
            (0.5, Some(0.6))
        );
        assert_eq!(choice.review_band().flagged, 1);
    }

    #[test]
    fn capacity_without_a_decline_threshold_reviews_the_top() {
        let (probabilities, labels, amounts) = columns(&POOR_ROWS);
        let choose = |per_day: f64| {
            let objective = ThresholdObjective::ReviewCapacity { per_day };
            choose_thresholds(&probabilities, &labels, &amounts, objective, 0.9, Some(1.0)).unwrap()
        };
        let choice = choose(2.0);
        assert_eq!((choice.thresholds.review(), choice.thresholds.decline()), (0.8, None));
        assert_eq!(choice.review_band().flagged, 2);
        // less than one review: the top group is still flagged (as with every objective)
        let choice = choose(0.5);
        assert_eq!((choice.thresholds.review(), choice.thresholds.decline()), (0.9, None));
    }

    #[test]
    fn thresholds_keep_review_at_most_decline() {
        assert!(Thresholds::new(0.5, Some(0.4)).is_err());
        assert!(Thresholds::new(f64::NAN, None).is_err());
        assert!(Thresholds::new(0.5, Some(f64::INFINITY)).is_err());
        assert!(Thresholds::new(0.5, Some(0.5)).is_ok());
        let refused = serde_json::from_str::<Thresholds>(r#"{"review":0.7,"decline":0.6}"#);
        assert!(refused.unwrap_err().to_string().contains("invalid thresholds"));
        let thresholds: Thresholds = serde_json::from_str(r#"{"review":0.3,"decline":null}"#).unwrap();
        assert_eq!((thresholds.review(), thresholds.decline()), (0.3, None));
    }

    #[test]
    fn decisions_use_greater_or_equal() {
        let thresholds = Thresholds::new(0.3, Some(0.8)).unwrap();
        let decisions: Vec<Decision> = [0.1, 0.3, 0.5, 0.8, 1.0, f64::NAN]
            .into_iter()
            .map(|probability| thresholds.decide(probability))
            .collect();
        use Decision::*;
        assert_eq!(decisions, [Approve, Review, Review, Decline, Decline, Approve]);
        let never_decline = Thresholds::new(0.3, None).unwrap();
        assert_eq!(never_decline.decide(1.0), Review);
    }

    #[test]
    fn objectives_serialise_with_a_kind_tag() {
        let cases = [
            (ThresholdObjective::MaxF1, r#"{"kind":"max_f1"}"#),
            (
                ThresholdObjective::MinCost { review_cost: 2.5 },
                r#"{"kind":"min_cost","review_cost":2.5}"#,
            ),
            (
                ThresholdObjective::TargetPrecision { precision: 0.9 },
                r#"{"kind":"target_precision","precision":0.9}"#,
            ),
            (
                ThresholdObjective::TargetRecall { recall: 0.75 },
                r#"{"kind":"target_recall","recall":0.75}"#,
            ),
            (
                ThresholdObjective::ReviewCapacity { per_day: 200.0 },
                r#"{"kind":"review_capacity","per_day":200.0}"#,
            ),
        ];
        for (objective, json) in cases {
            assert_eq!(serde_json::to_string(&objective).unwrap(), json);
            assert_eq!(serde_json::from_str::<ThresholdObjective>(json).unwrap(), objective);
        }
        let choice = choose(&ROWS, ThresholdObjective::MinCost { review_cost: 20.0 }, 0.9);
        let back: ThresholdChoice = serde_json::from_str(&serde_json::to_string(&choice).unwrap()).unwrap();
        assert_eq!(back, choice);
        let choice = with_capacity(2.0, 3.5, 0.9);
        let json = serde_json::to_value(&choice).unwrap();
        assert_eq!(json["valid_days"], 3.5);
        assert_eq!(serde_json::from_value::<ThresholdChoice>(json.clone()).unwrap(), choice);
        // a choice recorded before the span of days was
        let mut earlier = json;
        earlier.as_object_mut().unwrap().remove("valid_days");
        let earlier: ThresholdChoice = serde_json::from_value(earlier).unwrap();
        assert_eq!((earlier.valid_days, earlier.review_band().per_day), (None, None));
    }

    /// The same choices from their definitions: one full confusion per candidate.
    fn brute_force_review(
        probabilities: &[f64],
        labels: &[bool],
        amounts: &[f64],
        objective: ThresholdObjective,
    ) -> Option<f64> {
        let mut candidates = probabilities.to_vec();
        candidates.sort_by(|a, b| b.total_cmp(a));
        candidates.dedup();
        let score = |threshold: f64| -> f64 {
            let confusion = confusion_at(probabilities, labels, threshold);
            match objective {
                ThresholdObjective::MaxF1 => confusion.f1(),
                ThresholdObjective::MinCost { review_cost } => {
                    let missed: f64 = (0..labels.len())
                        .filter(|&row| labels[row] && probabilities[row] < threshold)
                        .map(|row| amounts[row])
                        .sum();
                    -(missed + review_cost * confusion.flagged() as f64)
                }
                ThresholdObjective::TargetPrecision { .. }
                | ThresholdObjective::TargetRecall { .. }
                | ThresholdObjective::ReviewCapacity { .. } => 0.0,
            }
        };
        match objective {
            ThresholdObjective::TargetPrecision { precision } => candidates
                .iter()
                .rev()
                .copied()
                .find(|&threshold| confusion_at(probabilities, labels, threshold).precision() >= precision),
            ThresholdObjective::TargetRecall { recall } => candidates
                .iter()
                .copied()
                .find(|&threshold| confusion_at(probabilities, labels, threshold).recall() >= recall),
            _ => {
                // First strict maximum from the top = highest threshold among equals.
                let mut best = candidates[0];
                for &threshold in &candidates[1..] {
                    if score(threshold) > score(best) {
                        best = threshold;
                    }
                }
                Some(best)
            }
        }
    }

    fn objective() -> impl Strategy<Value = ThresholdObjective> {
        prop_oneof![
            Just(ThresholdObjective::MaxF1),
            (0u8..=20).prop_map(|cost| ThresholdObjective::MinCost {
                review_cost: f64::from(cost)
            }),
            (1u8..=10).prop_map(|tenths| ThresholdObjective::TargetPrecision {
                precision: f64::from(tenths) / 10.0
            }),
            (1u8..=10).prop_map(|tenths| ThresholdObjective::TargetRecall {
                recall: f64::from(tenths) / 10.0
            }),
        ]
    }

    proptest! {
        #[test]
        fn sweep_agrees_with_brute_force(
            rows in prop::collection::vec((0u8..=20, any::<bool>(), 0u8..=50), 1..40),
            objective in objective(),
            decline_tenths in 1u8..=10,
        ) {
            let probabilities: Vec<f64> = rows.iter().map(|row| f64::from(row.0) / 20.0).collect();
            let labels: Vec<bool> = rows.iter().map(|row| row.1).collect();
            let amounts: Vec<f64> = rows.iter().map(|row| f64::from(row.2)).collect();
            let decline_precision = f64::from(decline_tenths) / 10.0;
            let result = choose_thresholds(&probabilities, &labels, &amounts, objective, decline_precision, None);
            let expected = if labels.contains(&true) {
                brute_force_review(&probabilities, &labels, &amounts, objective)
            } else {
                None
            };
            match (result, expected) {
                (Ok(choice), Some(review)) => {
                    prop_assert_eq!(choice.thresholds.review(), review);
                    // The decline threshold, from its definition.
                    let mut candidates: Vec<f64> = probabilities.iter().copied().filter(|&p| p >= review).collect();
                    candidates.sort_by(f64::total_cmp);
                    let decline = candidates
                        .into_iter()
                        .find(|&threshold| confusion_at(&probabilities, &labels, threshold).precision() >= decline_precision);
                    prop_assert_eq!(choice.thresholds.decline(), decline);
                }
                (Err(ThresholdError::NoPositives { .. }), None) => prop_assert!(!labels.contains(&true)),
                (Err(ThresholdError::TargetUnreachable { .. }), None) => {
                    let is_target_precision = matches!(objective, ThresholdObjective::TargetPrecision { .. });
                    prop_assert!(is_target_precision);
                }
                (result, expected) => prop_assert!(false, "got {:?}, expected review {:?}", result, expected),
            }
        }

        #[test]
        fn capacity_agrees_with_its_definition(
            rows in prop::collection::vec((0u8..=20, any::<bool>(), 0u8..=50), 1..40),
            quarter_reviews in 1u8..=20,
            days in 1u8..=4,
            decline_tenths in 1u8..=10,
        ) {
            let probabilities: Vec<f64> = rows.iter().map(|row| f64::from(row.0) / 20.0).collect();
            let labels: Vec<bool> = rows.iter().map(|row| row.1).collect();
            prop_assume!(labels.contains(&true));
            let amounts: Vec<f64> = rows.iter().map(|row| f64::from(row.2)).collect();
            let (per_day, days) = (f64::from(quarter_reviews) / 4.0, f64::from(days));
            let decline_precision = f64::from(decline_tenths) / 10.0;
            let objective = ThresholdObjective::ReviewCapacity { per_day };
            let choice =
                choose_thresholds(&probabilities, &labels, &amounts, objective, decline_precision, Some(days)).unwrap();
            let mut candidates = probabilities.clone();
            candidates.sort_by(f64::total_cmp);
            candidates.dedup();
            let flagged = |threshold: f64| probabilities.iter().filter(|&&p| p >= threshold).count() as f64;
            // decline: the lowest candidate whose precision reaches the target
            let decline = candidates
                .iter()
                .copied()
                .find(|&threshold| confusion_at(&probabilities, &labels, threshold).precision() >= decline_precision);
            let declined = decline.map_or(0.0, flagged);
            // review: the lowest candidate at most `decline` whose band fits the budget
            let review = candidates
                .iter()
                .copied()
                .filter(|&threshold| decline.is_none_or(|decline| threshold <= decline))
                .find(|&threshold| flagged(threshold) - declined <= (per_day * days).floor())
                .unwrap_or_else(|| decline.unwrap_or(candidates[candidates.len() - 1]));
            prop_assert_eq!(choice.thresholds.decline(), decline);
            prop_assert_eq!(choice.thresholds.review(), review);
            prop_assert!(choice.review_band().flagged as f64 <= (per_day * days).floor() || choice.thresholds.decline().is_none());
        }
    }
}
