//! Champion/challenger: two models scored on the same labelled rows, and for
//! each metric the difference (candidate minus the other) with a bootstrap
//! confidence interval.
//!
//! The metrics are the ones a fraud team decides by: average precision, ROC
//! AUC, card precision@k per day, recall at each model's own review
//! threshold, and the expected cost (a missed fraud costs its amount, every
//! flagged transaction costs a review).
//!
//! The bootstrap resamples whole days with replacement (rows of one day are
//! not independent: a card's frauds come in bursts), or rows when the rows
//! have no times (tabular mode). A resample is a weight per day, so every
//! metric of a resample is one pass over rows sorted once: the weighted
//! ranking metrics, recall and cost equal those of the resampled rows
//! exactly. Card precision@k is computed once per day (each day's cards
//! found earlier are left out, in the order of the real days) and a
//! resample averages the days it drew.
//!
//! [`Comparison::verdict`] is the promotion rule: the candidate must beat
//! the other model on the primary metric by the margin, with the interval of
//! the difference above zero, and be significantly worse (the whole interval
//! on the bad side) on no guard metric — every other one but the recall at
//! the review threshold, which grows with the number of transactions a model
//! flags (the expected cost weighs both).

use fraudlens_core::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fit::Table;

/// Fewest bootstrap resamples a promotion may rest on.
pub const MIN_RESAMPLES: usize = 100;

/// Fewest fraud rows a promotion may rest on.
pub const MIN_FRAUDS: usize = 10;

/// Fewest days a promotion may rest on when days are resampled (fewer give
/// intervals of a handful of distinct draws, or none at all).
pub const MIN_DAYS: usize = 7;

/// Fewest resamples (share of those drawn) in which the primary metric must
/// be defined (a resample of days without fraud has no average precision).
const MIN_DEFINED_SHARE: f64 = 0.9;
use crate::metrics::{ScoreGroup, auc_from_groups, average_precision_from_groups, card_precision_at_k_per_day};

const DAY_MS: i64 = 86_400_000;

/// What the comparison computes and how.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareSettings {
    /// The k of card precision@k per day.
    pub k: usize,
    /// Cost of reviewing one flagged transaction, in the amounts' major units.
    pub review_cost: f64,
    /// Bootstrap resamples (0: point estimates only).
    pub resamples: usize,
    /// Confidence of the intervals (0.95: the 2.5th to 97.5th percentile).
    pub confidence: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for CompareSettings {
    fn default() -> Self {
        Self {
            k: 100,
            review_cost: 5.0,
            resamples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A compared metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Average precision (area under the precision-recall curve).
    AveragePrecision,
    /// Area under the ROC curve.
    RocAuc,
    /// Card precision@k per day (the handbook's: cards found on an earlier day left out).
    CardPrecisionAtK,
    /// Share of the frauds at or above the model's own review threshold.
    RecallAtReview,
    /// Missed fraud amounts plus review costs, per day (event mode) or per 1,000 rows.
    ExpectedCost,
}

impl Metric {
    /// Every metric, the primary candidates first.
    pub const ALL: [Metric; 5] = [
        Metric::AveragePrecision,
        Metric::RocAuc,
        Metric::CardPrecisionAtK,
        Metric::RecallAtReview,
        Metric::ExpectedCost,
    ];

    /// Whether a larger value is better (all but the cost).
    pub fn higher_is_better(self) -> bool {
        self != Metric::ExpectedCost
    }

    /// Whether a candidate significantly worse on it is refused (when it is
    /// not the primary metric). Recall at the review threshold is not a
    /// guard: it grows with the number of transactions a model flags, and
    /// the expected cost weighs the two.
    pub fn is_guard(self) -> bool {
        self != Metric::RecallAtReview
    }

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Metric::AveragePrecision => "average_precision",
            Metric::RocAuc => "roc_auc",
            Metric::CardPrecisionAtK => "card_precision_at_k",
            Metric::RecallAtReview => "recall_at_review",
            Metric::ExpectedCost => "expected_cost",
        }
    }
}

