//! Drift: how far live inputs and scores moved from what the model learned on.
//!
//! At training the artifact keeps a [`Reference`]: every input's
//! distribution and the served model's score's, over the validation rows —
//! the latest of the training window, past the warm-up of the longest
//! feature windows, as live traffic is (an unsupervised model: over its
//! training rows). A [`Distribution`] has bins — one per code of a
//! categorical input, each distinct value of a numeric one when there are at
//! most [`MAX_BINS`] (flags), else deciles of its finite values — with each
//! bin's share of the present values, and the share of missing values. Live
//! values are binned the same way and compared ([`Distribution::drift`]):
//!
//! - **PSI**, the population stability index: Σ (live − ref) · ln(live / ref)
//!   over the bins, each share floored at [`SHARE_FLOOR`] so that an empty
//!   bin counts without counting infinitely. Missing values are one more bin.
//! - **KS**: the largest gap between the two cumulative shares at the bin
//!   edges (the Kolmogorov–Smirnov distance seen at the reference's deciles);
//!   none for a categorical input (its codes have no order) or when one side
//!   has no present value.
//! - the **missing rate**, before and now.
//!
//! [`DriftSettings`] holds the usual reading of PSI: below 0.1 stable, 0.1 to
//! 0.25 watch, above act.

use serde::{Deserialize, Serialize};

use crate::train::FeatureKind;

/// Most bins of a numeric distribution.
pub const MAX_BINS: usize = 10;

/// Smallest share a bin counts with in PSI.
pub const SHARE_FLOOR: f64 = 1e-4;

/// Most values a reference is fitted on (an even sample beyond).
const SAMPLE_ROWS: usize = 200_000;

/// One value's distribution: bins and shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// What it is the distribution of (an input's name, or `score`).
    pub name: String,
    /// Upper edges (inclusive) of every bin but the last: a value goes to the
    /// first bin whose edge is at or above it.
    pub edges: Vec<f64>,
    /// Share of the present values in each bin (one more than the edges).
    pub shares: Vec<f64>,
    /// Share of missing (NaN) values.
    pub missing: f64,
    /// Values it was fitted on.
    pub rows: u64,
    /// One bin per category code (no order: no KS).
    #[serde(default)]
    pub categorical: bool,
}

/// How far one value moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The input's name, or `score`.
    pub name: String,
    /// Population stability index.
    pub psi: f64,
    /// Largest gap between the cumulative shares at the bin edges (none for
    /// a categorical input, or when one side has no present value).
    pub ks: Option<f64>,
    /// Share missing in the reference.
    pub missing_reference: f64,
    /// Share missing now.
    pub missing_live: f64,
    /// What the PSI means under the settings.
    pub status: DriftStatus,
}

/// The reading of a PSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Below the watch threshold.
    Stable,
    /// At or above the watch threshold.
    Watch,
    /// At or above the act threshold.
    Act,
}

/// `[drift]`: the PSI thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSettings {
    /// A PSI at or above this is worth watching.
    pub watch: f64,
    /// A PSI at or above this calls for action (retrain, investigate).
    pub act: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self { watch: 0.1, act: 0.25 }
    }
}

impl DriftSettings {
    /// The settings, after checking that `0 < watch <= act`.
    pub fn check(&self) -> Result<&Self, String> {
        if !(self.watch > 0.0 && self.watch <= self.act && self.act.is_finite()) {
            return Err(format!(
                "drift.watch ({}) and drift.act ({}) must satisfy 0 < watch <= act",
                self.watch, self.act
            ));
        }
        Ok(self)
    }

    /// The reading of `psi`.
    pub fn status(&self, psi: f64) -> DriftStatus {
        if psi >= self.act {
            DriftStatus::Act
        } else if psi >= self.watch {
            DriftStatus::Watch
        } else {
            DriftStatus::Stable
        }
    }
}

