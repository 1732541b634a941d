//! Fraud evaluation metrics over plain slices.
//!
//! Every function takes `scores` (or calibrated `probabilities`; higher means
//! more suspicious) and `labels` (`true` = fraud) of the same length, one entry
//! per transaction. Mismatched lengths are a caller bug and panic.
//!
//! - Ranking: [`roc_auc`] (Mann-Whitney, ties count ½) and [`average_precision`]
//!   (scikit-learn's `average_precision_score`). Both sort once: O(n log n).
//! - At a threshold: [`confusion_at`] gives a [`Confusion`] with precision,
//!   recall, F1 and false positive rate.
//! - Calibration: [`brier`] and [`reliability_table`].
//! - Daily ranking metrics of the Fraud Detection Handbook (Le Borgne et al.,
//!   "Precision top-k metrics"): [`precision_at_k_per_day`] and
//!   [`card_precision_at_k_per_day`], which model a team of investigators that
//!   can check `k` alerts a day.
//! - [`Evaluation::compute`] gathers all of the above into one serialisable
//!   value for the model artifact, and [`mean_std`] summarises a metric over
//!   rolling (prequential) folds.
//!
//! Scores are ordered with [`f64::total_cmp`], so the order is total even with
//! NaN, but NaN scores have no meaning here: callers should not pass them.

use std::cmp::Ordering;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

/// Area under the ROC curve: the probability that a random fraud scores above
/// a random legitimate transaction, a tie counting ½ (the Mann-Whitney U
/// statistic divided by `n_fraud × n_legit`).
///
/// `None` when only one class is present (or there are no rows). Sorts once:
/// O(n log n); the counting is exact integer arithmetic.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    auc_from_groups(&score_groups(scores, labels))
}

/// Average precision exactly as scikit-learn's `average_precision_score`:
/// `Σ (R_n − R_{n−1}) P_n` over the distinct score thresholds from the highest
/// down, where `P_n` and `R_n` are the precision and recall when every
/// transaction scoring at least the n-th threshold is flagged (tied scores
/// enter together). No interpolation.
///
/// `None` when there is no fraud (recall is undefined); with no legitimate
/// transactions it is 1. O(n log n).
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    average_precision_from_groups(&score_groups(scores, labels))
}

/// Counts of a binary decision against the labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Frauds flagged.
    pub tp: u64,
    /// Legitimate transactions flagged.
    pub fp: u64,
    /// Legitimate transactions not flagged.
    pub tn: u64,
    /// Frauds not flagged (`fn` is a keyword; serialised as `"fn"`).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    /// `tp / (tp + fp)`: share of flagged transactions that are fraud; 0.0 when
    /// nothing is flagged.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// `tp / (tp + fn)`: share of frauds that are flagged; 0.0 when there is no
    /// fraud.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall, `2tp / (2tp + fp + fn)`; 0.0 when
    /// there is neither a fraud nor a flag.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// `fp / (fp + tn)`: share of legitimate transactions that are flagged; 0.0
    /// when there is no legitimate transaction.
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }

    /// Number of flagged transactions, `tp + fp`.
    pub fn flagged(&self) -> u64 {
        self.tp + self.fp
    }

    /// Number of transactions counted.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
}

/// The confusion counts when every transaction with `score >= threshold` is
/// predicted fraud. O(n).
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn confusion_at(scores: &[f64], labels: &[bool], threshold: f64) -> Confusion {
    assert_same_len(scores.len(), labels.len());
    let mut confusion = Confusion::default();
    for (&score, &label) in scores.iter().zip(labels) {
        match (score >= threshold, label) {
            (true, true) => confusion.tp += 1,
            (true, false) => confusion.fp += 1,
            (false, false) => confusion.tn += 1,
            (false, true) => confusion.fn_ += 1,
        }
    }
    confusion
}

/// Brier score: mean of `(probability − label)²`, label as 0 or 1. Lower is
/// better; 0.0 for no rows (there is no error to average).
///
/// # Panics
/// If `probabilities` and `labels` differ in length.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    assert_same_len(probabilities.len(), labels.len());
    if probabilities.is_empty() {
        return 0.0;
    }
    let sum: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&probability, &label)| {
            let error = probability - f64::from(u8::from(label));
            error * error
        })
        .sum();
    sum / probabilities.len() as f64
}

/// One bin of a [`reliability_table`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge, included.
    pub lower: f64,
    /// Upper edge, excluded (included for the last bin, so 1.0 has a bin).
    pub upper: f64,
    /// Number of transactions in the bin (never 0: empty bins are omitted).
    pub n: u64,
    /// Mean predicted probability in the bin.
    pub mean_predicted: f64,
    /// Share of fraud in the bin.
    pub observed_rate: f64,
}