/// One metric of both models and the interval of their difference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    /// Which metric.
    pub metric: Metric,
    /// The candidate's value.
    pub candidate: f64,
    /// The other model's value.
    pub against: f64,
    /// `candidate - against`.
    pub difference: f64,
    /// Lower end of the interval of the difference (none without resamples).
    pub low: Option<f64>,
    /// Upper end of the interval of the difference.
    pub high: Option<f64>,
    /// Resamples in which the metric was defined for both models.
    pub defined: usize,
}

impl MetricComparison {
    /// The difference in the metric's good direction (positive: the candidate is better).
    pub fn gain(&self) -> f64 {
        if self.metric.higher_is_better() {
            self.difference
        } else {
            -self.difference
        }
    }

    /// Whether the whole interval says the candidate is better.
    pub fn significantly_better(&self) -> bool {
        match self.metric.higher_is_better() {
            true => self.low.is_some_and(|low| low > 0.0),
            false => self.high.is_some_and(|high| high < 0.0),
        }
    }

    /// Whether the whole interval says the candidate is worse.
    pub fn significantly_worse(&self) -> bool {
        match self.metric.higher_is_better() {
            true => self.high.is_some_and(|high| high < 0.0),
            false => self.low.is_some_and(|low| low > 0.0),
        }
    }

    /// The interval as text: `[low, high]`, or `-` without one.
    pub fn interval(&self) -> String {
        match (self.low, self.high) {
            (Some(low), Some(high)) => format!("[{low:+.4}, {high:+.4}]"),
            _ => "-".to_owned(),
        }
    }
}

/// Two models on the same rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Rows scored by both.
    pub rows: usize,
    /// Fraud rows among them.
    pub frauds: usize,
    /// Days the rows cover (event mode).
    pub days: Option<usize>,
    /// What one bootstrap draw resamples.
    pub resampled: Resampled,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// The k of card precision@k.
    pub k: usize,
    /// The review cost used by the expected cost.
    pub review_cost: f64,
    /// Each metric (card precision@k only in event mode).
    pub metrics: Vec<MetricComparison>,
}

/// The unit a bootstrap draw resamples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampled {
    /// Whole days (rows with times).
    Day,
    /// Rows (tabular rows, without times).
    Row,
}

/// What the promotion rule says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the candidate may be promoted.
    pub promote: bool,
    /// The primary metric.
    pub primary: Metric,
    /// The margin it had to win by.
    pub margin: f64,
    /// Why, in one sentence per check.
    pub reasons: Vec<String>,
}

impl Comparison {
    /// The comparison of `metric`, if computed.
    pub fn metric(&self, metric: Metric) -> Option<&MetricComparison> {
        self.metrics.iter().find(|compared| compared.metric == metric)
    }