impl Distribution {
    /// The distribution of `values` (NaN = missing) of an input of `kind`,
    /// from an even sample of at most 200,000.
    pub fn fit(name: &str, kind: FeatureKind, values: impl ExactSizeIterator<Item = f64>) -> Self {
        let step = values.len().div_ceil(SAMPLE_ROWS).max(1);
        let (mut present, mut rows) = (Vec::new(), 0u64);
        for value in values.step_by(step) {
            rows += 1;
            if !value.is_nan() {
                present.push(value);
            }
        }
        let edges: Vec<f64> = match kind {
            // one bin per code: 0, 1, …; codes past the last share its bin
            FeatureKind::Categorical { n_codes } => (0..n_codes.saturating_sub(1)).map(|code| code as f64).collect(),
            FeatureKind::Numeric => {
                // infinities fall in the end bins; edges are finite (and survive JSON)
                let mut finite: Vec<f64> = present.iter().copied().filter(|value| value.is_finite()).collect();
                finite.sort_by(f64::total_cmp);
                let mut distinct = finite.clone();
                distinct.dedup_by(|a, b| a == b);
                let mut edges: Vec<f64> = if distinct.len() <= MAX_BINS {
                    distinct
                        .iter()
                        .take(distinct.len().saturating_sub(1))
                        .copied()
                        .collect()
                } else {
                    (1..MAX_BINS)
                        .map(|decile| finite[finite.len() * decile / MAX_BINS])
                        .collect()
                };
                edges.dedup_by(|a, b| a == b);
                edges
            }
        };
        let mut distribution = Self {
            name: name.to_owned(),
            shares: vec![0.0; edges.len() + 1],
            edges,
            missing: if rows == 0 {
                0.0
            } else {
                (rows - present.len() as u64) as f64 / rows as f64
            },
            rows,
            categorical: matches!(kind, FeatureKind::Categorical { .. }),
        };
        distribution.shares = distribution.shares_of(&present);
        distribution
    }

    /// The bin of a present value.
    fn bin(&self, value: f64) -> usize {
        self.edges.partition_point(|edge| *edge < value)
    }

    /// Each bin's share of `present` values (all zero when there are none).
    fn shares_of(&self, present: &[f64]) -> Vec<f64> {
        let mut counts = vec![0u64; self.edges.len() + 1];
        for &value in present {
            counts[self.bin(value)] += 1;
        }
        let n = present.len().max(1) as f64;
        counts.into_iter().map(|count| count as f64 / n).collect()
    }

    /// The bin a value counts in: its value bin, or for a missing value the
    /// missing bin (the last, `shares.len()`).
    pub fn bin_of(&self, value: f64) -> usize {
        if value.is_nan() {
            self.shares.len()
        } else {
            self.bin(value)
        }
    }

    /// How far `values` (NaN = missing) moved from this distribution.
    pub fn drift(&self, values: impl Iterator<Item = f64>, settings: &DriftSettings) -> Drift {
        let mut counts = vec![0u64; self.shares.len() + 1];
        for value in values {
            counts[self.bin_of(value)] += 1;
        }
        self.drift_of_counts(&counts, settings)
    }

    /// How far values counted per bin ([`Self::bin_of`]: `shares.len() + 1`
    /// counts, the missing bin last) moved from this distribution.
    pub fn drift_of_counts(&self, counts: &[u64], settings: &DriftSettings) -> Drift {
        assert_eq!(
            counts.len(),
            self.shares.len() + 1,
            "a count per bin and one for missing values"
        );
        let (value_counts, missing_count) = counts.split_at(self.shares.len());
        let present: u64 = value_counts.iter().sum();
        let rows = present + missing_count[0];
        let missing_live = if rows == 0 {
            0.0
        } else {
            missing_count[0] as f64 / rows as f64
        };
        let live: Vec<f64> = value_counts
            .iter()
            .map(|count| *count as f64 / present.max(1) as f64)
            .collect();
        // missing values are one more bin; present shares are shares of all rows there
        let with_missing = |shares: &[f64], missing: f64| -> Vec<f64> {
            shares
                .iter()
                .map(|share| share * (1.0 - missing))
                .chain(std::iter::once(missing))
                .collect()
        };
        let (reference, now) = (
            with_missing(&self.shares, self.missing),
            with_missing(&live, missing_live),
        );
        let psi = reference
            .iter()
            .zip(&now)
            .map(|(&r, &l)| {
                let (r, l) = (r.max(SHARE_FLOOR), l.max(SHARE_FLOOR));
                (l - r) * (l / r).ln()
            })
            .sum::<f64>();
        let reference_present = self.shares.iter().any(|share| *share > 0.0);
        let ks = (!self.categorical && reference_present && present > 0).then(|| {
            let (mut cumulative_reference, mut cumulative_live, mut ks) = (0.0, 0.0, 0.0f64);
            for (r, l) in self.shares.iter().zip(&live) {
                cumulative_reference += r;
                cumulative_live += l;
                ks = ks.max((cumulative_reference - cumulative_live).abs());
            }
            ks
        });
        Drift {
            name: self.name.clone(),
            psi,
            ks,
            missing_reference: self.missing,
            missing_live,
            status: settings.status(psi),
        }
    }
}

/// What a model learned on: every input's distribution and the score's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// One per model input, in input order (the training rows).
    pub features: Vec<Distribution>,
    /// The score's (calibrated probabilities of the validation rows).
    pub score: Option<Distribution>,
}

/// The drift of a sample of rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Rows compared.
    pub rows: usize,
    /// Every input, the largest PSI first.
    pub features: Vec<Drift>,
    /// The score, when the model has one.
    pub score: Option<Drift>,
    /// The thresholds read.
    pub settings: DriftSettings,
}