/// Reliability diagram data: `n_bins` equal-width bins on [0, 1], bin `i`
/// being `[i/n_bins, (i+1)/n_bins)` (the last one closed), empty bins omitted.
/// A calibrated model has `observed_rate ≈ mean_predicted` in every bin.
///
/// Probabilities below 0 fall in the first bin and above 1 in the last.
/// `n_bins == 0` gives an empty table. O(n + n_bins).
///
/// Bin edges are `i as f64 / n_bins as f64`, and membership is decided against
/// those same edges, so a probability equal to a reported `lower` is in that
/// bin (scikit-learn's `calibration_curve` builds edges with `linspace`, which
/// can put such a value one bin lower).
///
/// # Panics
/// If `probabilities` and `labels` differ in length.
pub fn reliability_table(probabilities: &[f64], labels: &[bool], n_bins: usize) -> Vec<ReliabilityBin> {
    assert_same_len(probabilities.len(), labels.len());
    if n_bins == 0 {
        return Vec::new();
    }
    let edge = |bin_idx: usize| bin_idx as f64 / n_bins as f64;
    let mut counts = vec![0u64; n_bins];
    let mut fraud_counts = vec![0u64; n_bins];
    let mut sums = vec![0.0f64; n_bins];
    for (&probability, &label) in probabilities.iter().zip(labels) {
        // `as` saturates (NaN → 0), then the estimate is corrected against the
        // reported edges, which `p * n_bins` can miss by one ulp.
        let mut bin_idx = ((probability * n_bins as f64) as usize).min(n_bins - 1);
        if bin_idx > 0 && probability < edge(bin_idx) {
            bin_idx -= 1;
        } else if bin_idx + 1 < n_bins && probability >= edge(bin_idx + 1) {
            bin_idx += 1;
        }
        counts[bin_idx] += 1;
        fraud_counts[bin_idx] += u64::from(label);
        sums[bin_idx] += probability;
    }
    (0..n_bins)
        .filter(|&bin_idx| counts[bin_idx] > 0)
        .map(|bin_idx| ReliabilityBin {
            lower: edge(bin_idx),
            upper: edge(bin_idx + 1),
            n: counts[bin_idx],
            mean_predicted: sums[bin_idx] / counts[bin_idx] as f64,
            observed_rate: ratio(fraud_counts[bin_idx], counts[bin_idx]),
        })
        .collect()
}

/// A daily precision@k series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyPrecision {
    /// Alerts checked per day.
    pub k: u64,
    /// One entry per day present in the input, in increasing day order.
    pub per_day: Vec<DayPrecision>,
    /// Mean of the daily precisions; 0.0 when there is no day.
    pub mean: f64,
}

/// Precision@k of one day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DayPrecision {
    /// The day (any integer day index, e.g. days since the epoch).
    pub day: i64,
    /// Frauds among the top k, divided by k.
    pub precision: f64,
    /// Candidates ranked that day: transactions for
    /// [`precision_at_k_per_day`], not yet detected entities for
    /// [`card_precision_at_k_per_day`].
    pub n: u64,
}

/// Transaction precision@k per day (Fraud Detection Handbook): for each day,
/// the share of fraud among the `k` highest-scored transactions of that day.
///
/// The denominator is always `k`: a day with fewer than `k` transactions
/// cannot reach precision 1, as in the handbook (the investigators had spare
/// capacity). Ties in score are broken by input order (earlier row first), so
/// the result is deterministic; `k == 0` gives precision 0.0 on every day.
/// O(n log n).
///
/// # Panics
/// If `days`, `scores` and `labels` differ in length.
pub fn precision_at_k_per_day(days: &[i64], scores: &[f64], labels: &[bool], k: usize) -> DailyPrecision {
    assert_same_len(days.len(), scores.len());
    assert_same_len(scores.len(), labels.len());
    let mut order: Vec<usize> = (0..days.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        days[a]
            .cmp(&days[b])
            .then_with(|| scores[b].total_cmp(&scores[a]))
            .then_with(|| a.cmp(&b))
    });
    let mut per_day = Vec::new();
    for day_rows in order.chunk_by(|&a, &b| days[a] == days[b]) {
        let n_fraud_top = day_rows.iter().take(k).filter(|&&row_idx| labels[row_idx]).count();
        per_day.push(DayPrecision {
            day: days[day_rows[0]],
            precision: ratio(n_fraud_top as u64, k as u64),
            n: day_rows.len() as u64,
        });
    }
    DailyPrecision::new(k, per_day)
}

/// Card precision@k per day (Fraud Detection Handbook), where an alert is an
/// entity (card, customer) rather than a transaction. For each day, in
/// increasing order:
///
/// 1. drop the transactions of entities already detected on an earlier day
///    (they are known compromised, so they need no more investigation);
/// 2. per remaining entity, take its max score and max label of the day;
/// 3. rank entities by score, highest first, ties broken by smaller entity id;
/// 4. precision = entities with fraud among the top `k`, divided by `k`
///    (even when fewer than `k` entities are left);
/// 5. the top-`k` entities with fraud join the detected set.
///
/// `k == 0` gives precision 0.0 on every day and detects nothing. O(n log n).
///
/// # Panics
/// If `days`, `entities`, `scores` and `labels` differ in length.
pub fn card_precision_at_k_per_day(
    days: &[i64],
    entities: &[u64],
    scores: &[f64],
    labels: &[bool],
    k: usize,
) -> DailyPrecision {
    assert_same_len(days.len(), entities.len());
    assert_same_len(entities.len(), scores.len());
    assert_same_len(scores.len(), labels.len());
    let mut order: Vec<usize> = (0..days.len()).collect();
    order.sort_unstable_by_key(|&row_idx| (days[row_idx], entities[row_idx]));

    let mut detected: FxHashSet<u64> = FxHashSet::default();
    let mut ranked: Vec<EntityDay> = Vec::new();
    let mut per_day = Vec::new();
    for day_rows in order.chunk_by(|&a, &b| days[a] == days[b]) {
        ranked.clear();
        for entity_rows in day_rows.chunk_by(|&a, &b| entities[a] == entities[b]) {
            let entity = entities[entity_rows[0]];
            if detected.contains(&entity) {
                continue;
            }
            let mut score = scores[entity_rows[0]];
            let mut fraud = false;
            for &row_idx in entity_rows {
                if scores[row_idx].total_cmp(&score) == Ordering::Greater {
                    score = scores[row_idx];
                }
                fraud |= labels[row_idx];
            }
            ranked.push(EntityDay { score, entity, fraud });
        }
        ranked.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.entity.cmp(&b.entity)));
        let mut n_fraud_top = 0u64;
        for entity_day in ranked.iter().take(k).filter(|entity_day| entity_day.fraud) {
            n_fraud_top += 1;
            detected.insert(entity_day.entity);
        }
        per_day.push(DayPrecision {
            day: days[day_rows[0]],
            precision: ratio(n_fraud_top, k as u64),
            n: ranked.len() as u64,
        });
    }
    DailyPrecision::new(k, per_day)
}