    /// The promotion rule: the candidate wins on `primary` by at least
    /// `margin` with the interval of the difference above zero, and is
    /// significantly worse on no other metric.
    pub fn verdict(&self, primary: Metric, margin: f64) -> Verdict {
        let mut reasons = Vec::new();
        let mut promote = true;
        if self.frauds < MIN_FRAUDS || self.resamples < MIN_RESAMPLES || self.days.is_some_and(|days| days < MIN_DAYS) {
            promote = false;
            reasons.push(format!(
                "too little evidence: {} fraud rows, {} resamples{} (a promotion needs {MIN_FRAUDS} frauds, \
                 {MIN_RESAMPLES} resamples and {MIN_DAYS} days)",
                self.frauds,
                self.resamples,
                self.days.map(|days| format!(", {days} days")).unwrap_or_default()
            ));
        }
        match self.metric(primary) {
            None => {
                promote = false;
                reasons.push(format!("{} is not computed on these rows", primary.name()));
            }
            Some(compared) => {
                let confidence = self.confidence * 100.0;
                if (compared.defined as f64) < MIN_DEFINED_SHARE * self.resamples as f64 {
                    promote = false;
                    reasons.push(format!(
                        "{}: defined in only {} of {} resamples (too few days with fraud)",
                        primary.name(),
                        compared.defined,
                        self.resamples
                    ));
                } else if compared.gain() < margin {
                    promote = false;
                    reasons.push(format!(
                        "{}: the candidate gains {:+.4}, less than the margin {margin}",
                        primary.name(),
                        compared.gain()
                    ));
                } else if !compared.significantly_better() {
                    promote = false;
                    reasons.push(format!(
                        "{}: the candidate gains {:+.4} but the {confidence:.0} % interval {} includes no gain",
                        primary.name(),
                        compared.gain(),
                        compared.interval()
                    ));
                } else {
                    reasons.push(format!(
                        "{}: the candidate gains {:+.4} ({confidence:.0} % interval {})",
                        primary.name(),
                        compared.gain(),
                        compared.interval()
                    ));
                }
            }
        }
        let guards = self
            .metrics
            .iter()
            .filter(|compared| compared.metric != primary && compared.metric.is_guard());
        for guard in guards {
            if guard.significantly_worse() {
                promote = false;
                reasons.push(format!(
                    "{}: the candidate is worse ({:+.4}, interval {})",
                    guard.metric.name(),
                    guard.difference,
                    guard.interval()
                ));
            }
        }
        Verdict {
            promote,
            primary,
            margin,
            reasons,
        }
    }
}

/// One model's scores of the rows.
#[derive(Clone, Copy, Debug)]
pub struct Scored<'a> {
    /// Calibrated probabilities (or ranking scores), one per row.
    pub probabilities: &'a [f64],
    /// The model's review threshold on them.
    pub review_threshold: f64,
}

/// Compares `candidate` with `against` on `table` (both scored its rows).
/// `None` when the rows hold no fraud or no legitimate transaction.
pub fn compare(
    table: &Table,
    candidate: Scored<'_>,
    against: Scored<'_>,
    settings: &CompareSettings,
) -> Option<Comparison> {
    assert_eq!(
        candidate.probabilities.len(),
        table.len(),
        "one candidate score per row"
    );
    assert_eq!(against.probabilities.len(), table.len(), "one score per row");
    let frauds = table.frauds();
    if frauds == 0 || frauds == table.len() {
        return None;
    }
    let blocks = Blocks::of(table);
    let views = [
        View::new(table, &blocks, candidate, settings),
        View::new(table, &blocks, against, settings),
    ];
    let ones = vec![1u32; blocks.n];
    let point = views.each_ref().map(|view| view.metrics(&ones));
    let draws: Vec<[[f64; 5]; 2]> = (0..settings.resamples)
        .into_par_iter()
        .map(|draw| {
            let mut rng = Rng::new(settings.seed, draw as u64);
            let mut weights = vec![0u32; blocks.n];
            for _ in 0..blocks.n {
                weights[rng.below(blocks.n as u64) as usize] += 1;
            }
            views.each_ref().map(|view| view.metrics(&weights))
        })
        .collect();
    let tail = (1.0 - settings.confidence) / 2.0;
    let metrics = Metric::ALL
        .iter()
        .enumerate()
        .filter(|(idx, _)| point[0][*idx].is_finite() && point[1][*idx].is_finite())
        .map(|(idx, &metric)| {
            let mut differences: Vec<f64> = draws
                .iter()
                .map(|draw| draw[0][idx] - draw[1][idx])
                .filter(|difference| difference.is_finite())
                .collect();
            differences.sort_by(f64::total_cmp);
            MetricComparison {
                metric,
                candidate: point[0][idx],
                against: point[1][idx],
                difference: point[0][idx] - point[1][idx],
                low: percentile(&differences, tail),
                high: percentile(&differences, 1.0 - tail),
                defined: differences.len(),
            }
        })
        .collect();
    Some(Comparison {
        rows: table.len(),
        frauds,
        days: blocks.by_day.then_some(blocks.n),
        resampled: if blocks.by_day { Resampled::Day } else { Resampled::Row },
        resamples: settings.resamples,
        confidence: settings.confidence,
        k: settings.k,
        review_cost: settings.review_cost,
        metrics,
    })
}