impl Reference {
    /// The reference of row-major `values` (one per input of `names` and
    /// `kinds`, per row) and of `scores`.
    pub fn fit(names: &[String], kinds: &[FeatureKind], values: &[f64], scores: Option<&[f64]>) -> Self {
        assert_eq!(names.len(), kinds.len(), "a kind per input");
        let n = names.len().max(1);
        let rows = values.len() / n;
        Self {
            features: names
                .iter()
                .zip(kinds)
                .enumerate()
                .map(|(idx, (name, kind))| Distribution::fit(name, *kind, (0..rows).map(|row| values[row * n + idx])))
                .collect(),
            score: scores.map(|scores| Distribution::fit("score", FeatureKind::Numeric, scores.iter().copied())),
        }
    }

    /// The drift of row-major `values` (one value per reference input and
    /// row) and their `scores`.
    pub fn report(&self, values: &[f64], scores: Option<&[f64]>, settings: &DriftSettings) -> DriftReport {
        let n = self.features.len().max(1);
        let rows = values.len() / n;
        let features: Vec<Vec<u64>> = self
            .features
            .iter()
            .enumerate()
            .map(|(idx, distribution)| {
                let mut counts = vec![0u64; distribution.shares.len() + 1];
                for row in 0..rows {
                    counts[distribution.bin_of(values[row * n + idx])] += 1;
                }
                counts
            })
            .collect();
        let score = match (&self.score, scores) {
            (Some(reference), Some(scores)) => {
                let mut counts = vec![0u64; reference.shares.len() + 1];
                for score in scores {
                    counts[reference.bin_of(*score)] += 1;
                }
                Some(counts)
            }
            _ => None,
        };
        self.report_of_counts(rows, &features, score.as_deref(), settings)
    }