/// Everything [`Evaluation::compute`] needs. Slices are parallel: one entry
/// per transaction.
#[derive(Clone, Copy, Debug)]
pub struct EvalInput<'a> {
    /// Calibrated fraud probabilities in [0, 1].
    pub probabilities: &'a [f64],
    /// `true` = fraud.
    pub labels: &'a [bool],
    /// Day of each transaction, for the daily precision@k metrics; `None`
    /// skips both of them.
    pub days: Option<&'a [i64]>,
    /// Entity (card or customer id) of each transaction, for card
    /// precision@k; `None` skips it.
    pub entities: Option<&'a [u64]>,
    /// Decision threshold for the confusion counts (`probability >= threshold`
    /// is flagged).
    pub threshold: f64,
    /// Alerts checked per day for the precision@k metrics.
    pub k: usize,
    /// Number of bins of the reliability table.
    pub reliability_bins: usize,
}

/// A model's evaluation on one labelled set, as stored in the model artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Number of transactions.
    pub n: u64,
    /// Number of frauds.
    pub n_fraud: u64,
    /// `n_fraud / n`; 0.0 for no rows.
    pub fraud_rate: f64,
    /// See [`roc_auc`]; `None` with a single class.
    pub roc_auc: Option<f64>,
    /// See [`average_precision`]; `None` without fraud.
    pub average_precision: Option<f64>,
    /// See [`brier`].
    pub brier: f64,
    /// The threshold of `confusion`, `precision`, `recall` and `f1`.
    pub threshold: f64,
    /// Counts at `threshold`.
    pub confusion: Confusion,
    /// [`Confusion::precision`] at `threshold`.
    pub precision: f64,
    /// [`Confusion::recall`] at `threshold`.
    pub recall: f64,
    /// [`Confusion::f1`] at `threshold`.
    pub f1: f64,
    /// See [`precision_at_k_per_day`]; `None` without days.
    pub precision_at_k: Option<DailyPrecision>,
    /// See [`card_precision_at_k_per_day`]; `None` without days and entities.
    pub card_precision_at_k: Option<DailyPrecision>,
    /// See [`reliability_table`].
    pub reliability: Vec<ReliabilityBin>,
    /// See [`Curves`]; `None` in evaluations recorded before they were.
    #[serde(default)]
    pub curves: Option<Curves>,
}

/// Bins of the score histograms in [`Curves`], equal-width on [0, 1].
pub const HISTOGRAM_BINS: usize = 40;

/// Spacing in recall and in false-positive rate under which a curve point is
/// left out: at most ~2 / `CURVE_STEP` points, whatever the row count.
const CURVE_STEP: f64 = 1.0 / 250.0;

/// What the precision-recall and ROC curves and the score histograms by
/// class are drawn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// Candidate thresholds, highest first: the first and the last, and
    /// every one that moves recall or the false-positive rate by at least
    /// 1/250 since the previous point kept.
    pub points: Vec<CurvePoint>,
    /// Frauds per score bin ([`HISTOGRAM_BINS`] bins on [0, 1]; scores
    /// outside are counted in the first or last bin).
    pub fraud_histogram: Vec<u64>,
    /// Legitimate transactions per score bin.
    pub legit_histogram: Vec<u64>,
}

/// The decision "flag when `score >= threshold`" as a point of both curves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The threshold.
    pub threshold: f64,
    /// Frauds among the flagged.
    pub precision: f64,
    /// Share of the frauds flagged (the true-positive rate).
    pub recall: f64,
    /// Share of the legitimate transactions flagged.
    pub fpr: f64,
}

impl Curves {
    fn compute(groups: &[ScoreGroup], scores: &[f64], labels: &[bool]) -> Self {
        let n_pos: u64 = groups.iter().map(|group| group.n_pos).sum();
        let n_neg: u64 = groups.iter().map(|group| group.n_neg).sum();
        let (mut tp, mut fp) = (0, 0);
        let mut points: Vec<CurvePoint> = Vec::new();
        for (idx, group) in groups.iter().enumerate() {
            tp += group.n_pos;
            fp += group.n_neg;
            let point = CurvePoint {
                threshold: group.score,
                precision: ratio(tp, tp + fp),
                recall: ratio(tp, n_pos),
                fpr: ratio(fp, n_neg),
            };
            let far_enough = points
                .last()
                .is_none_or(|last| point.recall - last.recall >= CURVE_STEP || point.fpr - last.fpr >= CURVE_STEP);
            if far_enough || idx + 1 == groups.len() {
                points.push(point);
            }
        }
        let mut fraud_histogram = vec![0; HISTOGRAM_BINS];
        let mut legit_histogram = vec![0; HISTOGRAM_BINS];
        for (&score, &label) in scores.iter().zip(labels) {
            // NaN lands in the first bin (`as` saturates)
            let bin = ((score * HISTOGRAM_BINS as f64) as usize).min(HISTOGRAM_BINS - 1);
            if label {
                fraud_histogram[bin] += 1;
            } else {
                legit_histogram[bin] += 1;
            }
        }
        Self {
            points,
            fraud_histogram,
            legit_histogram,
        }
    }