/// The resampled unit of each row: its day (event mode) or itself.
struct Blocks {
    of_row: Vec<u32>,
    n: usize,
    by_day: bool,
}

impl Blocks {
    fn of(table: &Table) -> Self {
        if table.times.is_empty() {
            return Self {
                of_row: (0..table.len() as u32).collect(),
                n: table.len(),
                by_day: false,
            };
        }
        // a day's block is its rank among the days with rows, whatever the row order
        let days = days_of(table);
        let mut distinct = days.clone();
        distinct.sort_unstable();
        distinct.dedup();
        Self {
            of_row: days
                .iter()
                .map(|day| distinct.partition_point(|other| other < day) as u32)
                .collect(),
            n: distinct.len(),
            by_day: true,
        }
    }
}

/// Each row's day: 24 hours from the first row's time (not calendar days,
/// so a window that starts late in a day has no stub of a day first).
fn days_of(table: &Table) -> Vec<i64> {
    let origin = table.times.iter().copied().min().unwrap_or(0);
    table
        .times
        .iter()
        .map(|time| (time - origin).div_euclid(DAY_MS))
        .collect()
}

/// One model's scores prepared for weighted metrics.
struct View<'a> {
    table: &'a Table,
    blocks: &'a Blocks,
    probabilities: &'a [f64],
    /// Row indices by decreasing score.
    order: Vec<u32>,
    flagged: Vec<bool>,
    /// Card precision@k of each day (block), event mode.
    card_precision: Option<Vec<f64>>,
    review_cost: f64,
}

impl<'a> View<'a> {
    fn new(table: &'a Table, blocks: &'a Blocks, scored: Scored<'a>, settings: &CompareSettings) -> Self {
        let probabilities = scored.probabilities;
        let mut order: Vec<u32> = (0..table.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| probabilities[b as usize].total_cmp(&probabilities[a as usize]));
        let card_precision = (blocks.by_day && !table.entities.is_empty()).then(|| {
            let days = days_of(table);
            let daily = card_precision_at_k_per_day(&days, &table.entities, probabilities, &table.labels, settings.k);
            // one entry per day with rows, in day order: the blocks
            assert_eq!(daily.per_day.len(), blocks.n, "one card precision per day");
            daily.per_day.iter().map(|day| day.precision).collect()
        });
        Self {
            table,
            blocks,
            probabilities,
            order,
            flagged: probabilities
                .iter()
                .map(|probability| *probability >= scored.review_threshold)
                .collect(),
            card_precision,
            review_cost: settings.review_cost,
        }
    }