    /// The drift of rows already counted per bin ([`Distribution::bin_of`]):
    /// one count vector per input, and the score's.
    pub fn report_of_counts(
        &self,
        rows: usize,
        features: &[Vec<u64>],
        score: Option<&[u64]>,
        settings: &DriftSettings,
    ) -> DriftReport {
        let mut drifts: Vec<Drift> = self
            .features
            .iter()
            .zip(features)
            .map(|(distribution, counts)| distribution.drift_of_counts(counts, settings))
            .collect();
        drifts.sort_by(|a, b| b.psi.total_cmp(&a.psi).then_with(|| a.name.cmp(&b.name)));
        DriftReport {
            rows,
            features: drifts,
            score: match (&self.score, score) {
                (Some(reference), Some(counts)) => Some(reference.drift_of_counts(counts, settings)),
                _ => None,
            },
            settings: settings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use fraudlens_core::rng::Rng;

    use super::*;

    fn normal(n: usize, mean: f64, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed, 1);
        (0..n).map(|_| mean + rng.normal()).collect()
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_shift_is_not() {
        let settings = DriftSettings::default();
        let reference = Distribution::fit("x", FeatureKind::Numeric, normal(20_000, 0.0, 1).into_iter());
        assert_eq!(reference.shares.len(), MAX_BINS);
        assert!(
            reference.shares.iter().all(|share| (share - 0.1).abs() < 0.01),
            "{reference:?}"
        );
        let same = reference.drift(normal(20_000, 0.0, 2).into_iter(), &settings);
        assert!(same.psi < 0.01 && same.ks.unwrap() < 0.02, "{same:?}");
        assert_eq!(same.status, DriftStatus::Stable);
        let moved = reference.drift(normal(20_000, 1.0, 3).into_iter(), &settings);
        assert!(moved.psi > 0.25 && moved.ks.unwrap() > 0.3, "{moved:?}");
        assert_eq!(moved.status, DriftStatus::Act);
        // a small shift: watch
        let nudged = reference.drift(normal(20_000, 0.4, 4).into_iter(), &settings);
        assert_eq!(nudged.status, DriftStatus::Watch, "{nudged:?}");
    }

    #[test]
    fn psi_matches_its_definition_on_categories() {
        // codes 0, 1, 2 with shares 0.5, 0.3, 0.2, then 0.2, 0.3, 0.5
        let reference: Vec<f64> = [vec![0.0; 50], vec![1.0; 30], vec![2.0; 20]].concat();
        let live: Vec<f64> = [vec![0.0; 20], vec![1.0; 30], vec![2.0; 50]].concat();
        let distribution = Distribution::fit("code", FeatureKind::Numeric, reference.clone().into_iter());
        assert_eq!(distribution.edges, vec![0.0, 1.0]);
        let drift = distribution.drift(live.clone().into_iter(), &DriftSettings::default());
        let expected = (0.2 - 0.5) * (0.2f64 / 0.5).ln() + (0.5 - 0.2) * (0.5f64 / 0.2).ln();
        assert!((drift.psi - expected).abs() < 1e-9, "{drift:?}");
        assert!((drift.ks.unwrap() - 0.3).abs() < 1e-9);
        // as the codes of a categorical input: the same PSI, no KS
        let categorical = Distribution::fit("code", FeatureKind::Categorical { n_codes: 3 }, reference.into_iter());
        let drift = categorical.drift(live.into_iter(), &DriftSettings::default());
        assert!((drift.psi - expected).abs() < 1e-9 && drift.ks.is_none(), "{drift:?}");
    }

    #[test]
    fn every_code_of_a_categorical_input_is_a_bin() {
        // 18 codes: a move from code 6 to code 7 shows, which deciles of the codes would merge
        let kind = FeatureKind::Categorical { n_codes: 18 };
        let codes: Vec<f64> = (0..18_000).map(|idx| (idx % 18) as f64).collect();
        let distribution = Distribution::fit("mcc", kind, codes.clone().into_iter());
        assert_eq!(distribution.shares.len(), 18);
        let moved: Vec<f64> = codes
            .iter()
            .map(|code| if *code == 6.0 { 7.0 } else { *code })
            .collect();
        let drift = distribution.drift(moved.into_iter(), &DriftSettings::default());
        assert_eq!(drift.status, DriftStatus::Act, "{drift:?}");
    }

    #[test]
    fn infinite_values_fall_in_the_end_bins_and_edges_stay_finite() {
        let values: Vec<f64> = (0..1000)
            .map(|idx| if idx % 5 == 0 { f64::NEG_INFINITY } else { idx as f64 })
            .collect();
        let distribution = Distribution::fit("z", FeatureKind::Numeric, values.clone().into_iter());
        assert!(
            distribution.edges.iter().all(|edge| edge.is_finite()),
            "{distribution:?}"
        );
        assert!(
            distribution.shares[0] >= 0.2,
            "the infinities are in the first bin: {distribution:?}"
        );
        let json = serde_json::to_string(&distribution).unwrap();
        assert_eq!(serde_json::from_str::<Distribution>(&json).unwrap(), distribution);
        assert!(distribution.drift(values.into_iter(), &DriftSettings::default()).psi < 1e-9);
    }

    #[test]
    fn missing_values_are_a_bin_of_their_own() {
        let values: Vec<f64> = (0..1000)
            .map(|idx| if idx % 10 == 0 { f64::NAN } else { idx as f64 })
            .collect();
        let distribution = Distribution::fit("x", FeatureKind::Numeric, values.clone().into_iter());
        assert!((distribution.missing - 0.1).abs() < 1e-12);
        let settings = DriftSettings::default();
        assert!(distribution.drift(values.into_iter(), &settings).psi < 1e-9);
        // the same present values, but half of the rows missing now
        let half: Vec<f64> = (0..1000)
            .map(|idx| if idx % 2 == 0 { f64::NAN } else { idx as f64 })
            .collect();
        let drift = distribution.drift(half.into_iter(), &settings);
        assert!((drift.missing_live - 0.5).abs() < 1e-12);
        assert!(drift.psi > 0.25, "{drift:?}");
        // nothing at all: every bin empty, counted at the floor; no KS without values
        let empty = distribution.drift(std::iter::empty(), &settings);
        assert!(empty.psi.is_finite() && empty.ks.is_none());
    }

    #[test]
    fn a_report_puts_the_largest_psi_first() {
        let names = vec!["steady".to_owned(), "moving".to_owned()];
        let rows = 5_000;
        let (a, b) = (normal(rows, 0.0, 5), normal(rows, 0.0, 6));
        let values: Vec<f64> = a.iter().zip(&b).flat_map(|(a, b)| [*a, *b]).collect();
        let reference = Reference::fit(&names, &[FeatureKind::Numeric; 2], &values, Some(&a));
        let moved: Vec<f64> = a.iter().zip(&b).flat_map(|(a, b)| [*a, b + 2.0]).collect();
        let report = reference.report(&moved, Some(&a), &DriftSettings::default());
        assert_eq!(report.rows, rows);
        assert_eq!(report.features[0].name, "moving");
        assert_eq!(report.features[0].status, DriftStatus::Act);
        assert_eq!(report.features[1].status, DriftStatus::Stable);
        assert!(report.score.unwrap().psi < 1e-9);
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(DriftSettings { watch: 0.3, act: 0.2 }.check().is_err());
        assert!(DriftSettings { watch: 0.0, act: 0.2 }.check().is_err());
        assert!(DriftSettings::default().check().is_ok());
    }
}