    /// The kept point nearest at or below `threshold` in score (what
    /// flagging at `threshold` looks like: exact for a threshold among the
    /// kept points, else the next lower one); `None` when the threshold is
    /// above every score (nothing flagged).
    pub fn at(&self, threshold: f64) -> Option<&CurvePoint> {
        if self.points.first().is_none_or(|top| threshold > top.threshold) {
            return None;
        }
        self.points
            .iter()
            .find(|point| point.threshold <= threshold)
            .or(self.points.last())
    }
}

impl Evaluation {
    /// Computes every metric of `input` (one sort for AUC and average
    /// precision, one per daily metric).
    ///
    /// # Panics
    /// If the slices of `input` differ in length.
    pub fn compute(input: &EvalInput<'_>) -> Self {
        let EvalInput {
            probabilities,
            labels,
            days,
            entities,
            threshold,
            k,
            reliability_bins,
        } = *input;
        let groups = score_groups(probabilities, labels);
        let n = probabilities.len() as u64;
        let n_fraud = labels.iter().filter(|&&label| label).count() as u64;
        let confusion = confusion_at(probabilities, labels, threshold);
        Self {
            n,
            n_fraud,
            fraud_rate: ratio(n_fraud, n),
            roc_auc: auc_from_groups(&groups),
            average_precision: average_precision_from_groups(&groups),
            brier: brier(probabilities, labels),
            threshold,
            confusion,
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            precision_at_k: days.map(|days| precision_at_k_per_day(days, probabilities, labels, k)),
            card_precision_at_k: days
                .zip(entities)
                .map(|(days, entities)| card_precision_at_k_per_day(days, entities, probabilities, labels, k)),
            reliability: reliability_table(probabilities, labels, reliability_bins),
            curves: Some(Curves::compute(&groups, probabilities, labels)),
        }
    }
}

/// Mean and spread of one metric over several evaluations (rolling or
/// prequential folds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Arithmetic mean; 0.0 for no values.
    pub mean: f64,
    /// Sample standard deviation (divisor `n − 1`); 0.0 for fewer than two values.
    pub std: f64,
    /// Number of values.
    pub n: u64,
}