    /// The metrics (in [`Metric::ALL`] order; NaN where undefined) with each block weighted.
    fn metrics(&self, weights: &[u32]) -> [f64; 5] {
        let weight = |row: usize| u64::from(weights[self.blocks.of_row[row] as usize]);
        let mut groups: Vec<ScoreGroup> = Vec::new();
        for &row in &self.order {
            let row = row as usize;
            let (w, score, fraud) = (weight(row), self.probabilities[row], self.table.labels[row]);
            if w == 0 {
                continue;
            }
            match groups.last_mut() {
                Some(group) if group.score == score => {
                    if fraud {
                        group.n_pos += w;
                    } else {
                        group.n_neg += w;
                    }
                }
                _ => groups.push(ScoreGroup {
                    score,
                    n_pos: if fraud { w } else { 0 },
                    n_neg: if fraud { 0 } else { w },
                }),
            }
        }
        let (mut frauds, mut caught, mut cost, mut rows) = (0u64, 0u64, 0.0, 0u64);
        for row in 0..self.table.len() {
            let w = weight(row);
            rows += w;
            let fraud = self.table.labels[row];
            frauds += u64::from(fraud) * w;
            if self.flagged[row] {
                caught += u64::from(fraud) * w;
                cost += self.review_cost * w as f64;
            } else if fraud {
                cost += self.table.amounts[row] * w as f64;
            }
        }
        let drawn: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let cost = if self.blocks.by_day {
            cost / drawn.max(1) as f64
        } else {
            cost * 1000.0 / rows.max(1) as f64
        };
        let card_precision = self.card_precision.as_ref().map_or(f64::NAN, |per_day| {
            let total: f64 = per_day.iter().zip(weights).map(|(p, &w)| p * f64::from(w)).sum();
            total / drawn.max(1) as f64
        });
        [
            average_precision_from_groups(&groups).unwrap_or(f64::NAN),
            auc_from_groups(&groups).unwrap_or(f64::NAN),
            card_precision,
            if frauds == 0 {
                f64::NAN
            } else {
                caught as f64 / frauds as f64
            },
            cost,
        ]
    }
}

