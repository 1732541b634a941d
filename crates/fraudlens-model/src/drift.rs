//! Drift: how far live inputs and scores moved from what the model learned on.
//!
//! At training the artifact keeps a [`Reference`]: for every input, its
//! distribution over the training rows, and for the score, over the
//! validation rows (out of time, as live scores are). A [`Distribution`]
//! has bins — each distinct value when there are at most [`MAX_BINS`] of
//! them (flags, category codes), else deciles — with each bin's share of the
//! present values, and the share of missing values. Live values are binned
//! the same way and compared ([`Distribution::drift`]):
//!
//! - **PSI**, the population stability index: Σ (live − ref) · ln(live / ref)
//!   over the bins, each share floored at [`SHARE_FLOOR`] so that an empty
//!   bin counts without counting infinitely. Missing values are one more bin.
//! - **KS**: the largest gap between the two cumulative shares at the bin
//!   edges (the Kolmogorov–Smirnov distance seen at the reference's deciles).
//! - the **missing rate**, before and now.
//!
//! [`DriftSettings`] holds the usual reading of PSI: below 0.1 stable, 0.1 to
//! 0.25 watch, above act.

use serde::{Deserialize, Serialize};

/// Most bins of a distribution.
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
}

/// How far one value moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The input's name, or `score`.
    pub name: String,
    /// Population stability index.
    pub psi: f64,
    /// Largest gap between the cumulative shares at the bin edges.
    pub ks: f64,
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
    /// The distribution of `values` (NaN = missing), from an even sample of at most 200,000.
    pub fn fit(name: &str, values: impl ExactSizeIterator<Item = f64>) -> Self {
        let step = values.len().div_ceil(SAMPLE_ROWS).max(1);
        let (mut present, mut rows) = (Vec::new(), 0u64);
        for value in values.step_by(step) {
            rows += 1;
            if !value.is_nan() {
                present.push(value);
            }
        }
        present.sort_by(f64::total_cmp);
        let mut distinct = present.clone();
        distinct.dedup_by(|a, b| a == b);
        let edges: Vec<f64> = if distinct.len() <= MAX_BINS {
            distinct
                .iter()
                .take(distinct.len().saturating_sub(1))
                .copied()
                .collect()
        } else {
            let mut edges: Vec<f64> = (1..MAX_BINS)
                .map(|decile| present[present.len() * decile / MAX_BINS])
                .collect();
            edges.dedup_by(|a, b| a == b);
            edges
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

    /// How far `values` (NaN = missing) moved from this distribution.
    pub fn drift(&self, values: impl Iterator<Item = f64>, settings: &DriftSettings) -> Drift {
        let (mut present, mut rows) = (Vec::new(), 0usize);
        for value in values {
            rows += 1;
            if !value.is_nan() {
                present.push(value);
            }
        }
        let missing_live = if rows == 0 {
            0.0
        } else {
            (rows - present.len()) as f64 / rows as f64
        };
        let live = self.shares_of(&present);
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
        let (mut cumulative_reference, mut cumulative_live, mut ks) = (0.0, 0.0, 0.0f64);
        for (r, l) in self.shares.iter().zip(&live) {
            cumulative_reference += r;
            cumulative_live += l;
            ks = ks.max((cumulative_reference - cumulative_live).abs());
        }
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
    /// The reference of row-major `values` (`names.len()` per row) and of `scores`.
    pub fn fit(names: &[String], values: &[f64], scores: Option<&[f64]>) -> Self {
        let n = names.len().max(1);
        let rows = values.len() / n;
        Self {
            features: names
                .iter()
                .enumerate()
                .map(|(idx, name)| Distribution::fit(name, (0..rows).map(|row| values[row * n + idx])))
                .collect(),
            score: scores.map(|scores| Distribution::fit("score", scores.iter().copied())),
        }
    }

    /// The drift of row-major `values` (one value per reference input and
    /// row) and their `scores`.
    pub fn report(&self, values: &[f64], scores: Option<&[f64]>, settings: &DriftSettings) -> DriftReport {
        let n = self.features.len().max(1);
        let rows = values.len() / n;
        let mut features: Vec<Drift> = self
            .features
            .iter()
            .enumerate()
            .map(|(idx, distribution)| distribution.drift((0..rows).map(|row| values[row * n + idx]), settings))
            .collect();
        features.sort_by(|a, b| b.psi.total_cmp(&a.psi).then_with(|| a.name.cmp(&b.name)));
        DriftReport {
            rows,
            features,
            score: match (&self.score, scores) {
                (Some(reference), Some(scores)) => Some(reference.drift(scores.iter().copied(), settings)),
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
        let reference = Distribution::fit("x", normal(20_000, 0.0, 1).into_iter());
        assert_eq!(reference.shares.len(), MAX_BINS);
        assert!(
            reference.shares.iter().all(|share| (share - 0.1).abs() < 0.01),
            "{reference:?}"
        );
        let same = reference.drift(normal(20_000, 0.0, 2).into_iter(), &settings);
        assert!(same.psi < 0.01 && same.ks < 0.02, "{same:?}");
        assert_eq!(same.status, DriftStatus::Stable);
        let moved = reference.drift(normal(20_000, 1.0, 3).into_iter(), &settings);
        assert!(moved.psi > 0.25 && moved.ks > 0.3, "{moved:?}");
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
        let distribution = Distribution::fit("code", reference.into_iter());
        assert_eq!(distribution.edges, vec![0.0, 1.0]);
        let drift = distribution.drift(live.into_iter(), &DriftSettings::default());
        let expected = (0.2 - 0.5) * (0.2f64 / 0.5).ln() + (0.5 - 0.2) * (0.5f64 / 0.2).ln();
        assert!((drift.psi - expected).abs() < 1e-9, "{drift:?}");
        assert!((drift.ks - 0.3).abs() < 1e-9);
    }

    #[test]
    fn missing_values_are_a_bin_of_their_own() {
        let values: Vec<f64> = (0..1000)
            .map(|idx| if idx % 10 == 0 { f64::NAN } else { idx as f64 })
            .collect();
        let distribution = Distribution::fit("x", values.clone().into_iter());
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
        // nothing at all: every bin empty, counted at the floor
        let empty = distribution.drift(std::iter::empty(), &settings);
        assert!(empty.psi.is_finite());
    }

    #[test]
    fn a_report_puts_the_largest_psi_first() {
        let names = vec!["steady".to_owned(), "moving".to_owned()];
        let rows = 5_000;
        let (a, b) = (normal(rows, 0.0, 5), normal(rows, 0.0, 6));
        let values: Vec<f64> = a.iter().zip(&b).flat_map(|(a, b)| [*a, *b]).collect();
        let reference = Reference::fit(&names, &values, Some(&a));
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
