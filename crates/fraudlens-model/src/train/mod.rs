//! The gradient-boosted tree trainer: binary logistic loss, histogram split
//! search (≤ 255 bins per feature plus a missing bin), leaf-wise or
//! depth-wise growth, L2 and minimum-child regularisation, row and column
//! subsampling, learned default directions for missing values, categorical
//! splits, class weights, and early stopping on a validation set the caller
//! cuts in time order.
//!
//! Determinism: the result depends only on the data, the parameters and the
//! seed — not on the number of threads. Histograms hold fixed-point integer
//! sums (exact in any order, see `histogram.rs`), leaf values are summed in
//! row order, and random choices come from [`fraudlens_core::rng::Rng`]
//! streams keyed by iteration.
//!
//! - `params.rs`: [`GbdtParams`] → [`CheckedParams`].
//! - `trainer.rs`: the boosting loop (binning, gradients, sampling, early stopping).
//! - `row_bins.rs`: the rows in bin space, row-major and padded.
//! - `histogram.rs`: fixed-point histogram cells and their accumulation.
//! - `split.rs`: the best split of a leaf (numeric and categorical).
//! - `partition.rs`: sending a leaf's rows to its children.
//! - `grow.rs`: growing one tree, and turning it into a [`Tree`](crate::tree::Tree).

mod grow;
mod histogram;
mod params;
mod partition;
mod row_bins;
mod split;
mod trainer;

use serde::{Deserialize, Serialize};

pub use params::{CheckedParams, GbdtParams, Growth};

use crate::{Forest, ModelError};
use trainer::Trainer;

/// Smallest hessian of a row, so leaves of perfectly fit rows stay finite.
const MIN_HESSIAN: f64 = 1e-16;

/// The kind of a feature column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number; NaN is missing.
    Numeric,
    /// Integer category codes `0..n_codes`; NaN is missing.
    Categorical {
        /// Number of codes.
        n_codes: usize,
    },
}

/// Rows for training or validation: a row-major matrix, labels, optional weights.
#[derive(Clone, Copy, Debug)]
pub struct TrainSet<'a> {
    /// `labels.len()` rows of `n_features` values.
    pub values: &'a [f64],
    /// Features per row.
    pub n_features: usize,
    /// Fraud (true) or legitimate.
    pub labels: &'a [bool],
    /// Row weights (before `scale_pos_weight`); `None` = all 1.
    pub weights: Option<&'a [f64]>,
}

impl TrainSet<'_> {
    fn check(&self, what: &str) -> Result<(), ModelError> {
        let fail = |reason: String| Err(ModelError::InvalidData(format!("{what}: {reason}")));
        if self.labels.is_empty() {
            return fail("no rows".to_owned());
        }
        if self.n_features == 0 {
            return fail("no features (every column was excluded or unusable)".to_owned());
        }
        if self.values.len() != self.labels.len() * self.n_features {
            return fail(format!(
                "{} values are not {} rows of {} features",
                self.values.len(),
                self.labels.len(),
                self.n_features
            ));
        }
        if let Some(weights) = self.weights {
            if weights.len() != self.labels.len() {
                return fail(format!("{} weights for {} rows", weights.len(), self.labels.len()));
            }
            if let Some(weight) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
                return fail(format!("weight {weight} is not a finite non-negative number"));
            }
        }
        Ok(())
    }

    fn weight(&self, row: usize, scale_pos_weight: f64) -> f64 {
        let weight = self.weights.map_or(1.0, |weights| weights[row]);
        if self.labels[row] {
            weight * scale_pos_weight
        } else {
            weight
        }
    }
}

/// One boosting round, as reported to the progress callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// 1-based round.
    pub round: usize,
    /// Weighted log loss on the training rows.
    pub train_logloss: f64,
    /// Log loss on the validation rows (unweighted), if any.
    pub valid_logloss: Option<f64>,
}

/// What [`train`] returns.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The model, cut at the best round when early stopping applied.
    pub forest: Forest,
    /// Rounds kept.
    pub best_round: usize,
    /// Every round's losses.
    pub history: Vec<Round>,
    /// Total split gain per feature.
    pub gain_importance: Vec<f64>,
}

/// Trains a binary classifier. `valid` (rows later in time than `train`)
/// drives early stopping; `progress` sees every round.
pub fn train(
    params: &CheckedParams,
    kinds: &[FeatureKind],
    train_set: &TrainSet<'_>,
    valid: Option<&TrainSet<'_>>,
    progress: &mut (dyn FnMut(&Round) + Send),
) -> Result<Trained, ModelError> {
    train_set.check("training set")?;
    if let Some(valid) = valid {
        valid.check("validation set")?;
        if valid.n_features != train_set.n_features {
            return Err(ModelError::InvalidData(format!(
                "validation rows have {} features, training rows {}",
                valid.n_features, train_set.n_features
            )));
        }
    }
    if kinds.len() != train_set.n_features {
        return Err(ModelError::InvalidData(format!(
            "{} feature kinds for {} features",
            kinds.len(),
            train_set.n_features
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.get().threads)
        .build()
        .map_err(|error| ModelError::InvalidParameter(format!("threads: {error}")))?;
    pool.install(|| Trainer::new(params, kinds, train_set, valid)?.run(progress))
}

fn row_logloss(p: f64, label: bool) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    if label { -p.ln() } else { -(1.0 - p).ln() }
}

/// Mean log loss of raw scores.
pub fn logloss(raw_scores: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = raw_scores
        .iter()
        .zip(labels)
        .map(|(raw, &label)| row_logloss(crate::calibration::logistic(*raw), label))
        .sum();
    total / raw_scores.len().max(1) as f64
}

#[cfg(test)]
mod tests;