/// The `q` quantile of sorted values (nearest rank); none when there are none.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (q * last as f64).round() as usize;
    Some(sorted[rank.min(last)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{average_precision, roc_auc};

    /// `days` days of `per_day` rows; every 10th row is fraud; amounts 100.
    fn table(days: i64, per_day: usize) -> Table {
        let mut table = Table::new(1);
        for day in 0..days {
            for idx in 0..per_day {
                table.values.push(0.0);
                let fraud = idx % 10 == 0;
                table.push_meta(
                    fraud,
                    Some(day * DAY_MS + idx as i64 * 1000),
                    Some(idx as u64 % 37),
                    100.0,
                );
            }
        }
        table
    }

    /// Scores that rank frauds above legit rows with probability `skill` (deterministic noise).
    fn scores(table: &Table, skill: f64, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed, 7);
        table
            .labels
            .iter()
            .map(|&fraud| {
                let signal = if fraud && rng.chance(skill) { 0.5 } else { 0.0 };
                (rng.uniform() * 0.5 + signal).min(1.0)
            })
            .collect()
    }

    /// [`compare`] of two models' scores, each with its review threshold.
    fn compare_at(
        table: &Table,
        (candidate, candidate_threshold): (&[f64], f64),
        (against, against_threshold): (&[f64], f64),
        settings: &CompareSettings,
    ) -> Comparison {
        let scored = |probabilities, review_threshold| Scored {
            probabilities,
            review_threshold,
        };
        compare(
            table,
            scored(candidate, candidate_threshold),
            scored(against, against_threshold),
            settings,
        )
        .unwrap()
    }

    #[test]
    fn point_estimates_equal_the_plain_metrics() {
        let table = table(10, 50);
        let (a, b) = (scores(&table, 0.9, 1), scores(&table, 0.5, 2));
        let settings = CompareSettings {
            resamples: 0,
            ..CompareSettings::default()
        };
        let comparison = compare_at(&table, (&a, 0.5), (&b, 0.5), &settings);
        let ap = comparison.metric(Metric::AveragePrecision).unwrap();
        assert!((ap.candidate - average_precision(&a, &table.labels).unwrap()).abs() < 1e-12);
        assert!((ap.against - average_precision(&b, &table.labels).unwrap()).abs() < 1e-12);
        let auc = comparison.metric(Metric::RocAuc).unwrap();
        assert!((auc.candidate - roc_auc(&a, &table.labels).unwrap()).abs() < 1e-12);
        // recall at 0.5: frauds with the signal
        let expected_recall =
            a.iter().zip(&table.labels).filter(|(s, l)| **l && **s >= 0.5).count() as f64 / table.frauds() as f64;
        let recall = comparison.metric(Metric::RecallAtReview).unwrap();
        assert!((recall.candidate - expected_recall).abs() < 1e-12);
        // cost per day: missed frauds' amounts plus 5 per flagged row, over 10 days
        let flagged = a.iter().filter(|s| **s >= 0.5).count() as f64;
        let missed = a.iter().zip(&table.labels).filter(|(s, l)| **l && **s < 0.5).count() as f64;
        let cost = comparison.metric(Metric::ExpectedCost).unwrap();
        assert!((cost.candidate - (flagged * 5.0 + missed * 100.0) / 10.0).abs() < 1e-9);
        assert!(comparison.metric(Metric::CardPrecisionAtK).is_some());
        assert_eq!(comparison.days, Some(10));
        assert!(ap.low.is_none() && ap.interval() == "-", "no resamples, no interval");
    }

    #[test]
    fn a_better_model_wins_and_a_worse_one_is_refused() {
        let table = table(30, 200);
        let (good, poor) = (scores(&table, 0.9, 3), scores(&table, 0.3, 4));
        let settings = CompareSettings {
            resamples: 300,
            ..CompareSettings::default()
        };
        let better = compare_at(&table, (&good, 0.5), (&poor, 0.5), &settings);
        let ap = better.metric(Metric::AveragePrecision).unwrap();
        let (low, high) = (ap.low.unwrap(), ap.high.unwrap());
        assert!(low > 0.0 && low <= ap.difference && ap.difference <= high, "{ap:?}");
        assert_eq!(ap.defined, 300);
        let verdict = better.verdict(Metric::AveragePrecision, 0.01);
        assert!(verdict.promote, "{verdict:?}");
        // a margin larger than the gain refuses
        assert!(!better.verdict(Metric::AveragePrecision, ap.difference + 0.01).promote);

        let worse = compare_at(&table, (&poor, 0.5), (&good, 0.5), &settings);
        let verdict = worse.verdict(Metric::AveragePrecision, 0.0);
        assert!(!verdict.promote);
        assert!(worse.metric(Metric::RecallAtReview).unwrap().significantly_worse());
        assert!(worse.metric(Metric::ExpectedCost).unwrap().significantly_worse());
    }

    #[test]
    fn the_same_model_is_not_significantly_better() {
        let table = table(20, 100);
        let a = scores(&table, 0.7, 5);
        let settings = CompareSettings {
            resamples: 200,
            ..CompareSettings::default()
        };
        let same = compare_at(&table, (&a, 0.5), (&a, 0.5), &settings);
        for compared in &same.metrics {
            assert_eq!(compared.difference, 0.0);
            assert!(!compared.significantly_better() && !compared.significantly_worse());
        }
        assert!(!same.verdict(Metric::AveragePrecision, 0.0).promote);
    }

    #[test]
    fn a_guard_that_loses_blocks_a_win_on_the_primary_metric() {
        // the candidate ranks better, but its review threshold flags nothing: every fraud is missed
        let table = table(20, 100);
        let (good, poor) = (scores(&table, 0.9, 6), scores(&table, 0.3, 9));
        let settings = CompareSettings {
            resamples: 200,
            ..CompareSettings::default()
        };
        let compared = compare_at(&table, (&good, 2.0), (&poor, 0.5), &settings);
        assert!(
            compared
                .metric(Metric::AveragePrecision)
                .unwrap()
                .significantly_better()
        );
        let verdict = compared.verdict(Metric::AveragePrecision, 0.0);
        assert!(!verdict.promote, "{verdict:?}");
        assert!(
            verdict.reasons.iter().any(|reason| reason.starts_with("expected_cost")),
            "{verdict:?}"
        );
        // recall alone is no guard: a model that flags more has more of it
        assert!(compared.metric(Metric::RecallAtReview).unwrap().significantly_worse());
        assert!(
            !verdict
                .reasons
                .iter()
                .any(|reason| reason.starts_with("recall_at_review")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_resample_equals_the_metrics_of_the_rows_it_draws() {
        // weights per day against the same rows written out as many times as their day was drawn
        let table = table(6, 40);
        let probabilities = scores(&table, 0.6, 11);
        let settings = CompareSettings::default();
        let blocks = Blocks::of(&table);
        let view = View::new(
            &table,
            &blocks,
            Scored {
                probabilities: &probabilities,
                review_threshold: 0.5,
            },
            &settings,
        );
        let weights = [2u32, 0, 1, 3, 0, 1];
        let (mut scores, mut labels, mut cost) = (Vec::new(), Vec::new(), 0.0);
        for row in 0..table.len() {
            for _ in 0..weights[blocks.of_row[row] as usize] {
                scores.push(probabilities[row]);
                labels.push(table.labels[row]);
                cost += match (probabilities[row] >= 0.5, table.labels[row]) {
                    (true, _) => 5.0,
                    (false, true) => table.amounts[row],
                    (false, false) => 0.0,
                };
            }
        }
        let metrics = view.metrics(&weights);
        assert!((metrics[0] - average_precision(&scores, &labels).unwrap()).abs() < 1e-12);
        assert!((metrics[1] - roc_auc(&scores, &labels).unwrap()).abs() < 1e-12);
        let caught = scores
            .iter()
            .zip(&labels)
            .filter(|(score, fraud)| **fraud && **score >= 0.5)
            .count();
        let frauds = labels.iter().filter(|fraud| **fraud).count();
        assert!((metrics[3] - caught as f64 / frauds as f64).abs() < 1e-12);
        assert!((metrics[4] - cost / 7.0).abs() < 1e-9, "cost per day drawn");
    }

    #[test]
    fn days_are_blocks_whatever_the_row_order() {
        let mut table = table(5, 30);
        // interleave the days: rows of day 0 and day 3 alternate at the front
        table.times.swap(0, 95);
        table.times.swap(2, 97);
        let blocks = Blocks::of(&table);
        assert_eq!(blocks.n, 5);
        assert_eq!((blocks.of_row[0], blocks.of_row[95], blocks.of_row[2]), (3, 0, 3));
    }

    #[test]
    fn too_little_evidence_is_never_promoted() {
        // a clear winner on two days with few frauds
        let table = table(2, 40);
        let (good, poor) = (scores(&table, 1.0, 12), scores(&table, 0.0, 13));
        let compared = compare_at(&table, (&good, 0.5), (&poor, 0.5), &CompareSettings::default());
        assert_eq!(compared.frauds, 8);
        let verdict = compared.verdict(Metric::AveragePrecision, 0.0);
        assert!(!verdict.promote);
        assert!(verdict.reasons[0].starts_with("too little evidence"), "{verdict:?}");
    }

    #[test]
    fn tabular_rows_resample_rows_and_skip_card_precision() {
        let mut table = Table::new(1);
        for idx in 0..400 {
            table.values.push(0.0);
            table.push_meta(idx % 8 == 0, None, None, 1.0);
        }
        let a = scores(&table, 0.8, 7);
        let b = scores(&table, 0.4, 8);
        let compared = compare_at(
            &table,
            (&a, 0.5),
            (&b, 0.5),
            &CompareSettings {
                resamples: 100,
                ..CompareSettings::default()
            },
        );
        assert_eq!(compared.resampled, Resampled::Row);
        assert_eq!(compared.days, None);
        assert!(compared.metric(Metric::CardPrecisionAtK).is_none());
    }

    #[test]
    fn rows_of_one_class_are_not_compared() {
        let mut table = Table::new(1);
        for _ in 0..10 {
            table.values.push(0.0);
            table.push_meta(false, Some(0), Some(1), 1.0);
        }
        let a = vec![0.1; 10];
        let scored = Scored {
            probabilities: &a,
            review_threshold: 0.5,
        };
        assert!(compare(&table, scored, scored, &CompareSettings::default()).is_none());
    }
}