/// Mean and sample standard deviation of `values` (two passes, so no
/// cancellation when the mean is large compared with the spread).
pub fn mean_std(values: &[f64]) -> MeanStd {
    let n = values.len();
    if n == 0 {
        return MeanStd {
            mean: 0.0,
            std: 0.0,
            n: 0,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = if n < 2 {
        0.0
    } else {
        let squares: f64 = values.iter().map(|value| (value - mean) * (value - mean)).sum();
        (squares / (n - 1) as f64).sqrt()
    };
    MeanStd { mean, std, n: n as u64 }
}

impl DailyPrecision {
    fn new(k: usize, per_day: Vec<DayPrecision>) -> Self {
        let mean = if per_day.is_empty() {
            0.0
        } else {
            per_day.iter().map(|day| day.precision).sum::<f64>() / per_day.len() as f64
        };
        Self {
            k: k as u64,
            per_day,
            mean,
        }
    }
}

/// An entity's aggregate over one day, for card precision@k.
struct EntityDay {
    score: f64,
    entity: u64,
    fraud: bool,
}

/// Transactions sharing one score, the groups ordered by decreasing score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ScoreGroup {
    pub(crate) score: f64,
    pub(crate) n_pos: u64,
    pub(crate) n_neg: u64,
}

/// Sorts `(score, label)` pairs once (contiguous, so it stays fast on millions
/// of rows) and counts each distinct score's labels. Scores that compare equal
/// with `==` form one group, so `-0.0` and `0.0` tie.
pub(crate) fn score_groups(scores: &[f64], labels: &[bool]) -> Vec<ScoreGroup> {
    assert_same_len(scores.len(), labels.len());
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<ScoreGroup> = Vec::new();
    for (score, label) in pairs {
        match groups.last_mut() {
            Some(group) if group.score == score => {
                group.n_pos += u64::from(label);
                group.n_neg += u64::from(!label);
            }
            _ => groups.push(ScoreGroup {
                score,
                n_pos: u64::from(label),
                n_neg: u64::from(!label),
            }),
        }
    }
    groups
}

pub(crate) fn auc_from_groups(groups: &[ScoreGroup]) -> Option<f64> {
    // Twice the Mann-Whitney U, so a tie's ½ stays an integer.
    let mut twice_u: u128 = 0;
    let mut n_pos_above: u64 = 0;
    let mut n_neg: u64 = 0;
    for group in groups {
        twice_u += u128::from(group.n_neg) * u128::from(2 * n_pos_above + group.n_pos);
        n_pos_above += group.n_pos;
        n_neg += group.n_neg;
    }
    if n_pos_above == 0 || n_neg == 0 {
        return None;
    }
    Some(twice_u as f64 / (2.0 * n_pos_above as f64 * n_neg as f64))
}

pub(crate) fn average_precision_from_groups(groups: &[ScoreGroup]) -> Option<f64> {
    let n_pos: u64 = groups.iter().map(|group| group.n_pos).sum();
    if n_pos == 0 {
        return None;
    }
    let mut tp = 0u64;
    let mut flagged = 0u64;
    let mut sum = 0.0;
    for group in groups {
        tp += group.n_pos;
        flagged += group.n_pos + group.n_neg;
        if group.n_pos > 0 {
            sum += group.n_pos as f64 / n_pos as f64 * (tp as f64 / flagged as f64);
        }
    }
    Some(sum)
}

/// `numerator / denominator`, 0.0 when the denominator is 0.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn assert_same_len(left: usize, right: usize) {
    assert_eq!(left, right, "metric inputs must have one entry per transaction");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TOLERANCE: f64 = 1e-12;

    fn labels(bits: &[u8]) -> Vec<bool> {
        bits.iter().map(|&bit| bit == 1).collect()
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= TOLERANCE,
            "{what}: got {actual}, expected {expected}"
        );
    }

    /// ROC AUC and average precision of one input against expected values.
    fn check_ranking(scores: &[f64], label_bits: &[u8], expected_auc: Option<f64>, expected_ap: Option<f64>) {
        let labels = labels(label_bits);
        let auc = roc_auc(scores, &labels);
        let ap = average_precision(scores, &labels);
        match (auc, expected_auc) {
            (Some(auc), Some(expected)) => assert_close(auc, expected, "roc auc"),
            (auc, expected) => assert_eq!(auc, expected, "roc auc"),
        }
        match (ap, expected_ap) {
            (Some(ap), Some(expected)) => assert_close(ap, expected, "average precision"),
            (ap, expected) => assert_eq!(ap, expected, "average precision"),
        }
    }

    #[test]
    fn ranking_metrics_match_scikit_learn_with_ties() {
        // sklearn.metrics.roc_auc_score(y, s), average_precision_score(y, s) (scikit-learn 1.9.1).
        check_ranking(
            &[0.1, 0.4, 0.35, 0.8, 0.35, 0.8, 0.2, 0.5, 0.5, 0.9],
            &[0, 0, 1, 1, 0, 0, 1, 1, 0, 1],
            Some(0.62),
            Some(0.6644444444444444),
        );
        check_ranking(
            &[0.3, 0.3, 0.3, 0.3, 0.7, 0.7, 0.1, 0.1],
            &[1, 0, 0, 0, 1, 1, 0, 1],
            Some(0.6875),
            Some(0.75),
        );
        // Every score tied: AUC ½, AP = fraud rate.
        check_ranking(&[0.5; 5], &[0, 1, 1, 0, 1], Some(0.5), Some(0.6));
        // numpy.random.default_rng(7): 24 scores rounded to 0.1, many ties.
        check_ranking(
            &[
                0.6, 0.9, 0.8, 0.2, 0.3, 0.9, 0.0, 0.8, 0.8, 0.5, 0.3, 0.3, 0.3, 0.4, 0.5, 0.6, 1.0, 0.8, 0.6, 1.0,
                0.2, 0.2, 0.6, 0.0,
            ],
            &[1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0],
            Some(0.6107142857142858),
            Some(0.48359649122807014),
        );
    }

    #[test]
    fn ranking_metrics_of_one_class() {
        check_ranking(&[], &[], None, None);
        check_ranking(&[0.2, 0.9], &[0, 0], None, None);
        // average_precision_score([1, 1, 1], [0.2, 0.5, 0.1]) == 1.0; AUC needs both classes.
        check_ranking(&[0.2, 0.5, 0.1], &[1, 1, 1], None, Some(1.0));
    }

    #[test]
    fn ranking_metrics_of_perfect_and_reversed_scores() {
        check_ranking(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1], Some(1.0), Some(1.0));
        // Frauds ranked last: AP = ½·(1/3) + ½·(2/4).
        check_ranking(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1], Some(0.0), Some(0.5 / 3.0 + 0.25));
    }

    #[test]
    fn zero_signs_tie() {
        check_ranking(&[-0.0, 0.0], &[0, 1], Some(0.5), Some(0.5));
    }

    #[test]
    #[should_panic(expected = "one entry per transaction")]
    fn mismatched_lengths_panic() {
        roc_auc(&[0.1, 0.2], &[true]);
    }

    #[test]
    fn confusion_counts_score_at_threshold_as_flagged() {
        let scores = [0.1, 0.5, 0.5, 0.7, 0.9, 0.3];
        let labels = labels(&[0, 1, 0, 0, 1, 1]);
        let confusion = confusion_at(&scores, &labels, 0.5);
        assert_eq!(
            confusion,
            Confusion {
                tp: 2,
                fp: 2,
                tn: 1,
                fn_: 1
            }
        );
        assert_close(confusion.precision(), 0.5, "precision");
        assert_close(confusion.recall(), 2.0 / 3.0, "recall");
        assert_close(confusion.f1(), 4.0 / 7.0, "f1");
        assert_close(confusion.false_positive_rate(), 2.0 / 3.0, "fpr");
        assert_eq!((confusion.flagged(), confusion.n()), (4, 6));
    }

    #[test]
    fn confusion_ratios_are_zero_on_empty_denominators() {
        let confusion = Confusion::default();
        let ratios = [
            confusion.precision(),
            confusion.recall(),
            confusion.f1(),
            confusion.false_positive_rate(),
        ];
        assert_eq!(ratios, [0.0; 4]);
        // Nothing flagged, one fraud missed.
        let missed = confusion_at(&[0.2], &[true], 0.5);
        assert_eq!((missed.fn_, missed.precision(), missed.recall()), (1, 0.0, 0.0));
    }

    #[test]
    fn confusion_serialises_fn_without_underscore() {
        let json = serde_json::to_string(&Confusion {
            tp: 1,
            fp: 2,
            tn: 3,
            fn_: 4,
        })
        .unwrap();
        assert_eq!(json, r#"{"tp":1,"fp":2,"tn":3,"fn":4}"#);
    }

    const CALIBRATION_PROBABILITIES: [f64; 12] =
        [0.05, 0.15, 0.12, 0.33, 0.38, 0.52, 0.61, 0.66, 0.88, 0.97, 0.91, 0.02];
    const CALIBRATION_LABELS: [u8; 12] = [0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0];

    #[test]
    fn brier_matches_scikit_learn() {
        // sklearn.metrics.brier_score_loss(y, p)
        let labels = labels(&CALIBRATION_LABELS);
        assert_close(brier(&CALIBRATION_PROBABILITIES, &labels), 0.22288333333333332, "brier");
        assert_eq!(brier(&[], &[]), 0.0);
        assert_eq!(brier(&[1.0, 0.0], &[true, false]), 0.0);
    }

    #[test]
    fn reliability_table_matches_scikit_learn_calibration_curve() {
        // sklearn.calibration.calibration_curve(y, p, n_bins=5, strategy="uniform")
        // gives prob_true and prob_pred for the non-empty bins.
        let labels = labels(&CALIBRATION_LABELS);
        let table = reliability_table(&CALIBRATION_PROBABILITIES, &labels, 5);
        let observed: Vec<f64> = table.iter().map(|bin| bin.observed_rate).collect();
        let predicted: Vec<f64> = table.iter().map(|bin| bin.mean_predicted).collect();
        let expected_observed = [0.25, 0.5, 0.0, 1.0, 0.6666666666666666];
        let expected_predicted = [0.085, 0.355, 0.52, 0.635, 0.92];
        assert_eq!(table.len(), 5);
        for bin_idx in 0..5 {
            assert_close(observed[bin_idx], expected_observed[bin_idx], "observed rate");
            assert_close(predicted[bin_idx], expected_predicted[bin_idx], "mean predicted");
        }
        let counts: Vec<u64> = table.iter().map(|bin| bin.n).collect();
        assert_eq!(counts, [4, 2, 1, 2, 3]);
        assert_eq!((table[1].lower, table[1].upper), (0.2, 0.4));
    }

    #[test]
    fn reliability_edges_omit_empty_bins_and_keep_one_in_the_last_bin() {
        // 0.3 lands in the bin whose reported lower edge is 0.3 (scikit-learn's
        // linspace edge is 0.30000000000000004, so it would put 0.3 one bin lower).
        let table = reliability_table(&[0.3, 1.0, 0.0, -0.5, 1.5], &[true, false, false, false, true], 10);
        let summary: Vec<(f64, f64, u64)> = table.iter().map(|bin| (bin.lower, bin.upper, bin.n)).collect();
        assert_eq!(summary, [(0.0, 0.1, 2), (0.3, 0.4, 1), (0.9, 1.0, 2)]);
        for bin in &table {
            assert!(bin.n > 0);
        }
        assert!(reliability_table(&[0.5], &[true], 0).is_empty());
    }

    #[test]
    fn reliability_bins_agree_with_their_reported_edges() {
        // Probabilities on and around every edge of 3, 7, 10 and 100 bins.
        for n_bins in [3usize, 7, 10, 100] {
            let mut probabilities = Vec::new();
            for edge_idx in 0..=n_bins {
                let edge = edge_idx as f64 / n_bins as f64;
                probabilities.extend([edge, edge.next_down(), edge.next_up()]);
            }
            probabilities.retain(|p| (0.0..=1.0).contains(p));
            for &probability in &probabilities {
                let table = reliability_table(&[probability], &[false], n_bins);
                let bin = &table[0];
                let inside = bin.lower <= probability && (probability < bin.upper || bin.upper == 1.0);
                assert!(inside, "{probability} put in [{}, {})", bin.lower, bin.upper);
            }
        }
    }

    /// Day, entity, score, fraud: a hand-worked card precision@2 example,
    /// deliberately out of day order.
    const CARD_ROWS: [(i64, u64, f64, bool); 17] = [
        (1, 1, 0.95, true),
        (0, 1, 0.9, true),
        (0, 2, 0.8, false),
        (0, 1, 0.2, false),
        (0, 3, 0.7, true),
        (0, 4, 0.1, true),
        (3, 4, 0.9, true),
        (1, 5, 0.6, false),
        (1, 3, 0.6, true),
        (1, 6, 0.6, false),
        (1, 4, 0.3, false),
        (2, 3, 0.99, true),
        (2, 4, 0.5, true),
        (2, 8, 0.4, true),
        (2, 7, 0.05, false),
        (1, 6, 0.1, false),
        (2, 8, 0.01, false),
    ];

    fn card_columns() -> (Vec<i64>, Vec<u64>, Vec<f64>, Vec<bool>) {
        let days = CARD_ROWS.iter().map(|row| row.0).collect();
        let entities = CARD_ROWS.iter().map(|row| row.1).collect();
        let scores = CARD_ROWS.iter().map(|row| row.2).collect();
        let labels = CARD_ROWS.iter().map(|row| row.3).collect();
        (days, entities, scores, labels)
    }

    fn check_daily(actual: &DailyPrecision, expected_per_day: &[(i64, f64, u64)], expected_mean: f64) {
        let per_day: Vec<(i64, f64, u64)> = actual
            .per_day
            .iter()
            .map(|day| (day.day, day.precision, day.n))
            .collect();
        assert_eq!(per_day, expected_per_day);
        assert_close(actual.mean, expected_mean, "mean precision");
    }

    #[test]
    fn card_precision_removes_detected_cards_on_later_days() {
        let (days, entities, scores, labels) = card_columns();
        let daily = card_precision_at_k_per_day(&days, &entities, &scores, &labels, 2);
        assert_eq!(daily.k, 2);
        // Day 0: cards by max score 1 (0.9, fraud), 2 (0.8), 3 (0.7, fraud), 4 (0.1, fraud):
        //        top 2 = {1, 2} → ½; card 1 detected.
        // Day 1: card 1 is dropped; 3, 5, 6 tie at 0.6 → ids 3 (fraud), 5 → ½; card 3 detected.
        // Day 2: card 3 is dropped; 4 (0.5, fraud), 8 (0.4, fraud), 7 → 1; cards 4 and 8 detected.
        // Day 3: only card 4, already detected → no candidate, precision 0.
        check_daily(&daily, &[(0, 0.5, 4), (1, 0.5, 4), (2, 1.0, 3), (3, 0.0, 0)], 0.5);
    }

    #[test]
    fn card_precision_with_large_k_divides_by_k() {
        let (days, entities, scores, labels) = card_columns();
        let daily = card_precision_at_k_per_day(&days, &entities, &scores, &labels, 5);
        // Day 0: all 4 cards in the top 5, frauds 1, 3, 4 detected → 3/5.
        // Day 1: cards 5, 6 left, no fraud → 0. Day 2: cards 8 (fraud), 7 left → 1/5.
        // Day 3: card 4 already detected → no candidate.
        check_daily(&daily, &[(0, 0.6, 4), (1, 0.0, 2), (2, 0.2, 2), (3, 0.0, 0)], 0.2);
        let none = card_precision_at_k_per_day(&days, &entities, &scores, &labels, 0);
        assert!(none.per_day.iter().all(|day| day.precision == 0.0));
    }

    #[test]
    fn transaction_precision_ranks_each_day_separately() {
        let (days, _, scores, labels) = card_columns();
        let daily = precision_at_k_per_day(&days, &scores, &labels, 2);
        // Day 0: 0.9 (fraud), 0.8 → ½. Day 1: 0.95 (fraud), then 0.6 ×3 in input
        // order: card 5 (legit) first → ½. Day 2: 0.99, 0.5 both fraud → 1.
        // Day 3: one fraud, k = 2 → ½ (fewer than k transactions, still divided by k).
        check_daily(&daily, &[(0, 0.5, 5), (1, 0.5, 6), (2, 1.0, 5), (3, 0.5, 1)], 0.625);
    }

    #[test]
    fn daily_precision_of_nothing() {
        let daily = precision_at_k_per_day(&[], &[], &[], 10);
        assert!(daily.per_day.is_empty());
        assert_eq!(daily.mean, 0.0);
    }

    #[test]
    fn evaluation_gathers_every_metric_and_round_trips_through_json() {
        let (days, entities, scores, labels) = card_columns();
        let input = EvalInput {
            probabilities: &scores,
            labels: &labels,
            days: Some(&days),
            entities: Some(&entities),
            threshold: 0.5,
            k: 2,
            reliability_bins: 4,
        };
        let evaluation = Evaluation::compute(&input);
        assert_eq!((evaluation.n, evaluation.n_fraud), (17, 9));
        assert_close(evaluation.fraud_rate, 9.0 / 17.0, "fraud rate");
        assert_eq!(evaluation.roc_auc, roc_auc(&scores, &labels));
        assert_eq!(evaluation.average_precision, average_precision(&scores, &labels));
        assert_eq!(evaluation.brier, brier(&scores, &labels));
        assert_eq!(evaluation.confusion, confusion_at(&scores, &labels, 0.5));
        assert_eq!(evaluation.f1, evaluation.confusion.f1());
        assert_eq!(
            evaluation.precision_at_k,
            Some(precision_at_k_per_day(&days, &scores, &labels, 2))
        );
        assert_eq!(
            evaluation.card_precision_at_k,
            Some(card_precision_at_k_per_day(&days, &entities, &scores, &labels, 2))
        );
        assert_eq!(evaluation.reliability, reliability_table(&scores, &labels, 4));

        let json = serde_json::to_string(&evaluation).unwrap();
        let back: Evaluation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, evaluation);
    }

    #[test]
    fn evaluation_without_days_has_no_daily_metrics() {
        let (days, _, scores, labels) = card_columns();
        let mut input = EvalInput {
            probabilities: &scores,
            labels: &labels,
            days: None,
            entities: None,
            threshold: 0.5,
            k: 2,
            reliability_bins: 4,
        };
        let evaluation = Evaluation::compute(&input);
        assert_eq!(
            (evaluation.precision_at_k, evaluation.card_precision_at_k),
            (None, None)
        );
        input.days = Some(&days);
        let with_days = Evaluation::compute(&input);
        assert!(with_days.precision_at_k.is_some());
        assert_eq!(with_days.card_precision_at_k, None);
    }

    #[test]
    fn mean_std_uses_the_sample_deviation() {
        let summary = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!((summary.mean, summary.n), (5.0, 8));
        assert_close(summary.std, (32.0f64 / 7.0).sqrt(), "std");
        assert_eq!(
            mean_std(&[3.5]),
            MeanStd {
                mean: 3.5,
                std: 0.0,
                n: 1
            }
        );
        assert_eq!(
            mean_std(&[]),
            MeanStd {
                mean: 0.0,
                std: 0.0,
                n: 0
            }
        );
        // Two passes: no cancellation around a large mean.
        let shifted = mean_std(&[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0]);
        assert_close(shifted.std, 1.0, "std around 1e9");
    }

    /// AUC from its definition: O(n²) over all (fraud, legit) pairs.
    fn auc_by_pairs(scores: &[f64], labels: &[bool]) -> Option<f64> {
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for (pos_score, _) in scores.iter().zip(labels).filter(|(_, label)| **label) {
            for (neg_score, _) in scores.iter().zip(labels).filter(|(_, label)| !**label) {
                pairs += 1.0;
                wins += match pos_score.total_cmp(neg_score) {
                    Ordering::Greater => 1.0,
                    Ordering::Equal => 0.5,
                    Ordering::Less => 0.0,
                };
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    /// Average precision from its definition: one confusion per distinct threshold.
    fn ap_by_thresholds(scores: &[f64], labels: &[bool]) -> Option<f64> {
        let mut thresholds = scores.to_vec();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let mut previous_recall = 0.0;
        let mut sum = 0.0;
        for threshold in thresholds {
            let confusion = confusion_at(scores, labels, threshold);
            if confusion.tp + confusion.fn_ == 0 {
                return None;
            }
            sum += (confusion.recall() - previous_recall) * confusion.precision();
            previous_recall = confusion.recall();
        }
        (previous_recall > 0.0).then_some(sum)
    }

    fn scored_rows() -> impl Strategy<Value = (Vec<f64>, Vec<bool>)> {
        prop::collection::vec((0i32..20, any::<bool>()), 0..60).prop_map(|rows| {
            let scores = rows.iter().map(|row| f64::from(row.0)).collect();
            let labels = rows.iter().map(|row| row.1).collect();
            (scores, labels)
        })
    }

    proptest! {
        #[test]
        fn auc_is_a_probability_and_invariant_to_monotone_transforms((scores, labels) in scored_rows()) {
            let auc = roc_auc(&scores, &labels);
            let both_classes = labels.contains(&true) && labels.contains(&false);
            prop_assert_eq!(auc.is_some(), both_classes);
            if let Some(auc) = auc {
                prop_assert!((0.0..=1.0).contains(&auc));
                // Strictly increasing, exact on these small integers.
                let transformed: Vec<f64> = scores.iter().map(|score| 0.5 * score * score * score - 3.0).collect();
                prop_assert_eq!(roc_auc(&transformed, &labels), Some(auc));
                let reversed: Vec<f64> = scores.iter().map(|score| -score).collect();
                let reversed_auc = roc_auc(&reversed, &labels).unwrap();
                prop_assert!((auc + reversed_auc - 1.0).abs() <= TOLERANCE);
            }
        }

        #[test]
        fn auc_and_ap_agree_with_their_definitions((scores, labels) in scored_rows()) {
            match (roc_auc(&scores, &labels), auc_by_pairs(&scores, &labels)) {
                (Some(fast), Some(slow)) => prop_assert!((fast - slow).abs() <= TOLERANCE),
                (fast, slow) => prop_assert_eq!(fast, slow),
            }
            match (average_precision(&scores, &labels), ap_by_thresholds(&scores, &labels)) {
                (Some(fast), Some(slow)) => {
                    prop_assert!((fast - slow).abs() <= TOLERANCE);
                    prop_assert!(fast > 0.0 && fast <= 1.0 + TOLERANCE);
                }
                (fast, slow) => prop_assert_eq!(fast, slow),
            }
        }
    }

    #[test]
    fn curves_are_thinned_in_order_and_mark_thresholds_where_they_flag() {
        let mut rng = fraudlens_core::rng::Rng::new(4, 0);
        let n = 20_000;
        let labels: Vec<bool> = (0..n).map(|_| rng.chance(0.05)).collect();
        let scores: Vec<f64> = labels
            .iter()
            .map(|&fraud| (rng.uniform() * 0.6 + if fraud { 0.4 } else { 0.0 }).min(1.0))
            .collect();
        let evaluation = Evaluation::compute(&EvalInput {
            probabilities: &scores,
            labels: &labels,
            days: None,
            entities: None,
            threshold: 0.5,
            k: 100,
            reliability_bins: 10,
        });
        let curves = evaluation.curves.unwrap();
        // thinned: a few hundred points for 20,000 distinct scores, highest threshold first,
        // recall and false-positive rate never going back, ending with everything flagged
        assert!(
            curves.points.len() <= 520 && curves.points.len() > 100,
            "{}",
            curves.points.len()
        );
        for pair in curves.points.windows(2) {
            assert!(pair[0].threshold > pair[1].threshold);
            assert!(pair[0].recall <= pair[1].recall && pair[0].fpr <= pair[1].fpr);
        }
        let last = curves.points.last().unwrap();
        assert_eq!((last.recall, last.fpr), (1.0, 1.0));
        assert_eq!(curves.fraud_histogram.iter().sum::<u64>(), evaluation.n_fraud);
        assert_eq!(
            curves.legit_histogram.iter().sum::<u64>() + evaluation.n_fraud,
            evaluation.n
        );
        // a threshold among the points is exact; above every score flags nothing
        let point = curves.points[10];
        assert_eq!(curves.at(point.threshold), Some(&point));
        assert_eq!(curves.at(2.0), None);
        let at_half = curves.at(0.5).unwrap();
        assert!(at_half.threshold <= 0.5 && (at_half.recall - evaluation.recall).abs() < 0.01);
    }
}
